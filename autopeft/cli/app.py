"""Commands of the ``autopeft`` CLI: search, jobs, status, pareto, export, train, spaces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from autopeft.cli import views
from autopeft.errors import AutopeftError, StoreError
from autopeft.export import FORMAT_HELP, export_trial
from autopeft.objectives import Objective, pareto_front
from autopeft.scheduler import JobSpec, TaskOptions, prepare, run_search
from autopeft.space import shipped_spaces
from autopeft.store import DEFAULT_URL, Store
from autopeft.training import TrainingOptions
from autopeft.trials import Fidelity

app = typer.Typer(
    name="autopeft",
    help="Search for the parameter-efficient fine-tuning structure of a model and task.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()

Storage = Annotated[
    str, typer.Option("--storage", help="Trial store: SQLite file or database URL (postgresql://...).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command()
def search(
    model: Annotated[str, typer.Option(help="minilm, smollm2, a local folder or a Hugging Face id.")],
    task: Annotated[str, typer.Option(help="demo, a GLUE folder, a CSV/TSV/JSONL file or folder, or a hub dataset.")],
    space: Annotated[str, typer.Option(help="Shipped space name or YAML file.")] = "lora",
    trials: Annotated[int, typer.Option(help="Trial budget.")] = 16,
    workers: Annotated[int, typer.Option(help="Parallel Ray workers.")] = 1,
    storage: Storage = DEFAULT_URL,
    optimizer: Annotated[str, typer.Option(help="Optimizer.")] = "random",
    seed: Annotated[int, typer.Option(help="Seed of the data subsets, the optimizer and the trials.")] = 0,
    ray_address: Annotated[Optional[str], typer.Option(help="Existing Ray cluster (default: start a local one).")] = None,
    cpus_per_worker: Annotated[int, typer.Option(help="CPUs (torch threads) per worker.")] = 1,
    max_time: Annotated[Optional[float], typer.Option(help="Wall-clock budget in seconds.")] = None,
    steps: Annotated[int, typer.Option(help="Proxy fine-tune: optimizer steps.")] = Fidelity.steps,
    train_examples: Annotated[int, typer.Option(help="Proxy fine-tune: training subset size.")] = Fidelity.train_examples,
    batch_size: Annotated[int, typer.Option(help="Proxy fine-tune: batch size.")] = Fidelity.batch_size,
    max_length: Annotated[int, typer.Option(help="Proxy fine-tune: tokens per example.")] = Fidelity.max_length,
    learning_rate: Annotated[float, typer.Option(help="Proxy fine-tune: AdamW learning rate.")] = Fidelity.learning_rate,
    eval_examples: Annotated[Optional[int], typer.Option(help="Dev examples scored (default: all).")] = None,
    text_columns: Annotated[Optional[str], typer.Option(help="Comma-separated text column(s) of a CSV/JSONL task.")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Label column of a CSV/JSONL task.")] = None,
    metric: Annotated[Optional[str], typer.Option(help="Task metric to maximise (default: the task's).")] = None,
) -> None:
    """Run a multi-objective search and print its Pareto set."""
    spec = JobSpec(
        model=model,
        task=task,
        space=space,
        trials=trials,
        workers=workers,
        optimizer=optimizer,
        seed=seed,
        max_time_s=max_time,
        fidelity=Fidelity(train_examples, steps, batch_size, max_length, learning_rate, eval_examples),
        task_options=TaskOptions(
            text_columns=tuple(c.strip() for c in text_columns.split(",")) if text_columns else None,
            label_column=label_column,
            metric=metric,
        ),
    )
    prepared = prepare(spec)
    store = Store(storage)
    console.print(views.search_header(prepared, store.url))
    with views.SearchProgress(console, prepared) as progress:
        job_id = run_search(
            prepared,
            store,
            ray_address=ray_address,
            cpus_per_worker=cpus_per_worker,
            on_created=progress.created,
            on_progress=progress.update,
        )
    job = store.job(job_id)
    console.print(views.pareto_table(job, pareto_front(store.trials(job_id), _objectives(job))))
    console.print(f"job [bold]{job_id}[/bold] {job.state}: {job.trials_done} trials in {store.url}")


@app.command()
def jobs(storage: Storage = DEFAULT_URL, as_json: AsJson = False) -> None:
    """List the jobs in the store."""
    records = Store(storage).jobs()
    if as_json:
        typer.echo(json.dumps([views.job_json(job) for job in records], indent=2))
    else:
        console.print(views.jobs_table(records))


@app.command()
def status(job: int, storage: Storage = DEFAULT_URL, as_json: AsJson = False) -> None:
    """Show a job's state, progress, best trial and recent failures."""
    store = Store(storage)
    record = store.job(job)
    trials = store.trials(job)
    if as_json:
        typer.echo(json.dumps(views.status_json(record, trials, _objectives(record)), indent=2))
    else:
        console.print(views.status_panel(record, trials, _objectives(record)))


@app.command()
def pareto(
    job: int,
    storage: Storage = DEFAULT_URL,
    as_json: AsJson = False,
    plot: Annotated[Optional[Path], typer.Option(help="Also draw the front: a .png, or an interactive .html.")] = None,
) -> None:
    """Print the non-dominated trials of a job (task metric up, trainable parameters down)."""
    store = Store(storage)
    record = store.job(job)
    trials = store.trials(job)
    front = pareto_front(trials, _objectives(record))
    if plot is not None:
        from autopeft.plots import write_plot

        title = f"job {job}: {record.spec.get('model')} on {record.spec.get('task')}"
        written = write_plot(plot, trials, _objectives(record), title=title)
        typer.echo(f"wrote {written}", err=as_json)  # keeps --json output parseable
    if as_json:
        typer.echo(json.dumps([views.trial_json(t, _objectives(record)) for t in front], indent=2))
    else:
        console.print(views.pareto_table(record, front))


@app.command()
def export(
    job: int,
    trial: Annotated[int, typer.Option(help="Trial number (as listed by pareto).")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    fmt: Annotated[str, typer.Option("--format", help=f"One of: {FORMAT_HELP}.")] = "peft",
    storage: Storage = DEFAULT_URL,
) -> None:
    """Write a trial's structure as a training-stack config, validated on the real model."""
    store = Store(storage)
    written = export_trial(store.job(job), store.trial(job, trial), fmt, out)
    for path in written:
        console.print(f"wrote {path}")


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Folder for the best adapter and training_summary.json.")],
    job: Annotated[Optional[int], typer.Argument(help="Job of the trial to train (or give --config).")] = None,
    trial: Annotated[Optional[int], typer.Option(help="Trial number (as listed by pareto).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="An --format autopeft export instead of JOB --trial.")] = None,
    task: Annotated[Optional[str], typer.Option(help="Task to train on (default: the one searched on).")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the training data.")] = TrainingOptions.epochs,
    learning_rate: Annotated[float, typer.Option(help="AdamW peak learning rate.")] = TrainingOptions.learning_rate,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = TrainingOptions.batch_size,
    max_length: Annotated[int, typer.Option(help="Tokens per example.")] = TrainingOptions.max_length,
    train_examples: Annotated[Optional[int], typer.Option(help="Seeded training subset (default: all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, subset and data order.")] = 0,
    storage: Storage = DEFAULT_URL,
) -> None:
    """Train a trial's structure at full fidelity with the HF Trainer and save the best adapter."""
    from autopeft.export.autopeft_format import AutopeftConfig
    from autopeft.training.run import train_config
    from autopeft.training.sources import config_of_trial, model_of, task_of

    names_trial = job is not None or trial is not None
    if names_trial == (config is not None) or (names_trial and None in (job, trial)):
        raise AutopeftError("give either JOB --trial N or --config FILE")
    if config is not None:
        structure_config, origin = AutopeftConfig.load(config), str(config)
    else:
        store = Store(storage)
        structure_config = config_of_trial(store.job(job), store.trial(job, trial))
        origin = f"trial {trial} of job {job}"
    options = TrainingOptions(epochs, learning_rate, batch_size, max_length, train_examples, seed)
    result = train_config(structure_config, model_of(structure_config), task_of(structure_config, task), options, out)
    console.print(f"{origin}: {result.summary_line()}", highlight=False)


@app.command()
def spaces() -> None:
    """List the shipped search spaces."""
    for name, path in shipped_spaces().items():
        console.print(f"{name:12s} {path}")


def _objectives(job) -> list[Objective]:
    if "objectives" not in job.spec:
        raise StoreError(f"job {job.id} has no objectives in its spec")
    return [Objective.from_json(o) for o in job.spec["objectives"]]
