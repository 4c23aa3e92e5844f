"""Why KaSA, FourierFT and DeLoRA behave unlike LoRA on SmolLM2, one cause measured at a time.

``docs/methods_smollm2.md`` showed three methods out of line on SmolLM2/Alpaca: KaSA starts at dev
loss 6.0 where every other method starts at 1.87, FourierFT starts at 2.42, and DeLoRA ends a
12-step proxy at 2.64, worse than it started. Each probe isolates one suspected cause:

* **KaSA's truncation, role by role** (SmolLM2: a classifier's step-0 loss is its random head's).
  KaSA drops the r smallest singular components of every base
  matrix it acts on before training. For each role on its own (every layer), the dev loss at step 0
  and the share of the matrices' squared singular values that r = 8 drops (median over layers).
* **FourierFT's random spectrum.** peft initialises FourierFT's coefficients from a standard
  normal (``init_weights=False``), so the model is perturbed before training; a zero spectrum
  (``init_weights=True``) starts at the base model and still trains, since the update is linear in
  the coefficients. Dev loss at step 0 and after the proxy, for each init.
* **DeLoRA's bound.** DeLoRA normalises each rank-one update to the norm ``lambda / r`` times the
  base weight's column norms; B starts at zero, so after the first step the update jumps to that
  bound whatever the learning rate. Dev loss after the proxy at peft's ``delora_lambda`` 15 and at
  smaller bounds, and at two rates.

Every probe runs q and v of every layer at the proxy of ``bench/module_types.py`` (seed 0), both
models; the variants probed here (peft's default or a zero spectrum, a lambda) are settings of
peft's own config classes, registered under a probe name for this process only.

    python -m bench.method_probes --threads 1 --out docs/method_probes.md
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from autopeft.models import resolve_model
from autopeft.space.structure import LoraModules, Structure, TunerModules
from autopeft.space.tuners import TUNER_METHODS
from autopeft.tasks import TaskKind, load_task
from autopeft.tasks.holdout import with_search_split
from autopeft.trials import TrialRequest
from autopeft.worker import ProxyTrainer, WorkerSpec
from bench.module_types import SETUPS
from bench.reporting import machine_line, write_rows

RAW = Path(__file__).parent / "results" / "method_probes.csv"
KASA_RANK = 8
PROBED = {
    "fourierft": ("fourierft", {"init_weights": False}),
    "delora": ("delora", {"delora_lambda": 15}),
    "fourierft (zero spectrum)": ("fourierft", {"init_weights": True}),
    "delora (lambda 1)": ("delora", {"delora_lambda": 1}),
    "delora (lambda 0.1)": ("delora", {"delora_lambda": 0.1}),
}
"""Probe names -> (peft method, the settings probed). The plain ``fourierft`` and ``delora`` rows are
peft's defaults (a random spectrum; lambda 15). autopeft now ships FourierFT's zero spectrum; the
``methods`` space searches DeLoRA's lambda (1, 4, 15), since lambda 1 cost MiniLM/SST-2 about 7
points in the methods table."""
TRAINED = {
    "smollm2": [("fourierft", 1024), ("fourierft (zero spectrum)", 1024), ("delora", 8), ("delora (lambda 1)", 8),
                ("delora (lambda 0.1)", 8)],
    "minilm": [("fourierft", 1024), ("fourierft (zero spectrum)", 1024), ("delora", 8), ("delora (lambda 1)", 8)],
}
"""Per model, the (method, size) pairs trained at every rate of ``RATE_SCALES``."""
RATE_SCALES = (1.0, 0.1)
"""Multiples of the setup's proxy rate: whether a method's trouble is its step size. The proxy
trains the method's parameters at its factor of that rate (autopeft.space.tuners.rate_factor);
the rows in bench/results/method_probes.csv were measured before the factors, at the rate shown."""


def register_probes() -> None:
    for name, (method, settings) in PROBED.items():
        base = TUNER_METHODS[method]
        TUNER_METHODS[name] = replace(base, settings={**base.settings, **settings})


def qv(layout) -> frozenset:
    return frozenset((layer, role) for layer in range(layout.num_layers) for role in ("q", "v"))


def dropped_share(weight: torch.Tensor, rank: int) -> float:
    """The share of ``weight``'s squared singular values in its ``rank`` smallest components."""
    squared = torch.linalg.svdvals(weight.detach().float()) ** 2
    return float(squared[-rank:].sum() / squared.sum())


def kasa_rows(model_name: str, trainer: ProxyTrainer, request: TrialRequest) -> list[dict]:
    layout = trainer.layout
    base = trainer.score_untrained(replace(request, structure=Structure().to_json()))["loss"]
    rows = []
    for role in layout.roles:
        places = [(layer, role) for layer in range(layout.num_layers) if layout.matrix(layer, role) is not None]
        shares = [dropped_share(trainer.model.get_submodule(layout.matrix(*place).name).weight, KASA_RANK)
                  for place in places]
        kasa = Structure(lora=LoraModules(dict.fromkeys(places, KASA_RANK), variant="kasa"))
        loss = trainer.score_untrained(replace(request, structure=kasa.to_json()))["loss"]
        shape = layout.matrix(*places[0])
        rows.append({"probe": "kasa", "model": model_name, "variant": f"{role} ({shape.out_features}x"
                     f"{shape.in_features})", "rate": "", "loss_before": round(base, 4), "loss_after": round(loss, 4),
                     "dropped_share": round(statistics.median(shares), 5)})
    return rows


def trained_rows(model_name: str, trainer: ProxyTrainer, request: TrialRequest) -> list[dict]:
    rows = []
    for method, size in TRAINED[model_name]:
        structure = Structure(tuner=TunerModules(method, size, qv(trainer.layout))).to_json()
        for scale in RATE_SCALES:
            fidelity = replace(request.fidelity, learning_rate=request.fidelity.learning_rate * scale, lr_rescues=0)
            probe = replace(request, structure=structure, fidelity=fidelity)
            before = trainer.score_untrained(probe)["loss"]
            outcome = trainer.run(probe)
            after = outcome.metrics["loss"] if outcome.metrics else float("nan")
            rows.append({"probe": method.split(" ")[0], "model": model_name, "variant": method,
                         "rate": f"{fidelity.learning_rate:g}", "loss_before": round(before, 4),
                         "loss_after": round(after, 4), "dropped_share": ""})
            print(rows[-1], flush=True)
    return rows


def measure(model_name: str, threads: int) -> list[dict]:
    setup = SETUPS[model_name]
    task = with_search_split(load_task(str(setup["task"])))
    trainer = ProxyTrainer(WorkerSpec(resolve_model(model_name), task, threads=threads))
    request = TrialRequest(0, 0, Structure().to_json(), seed=0, fidelity=setup["fidelity"])
    # A classifier's step-0 loss is its random head's: only a language model's shows the truncation.
    kasa = kasa_rows(model_name, trainer, request) if task.kind is TaskKind.CAUSAL_LM else []
    return kasa + trained_rows(model_name, trainer, request)


def report(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "# Method probes: KaSA's truncation, FourierFT's spectrum, DeLoRA's bound\n",
        f"Command: `python -m bench.method_probes --threads {args.threads} --out {args.out}`  ",
        f"{machine_line(args.threads)}  ",
        "Proxies: " + "; ".join(f"{name}: {setup['fidelity']}" for name, setup in SETUPS.items()) +
        "; seed 0, dev split, no stall rescue. Raw rows: `bench/results/method_probes.csv`.\n",
        f"## KaSA r{KASA_RANK} on one role at a time (every layer), dev loss at step 0\n",
        "| model | role (out x in) | base model | with KaSA's truncation | share of squared singular values "
        "dropped (median over layers) |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {r['model']} | {r['variant']} | {r['loss_before']:.4f} | {r['loss_after']:.4f} | "
              f"{r['dropped_share']:.2%} |" for r in rows if r["probe"] == "kasa"]
    lines += ["", "## FourierFT and DeLoRA on q and v, dev loss at step 0 and after the proxy\n",
              "| model | method | rate | step 0 | after |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['variant']} | {r['rate']} | {r['loss_before']:.4f} | {r['loss_after']:.4f} |"
              for r in rows if r["probe"] != "kasa"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["smollm2", "minilm"], choices=sorted(SETUPS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    register_probes()
    rows = [row for model_name in args.models for row in measure(model_name, args.threads)]
    write_rows(rows, RAW)
    args.out.write_text(report(rows, args))


if __name__ == "__main__":
    main()
