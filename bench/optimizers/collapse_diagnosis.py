"""How well MOBO's accuracy GP models a lookup table with and without its collapsed rows.

A "collapsed" row is a fine-tune whose accuracy sits exactly at the table's lowest recorded value,
shared by several rows (the majority-class accuracy of a constant predictor). For ``--repeats``
random training sets of ``--train`` rows, one GP (``autopeft.optimizers.surrogate.fit_gp``) is
fitted on all of them and one on their non-collapsed rows only; both are scored on the held-out
non-collapsed rows: Spearman rank correlation of the posterior mean with the recorded accuracy,
and mean held-out predictive log-likelihood (noise included). Also reported: the fitted
lengthscales and noise; how well a GP of the 0/1 collapse indicator ranks the held-out rows (AUC:
the chance that a collapsed row gets a higher predicted indicator than a working one); and, over
every held-out row, the Spearman correlation with the truth of the all-rows GP's mean and of the
mixture ``p * floor + (1 - p) * mean`` of the indicator GP and the working rows' GP (the
expected accuracy under both models; docs/optimizers.md has the numbers).

    python -m bench.optimizers.collapse_diagnosis --space adapters --train 20 30 40

(about 1 minute on one thread; on the LoRA table the categorical-kernel fits make it far slower.)
"""

from __future__ import annotations

import argparse
import statistics

import torch

from autopeft.optimizers.encoded_space import DTYPE, EncodedSpace
from autopeft.optimizers.surrogate import fit_gp
from bench.optimizers.lookup import read_table
from bench.optimizers.proxy_setup import grouped_space
from bench.optimizers.record_table import table_path


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def score(gp, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        posterior = gp.posterior(x, observation_noise=True)
        mean, var = posterior.mean.squeeze(-1), posterior.variance.squeeze(-1)
    loglik = float((-0.5 * ((y - mean) ** 2 / var + var.log() + torch.log(torch.tensor(2 * torch.pi)))).mean())
    return spearman(mean, y), loglik


def auc(score_: torch.Tensor, positive: torch.Tensor) -> float:
    pos, neg = score_[positive], score_[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    return float((pos.unsqueeze(1) > neg.unsqueeze(0)).double().mean() + 0.5 * (pos.unsqueeze(1) == neg.unsqueeze(0)).double().mean())


def mean_of(gp, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return gp.posterior(x).mean.squeeze(-1)


def lengthscales(gp) -> list[float]:
    """Lengthscales of a plain GP's kernel ([] for the mixed categorical kernel, which has several)."""
    values = getattr(gp.covar_module, "lengthscale", None)
    return [] if values is None else [round(float(v), 2) for v in values.detach().flatten()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="adapters")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--train", type=int, nargs="+", default=[20, 30])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    space, table = grouped_space(args.space), read_table(table_path(args.space, args.task))
    encoded = EncodedSpace.of(space)
    points = [p for p in space.all_points() if table[space.config_id(p)] is not None]
    x = torch.tensor([space.encode(p) for p in points], dtype=DTYPE)
    y = torch.tensor([table[space.config_id(p)]["accuracy"] for p in points], dtype=DTYPE)
    floor = float(y.min())
    collapsed = y == floor
    print(f"{args.space}: {len(y)} rows, {int(collapsed.sum())} at the floor {floor}")
    for size in args.train:
        cells: dict[str, list[tuple[float, float]]] = {"all rows": [], "non-collapsed rows": []}
        whole: dict[str, list[float]] = {"all-rows GP": [], "mixture": [], "indicator AUC": []}
        for repeat in range(args.repeats):
            generator = torch.Generator().manual_seed(repeat)
            order = torch.randperm(len(y), generator=generator)
            train, held = order[:size], order[size:]
            torch.manual_seed(repeat)
            if int(collapsed[train].sum()) >= 1:
                indicator = fit_gp(x[train], collapsed[train].to(DTYPE).unsqueeze(-1), encoded)
                p = mean_of(indicator, x[held]).clamp(0, 1)
                working = fit_gp(x[train[~collapsed[train]]], y[train[~collapsed[train]]].unsqueeze(-1), encoded)
                plain = fit_gp(x[train], y[train].unsqueeze(-1), encoded)
                whole["indicator AUC"].append(auc(p, collapsed[held]))
                whole["all-rows GP"].append(spearman(mean_of(plain, x[held]), y[held]))
                whole["mixture"].append(spearman(p * floor + (1 - p) * mean_of(working, x[held]), y[held]))
            held = held[~collapsed[held]]
            kept = train[~collapsed[train]]
            for name, rows in (("all rows", train), ("non-collapsed rows", kept)):
                gp = fit_gp(x[rows], y[rows].unsqueeze(-1), encoded)
                cells[name].append(score(gp, x[held], y[held]))
                if repeat == 0:
                    print(f"  train {size}, GP on {name} ({len(rows)}): lengthscales {lengthscales(gp)}, "
                          f"noise (standardised) {float(gp.likelihood.noise.detach()):.3f}")
        for name, values in cells.items():
            rho = statistics.median(v[0] for v in values)
            ll = statistics.median(v[1] for v in values)
            print(f"  train {size}, GP on {name}: held-out non-collapsed rows, median Spearman {rho:.3f}, "
                  f"median log-lik {ll:.2f} ({args.repeats} draws)")
        for name, values in whole.items():
            print(f"  train {size}, every held-out row: {name} median {statistics.median(values):.3f} ({len(values)} draws)")


if __name__ == "__main__":
    main()
