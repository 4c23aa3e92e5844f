"""How jobs and trials look on the terminal (rich); their JSON form is :mod:`autopeft.reports`."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autopeft.objectives import Objective
from autopeft.store import DEFAULT_URL, JobRecord, TrialRecord
from autopeft.trials import TrialState

if TYPE_CHECKING:  # the search stack (Ray, torch) loads only for the verbs that search
    from autopeft.scheduler import PreparedJob
    from autopeft.space.layout import ModelLayout
    from autopeft.scheduler.scheduler import Progress as SchedulerProgress


def structure_summary(structure: dict[str, Any]) -> str:
    """One line per structure, e.g. ``lora r{4,8} on q,v in 5 layers``."""
    parts = []
    if "lora" in structure:
        lora = structure["lora"]
        ranks = sorted(set(lora["ranks"].values()))
        roles = sorted({key.split(".", 1)[1] for key in lora["ranks"]})
        layers = {key.split(".", 1)[0] for key in lora["ranks"]}
        options = [lora["variant"]] if lora["variant"] != "lora" else []
        options += [f"{lora['init']} init"] if lora.get("init", "default") != "default" else []
        variant = f" ({', '.join(options)})" if options else ""
        parts.append(f"lora{variant} r{{{','.join(map(str, ranks))}}} on {','.join(roles)} in {len(layers)} layers")
    if "ia3" in structure:
        parts.append(f"ia3 x{len(structure['ia3'])}")
    for name in ("serial_adapter", "prefix"):
        if name in structure:
            sizes = sorted(set(structure[name].values()))
            parts.append(f"{name} {{{','.join(map(str, sizes))}}} x{len(structure[name])}")
    if "parallel_adapter" in structure:
        sizes = sorted(set(structure["parallel_adapter"]["sizes"].values()))
        parts.append(f"parallel_adapter {{{','.join(map(str, sizes))}}} x{len(structure['parallel_adapter']['sizes'])}")
    if "tuner" in structure:
        tuner = structure["tuner"]
        size = f" {tuner['size']}" if tuner["size"] else ""
        settings = "".join(f" {name}={value:g}" for name, value in tuner.get("settings", {}).items())
        parts.append(f"{tuner['method']}{size}{settings} x{len(tuner['places'])}")
    if "sparse" in structure:
        entries = structure["sparse"]["entries"]
        parts.append(f"sparse deltas ({structure['sparse']['rule']}) {sum(entries.values()):,} entries x{len(entries)}")
    return "; ".join(parts) or "(none)"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"


def pareto_table(
    job: JobRecord, front: Sequence[TrialRecord], defaults: Sequence[TrialRecord] = (), one_class: Collection[int] = ()
) -> Table:
    """The front (means over each row's n seeds, on the search split), then the practitioner
    defaults that are not on it, marked, so the user sees what searching gained. Front rows
    numbered in ``one_class`` had a run that predicted a single class, and say so."""
    metric = job.spec["objectives"][0]["name"]
    notes = [
        *(["n = 1: a single run, not confirmed with other seeds"] if any(t.n == 1 for t in front) else []),
        *(["one class: a run predicted a single class, so the score may not be the structure's"] if one_class else []),
    ]
    table = Table(
        title=f"Pareto set of job {job.id} ({len(front)} structures; {metric} on the search split)",
        caption="; ".join(notes) or None,
    )
    for column in ("trial", metric, "sd", "n", "trainable", "% of model", "structure"):
        table.add_column(column, justify="left" if column == "structure" else "right")
    total = job.spec.get("total_params")
    on_front = {t.id for t in front}
    for trial in [*front, *(d for d in defaults if d.id not in on_front)]:
        share = f"{100 * trial.trainable_params / total:.3f}" if total else "-"
        spread = (trial.spread or {}).get(metric)
        name = structure_summary(trial.structure)
        if trial.label:
            name = f"[bold]{trial.label}[/bold] ({'on the front' if trial.id in on_front else 'dominated'}): {name}"
        if trial.id in on_front and trial.number in one_class:
            name = f"[yellow]one class[/yellow] {name}"
        table.add_row(
            str(trial.number),
            _fmt(trial.value(metric)),
            "-" if spread is None else f"{spread:.4f}",
            str(trial.n),
            f"{trial.trainable_params:,}",
            share,
            name,
        )
    return table


def jobs_table(jobs: Sequence[JobRecord]) -> Table:
    table = Table(title="jobs")
    for column in ("id", "state", "model", "task", "space", "trials", "created"):
        table.add_column(column)
    for job in jobs:
        table.add_row(
            str(job.id),
            job.state,
            str(job.spec.get("model")),
            str(job.spec.get("task")),
            str(job.spec.get("space")),
            f"{job.trials_done}/{job.budget_trials}",
            job.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


def status_panel(job: JobRecord, summary: dict[str, Any]) -> Panel:
    lines = [
        f"state {job.state}; trials {job.trials_done}/{job.budget_trials} "
        f"({job.trial_counts.get(TrialState.FAILED, 0)} failed, {job.trial_counts.get(TrialState.RUNNING, 0)} running)",
        f"model {job.spec.get('model')}  task {job.spec.get('task')}  space {job.spec.get('space')}",
        f"Pareto set: {summary['pareto_size']} trials",
    ]
    if summary["best"]:
        best = summary["best"]
        lines.append(f"best: trial {best['trial']} (rung {best['rung']}) {best['values']}")
    if summary["hypervolume"] is not None:
        lines.append(
            f"hypervolume {summary['hypervolume']:.4f} after {summary['hypervolume_history'][-1]['trials_done']} "
            f"trials (reference {summary['hypervolume_reference']})"
        )
    if summary["proxy_warning"]:
        lines.append(f"[yellow]warning: {summary['proxy_warning']}[/yellow]")
    if summary["validation"]:
        lines.append(validation_line(summary["validation"]))
    lines += [f"failed trial {f['trial']}: {f['error']}" for f in summary["failures"][-5:]]
    if job.error:
        lines.append(f"error: {job.error}")
    return Panel(Group(*lines), title=f"job {job.id}")


def validation_line(validation: dict[str, Any]) -> str:
    """One line: how the search ranking held up on dev."""
    def corr(name: str) -> str:
        return "-" if validation[name] is None else f"{validation[name]:.2f}"

    return (
        f"validation on dev ({len(validation['pairs'])} structures): Spearman {corr('spearman')}, Kendall "
        f"{corr('kendall')}; {validation['search_front_still_non_dominated']} of "
        f"{validation['search_front_validated']} validated front members stay non-dominated"
    )


def validation_table(validation: dict[str, Any]) -> Table:
    """Search score (mean of n runs) next to the dev score of each validated structure."""
    metric = validation["metric"]
    front = {row["trial"] for row in validation["validated_front"]}
    table = Table(title=f"validation: {metric} on dev", caption=validation_line(validation))
    for column in ("trial", f"search {metric}", "n", f"dev {metric}", "trainable", "validated front"):
        table.add_column(column, justify="right")
    for pair in sorted(validation["pairs"], key=lambda p: -p["dev"]):
        table.add_row(
            str(pair["trial"]), _fmt(pair["search"]), str(pair["n"]), _fmt(pair["dev"]),
            f"{pair['trainable_params']:,}", "yes" if pair["trial"] in front else "",
        )  # fmt: skip
    return table


def next_commands(job_id: int, trial: TrialRecord, storage: str) -> str:
    """What a user runs after a search: the front, its check on dev (validate), then the best row's
    export (to peft when one peft adapter holds it, else autopeft's own format) or full training.
    Plain text: a terminal must not wrap a command that is to be pasted."""
    from autopeft.export.peft_format import fits_one_peft_adapter
    from autopeft.space.structure import Structure

    store = "" if storage == DEFAULT_URL else f" --storage {storage}"
    export_format = "peft" if fits_one_peft_adapter(Structure.from_json(trial.structure)) else "autopeft"
    return "\n".join([
        "next:",
        f"  autopeft pareto {job_id}{store}",
        f"  autopeft validate {job_id} --top 3{store}",
        f"  autopeft export {job_id} --trial {trial.number} --format {export_format} --out adapter{store}",
        f"  autopeft train {job_id} --trial {trial.number} --out run{store}",
    ])


MEASUREMENTS = {
    "spt": "SPT sensitivities",
    "ist": "IST layer importance",
    "eva": "EVA's vectors for LoRA's A",
    "corda": "CorDA's covariance-weighted singular vectors for LoRA's A and B",
    "sparse_sensitivity": "per-entry SPT sensitivities for sparse updates",
    "sparse_lottery": "LT-SFT's dense warm-up for sparse updates",
}


def measuring_line(method: str) -> str:
    """Said before a measurement the store does not hold yet (it is made once, then cached)."""
    return f"measuring {MEASUREMENTS[method]} on the training subset (once per model, task and settings)"


def search_header(prepared: PreparedJob, store_url: str) -> str:
    spec, layout = prepared.spec, prepared.space.layout
    return (
        f"searching {spec.trials} trials of space '{prepared.space_spec.name}' "
        f"({len(prepared.space.dimensions)} dimensions) for {spec.model} "
        f"({layout.total_params:,} parameters, {layout.num_layers} layers, {layout_origin(layout)}) "
        f"on {prepared.task.name} "
        f"(train {len(prepared.task.train):,} / search {len(prepared.task.search):,} / dev {len(prepared.task.dev):,}"
        f" examples; trials score on search) with {spec.workers} worker(s); store {store_url}"
    )


def layout_origin(layout: ModelLayout) -> str:
    if layout.family == "discovered":
        return "layout discovered from the model"
    return f"{layout.family} layout from the registry"


def layout_table(layout: ModelLayout, unnamed: Sequence[str], skipped: Sequence[str]) -> Table:
    """The roles of a model's first layer: module, shape; what discovery could not name or skipped."""
    first = layout.layers[0]
    table = Table(title=f"{layout.model_type}: {layout.num_layers} layers, {layout_origin(layout)}")
    for column in ("role", "module (layer 0)", "in -> out"):
        table.add_column(column)
    for role, shape in first.matrices.items():
        table.add_row(role, shape.name, f"{shape.in_features} -> {shape.out_features}")
    table.add_row("norms", ", ".join(name.removeprefix(first.path + ".") for name in first.norms) or "-", "")
    table.add_row("ffn", f"{first.ffn_input} -> {first.ffn_output}", "")
    if unnamed:
        table.caption = f"kept by leaf name (no role rule names them): {', '.join(unnamed)}"
    if skipped:
        table.caption = (table.caption or "") + f"  not searchable (inside repeated sub-blocks): {', '.join(skipped)}"
    return table


class SearchProgress:
    """A progress bar of budget spent, with the best metric so far and the hypervolume."""

    def __init__(self, console: Console, objective: Objective, budget: float) -> None:
        self.objective = objective
        self.best: float | None = None
        self.bar = Progress(
            TextColumn("[bold]job {task.fields[job]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task_id = self.bar.add_task("search", total=budget, job="-", best="starting workers")

    def __enter__(self) -> SearchProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def created(self, job_id: int) -> None:
        self.bar.update(self.task_id, job=job_id, best="training")

    def update(self, progress: SchedulerProgress) -> None:
        value = progress.last.value(self.objective.name)
        if value is not None and (
            self.best is None or (value > self.best if self.objective.goal == "max" else value < self.best)
        ):
            self.best = value
        text = f"best {self.objective.name} {'-' if self.best is None else f'{self.best:.4f}'}"
        if progress.hypervolume is not None:
            text += f", HV {progress.hypervolume:.4f}"
        if progress.failed:
            text += f", {progress.failed} failed"
        self.bar.update(self.task_id, completed=progress.spent_units, best=text)
