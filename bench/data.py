"""Where the benchmarks read real task data: ``shared/data`` beside the checkout (never committed)."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GLUE = SHARED_DATA / "glue"
SST2 = GLUE / "SST-2"
