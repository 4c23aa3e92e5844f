"""The demo task's data files (train.tsv, dev.tsv; see README.md); a package so that wheels ship them."""
