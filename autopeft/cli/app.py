"""Commands of the ``autopeft`` CLI.

Every verb works against a store directly (``--storage``, SQLite by default) and most also
against a running service (``--server URL``, with the token from ``AUTOPEFT_TOKEN`` or the file
named by ``AUTOPEFT_TOKEN_FILE``); against a server, results print as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from autopeft import reports
from autopeft.cli import views
from autopeft.errors import AutopeftError
from autopeft.export import FORMAT_HELP
from autopeft.objectives import job_objectives
from autopeft.options import help_of
from autopeft.scheduler.job_spec import JobSpec, TaskOptions, job_options
from autopeft.store import DEFAULT_URL, JobRecord, Store, TrialRecord
from autopeft.training.options import TrainingOptions
from autopeft.trials import RESCUES_HELP, Fidelity

# Each verb imports what it uses when it runs: `--help`, `jobs` and `status` must not wait for
# Ray, torch and the rest of the search stack (tests/cli/test_lazy_cli.py keeps it so).

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
Server = Annotated[
    Optional[str],
    typer.Option("--server", envvar="AUTOPEFT_SERVER", help="Talk to an autopeft service instead of a store."),
]


def _client(server: str):
    from autopeft.service.client import ServiceClient
    from autopeft.service.token import service_token

    return ServiceClient(server, service_token())


def _print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2))


_JOB_OPTIONS = job_options()


def _job_option(name: str, *flags: str) -> Any:
    """The typer option of a job option, with the help its declaration gives (autopeft.scheduler.job_spec)."""
    return typer.Option(*flags, help=help_of(_JOB_OPTIONS[name]))


@app.command()
def search(
    # One parameter per job option, named as declared (tests/test_job_options.py checks that they agree).
    model: Annotated[str, _job_option("model")],
    task: Annotated[str, _job_option("task")],
    space: Annotated[str, _job_option("space")] = JobSpec.space,
    trials: Annotated[int, _job_option("trials")] = JobSpec.trials,
    workers: Annotated[int, _job_option("workers")] = JobSpec.workers,
    storage: Storage = DEFAULT_URL,
    optimizer: Annotated[str, _job_option("optimizer")] = JobSpec.optimizer,
    seed: Annotated[int, _job_option("seed")] = JobSpec.seed,
    ray_address: Annotated[Optional[str], typer.Option(help="Existing Ray cluster (default: start a local one).")] = None,
    cpus_per_worker: Annotated[int, _job_option("cpus_per_worker")] = JobSpec.cpus_per_worker,
    gpus_per_worker: Annotated[float, _job_option("gpus_per_worker")] = JobSpec.gpus_per_worker,
    max_time_s: Annotated[Optional[float], _job_option("max_time_s", "--max-time")] = JobSpec.max_time_s,
    max_worker_hours: Annotated[Optional[float], _job_option("max_worker_hours")] = JobSpec.max_worker_hours,
    max_trainable_fraction: Annotated[Optional[float], _job_option("max_trainable_fraction")] = JobSpec.max_trainable_fraction,
    also_minimize: Annotated[Optional[list[str]], _job_option("also_minimize")] = None,  # None: the declared ()
    rungs: Annotated[int, _job_option("rungs")] = JobSpec.rungs,
    eta: Annotated[float, _job_option("eta")] = JobSpec.eta,
    max_attempts: Annotated[int, _job_option("max_attempts")] = JobSpec.max_attempts,
    warm_start: Annotated[Optional[int], _job_option("warm_start")] = JobSpec.warm_start,
    steps: Annotated[int, _job_option("steps")] = Fidelity.steps,
    train_examples: Annotated[int, _job_option("train_examples")] = Fidelity.train_examples,
    batch_size: Annotated[int, _job_option("batch_size")] = Fidelity.batch_size,
    max_length: Annotated[int, _job_option("max_length")] = Fidelity.max_length,
    learning_rate: Annotated[float, _job_option("learning_rate")] = Fidelity.learning_rate,
    eval_examples: Annotated[Optional[int], _job_option("eval_examples")] = Fidelity.eval_examples,
    lr_rescues: Annotated[int, _job_option("lr_rescues")] = Fidelity.lr_rescues,
    search_examples: Annotated[Optional[int], _job_option("search_examples")] = JobSpec.search_examples,
    confirm_seeds: Annotated[int, _job_option("confirm_seeds")] = JobSpec.confirm_seeds,
    defaults: Annotated[bool, _job_option("defaults")] = JobSpec.defaults,
    text_columns: Annotated[Optional[str], _job_option("text_columns")] = TaskOptions.text_columns,
    label_column: Annotated[Optional[str], _job_option("label_column")] = TaskOptions.label_column,
    metric: Annotated[Optional[str], _job_option("metric")] = TaskOptions.metric,
    server: Server = None,
) -> None:
    """Run a multi-objective search and print its Pareto set (with --server: submit it)."""
    options = {name: value for name, value in locals().items() if name in _JOB_OPTIONS}  # the parameters only
    options["text_columns"] = tuple(c.strip() for c in text_columns.split(",")) if text_columns else None
    options["also_minimize"] = tuple(also_minimize or ())
    spec = JobSpec.from_options(options)
    if server:
        from autopeft.service.app import job_request

        _print_json(_client(server).submit(job_request(spec)))
        return
    from autopeft.scheduler import prepare, run_search

    prepared = prepare(spec)
    store = Store(storage)
    console.print(views.search_header(prepared, store.url))
    with views.SearchProgress(console, prepared.objectives[0], prepared.spec.trials) as progress:
        job_id = run_search(
            prepared, store, ray_address=ray_address, on_created=progress.created, on_progress=progress.update,
            on_measure=lambda method: console.print(views.measuring_line(method)),
        )
    _print_result(store, job_id, storage)


@app.command()
def resume(
    job: int,
    storage: Storage = DEFAULT_URL,
    ray_address: Annotated[Optional[str], typer.Option(help="Existing Ray cluster (default: start a local one).")] = None,
) -> None:
    """Continue a job that was interrupted, failed or lost its driver: no completed trial is lost or run again."""
    from autopeft.scheduler import resume_search

    store = Store(storage)
    record = store.job(job)
    objectives = job_objectives(record)
    with views.SearchProgress(console, objectives[0], record.budget_trials) as progress:
        progress.created(job)
        resume_search(store, job, ray_address=ray_address, on_progress=progress.update)
    _print_result(store, job, storage)


@app.command()
def cancel(job: int, storage: Storage = DEFAULT_URL, server: Server = None) -> None:
    """Stop a job: its driver abandons running trials and marks the job cancelled."""
    state = _client(server).cancel(job)["state"] if server else Store(storage).request_cancel(job)
    console.print(f"job {job}: {state}")


def _print_result(store: Store, job_id: int, storage: str) -> None:
    job = store.job(job_id)
    front, runs = _front_and_runs(store, job)
    _print_front(store, job, front, runs)
    warning = reports.stored_proxy_warning(store, job)
    if warning:
        console.print(f"[yellow]warning: {warning}[/yellow]")
    console.print(f"job [bold]{job_id}[/bold] {job.state}: {job.trials_done} trials in {store.url}")
    if front:
        typer.echo(views.next_commands(job_id, front[0], storage))


@app.command()
def jobs(storage: Storage = DEFAULT_URL, as_json: AsJson = False, server: Server = None) -> None:
    """List the jobs in the store."""
    if server:
        _print_json(_client(server).jobs())
        return
    records = Store(storage).jobs()
    if as_json:
        typer.echo(json.dumps([reports.job_json(job) for job in records], indent=2))
    else:
        console.print(views.jobs_table(records))


@app.command()
def status(job: int, storage: Storage = DEFAULT_URL, as_json: AsJson = False, server: Server = None) -> None:
    """Show a job's state, progress, hypervolume, best trial and recent failures."""
    if server:
        _print_json(_client(server).status(job))
        return
    store = Store(storage)
    record = store.job(job)
    summary = reports.stored_status(store, record, history=as_json)  # the panel shows the latest hypervolume only
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        console.print(views.status_panel(record, summary))


@app.command()
def pareto(
    job: int,
    storage: Storage = DEFAULT_URL,
    as_json: AsJson = False,
    rung: Annotated[Optional[int], typer.Option(help="Fidelity rung (default: the highest with results).")] = None,
    server: Server = None,
    plot: Annotated[Optional[Path], typer.Option(help="Also draw the front: a .png, or an interactive .html.")] = None,
) -> None:
    """Print the non-dominated trials of a job (task metric up, trainable parameters down)."""
    if server:
        if plot is not None:
            raise AutopeftError("--plot reads a store; drop --server and give --storage")
        _print_json(_client(server).pareto(job, rung))
        return
    store = Store(storage)
    record = store.job(job, counted=False)  # the table shows the job's spec, not its counts
    front, runs = _front_and_runs(store, record, rung)
    if plot is not None:  # the plot draws every trial of the rung
        _plot_front(plot, store, record, store.trials(job), front, as_json)
    if as_json:
        typer.echo(json.dumps([reports.trial_json(t, job_objectives(record)) for t in front], indent=2))
    else:
        _print_front(store, record, front, runs)


def _front_and_runs(store: Store, job: JobRecord, rung: int | None = None) -> tuple[list[TrialRecord], list[TrialRecord]]:
    """The job's front at ``rung`` (default: the highest with results) and the runs it pools."""
    runs = reports.stored_front_runs(store, job, rung)
    return reports.reported_front(runs, job_objectives(job)), runs


def _print_front(store: Store, job: JobRecord, front: list[TrialRecord], runs: list[TrialRecord]) -> None:
    """Print the front's table, its rows with a one-class run marked."""
    console.print(views.pareto_table(job, front, reports.stored_defaults(store, job), reports.one_class_rows(front, runs)))


def _plot_front(path: Path, store: Store, record, trials, front, as_json: bool) -> None:
    """Draw the reported front's rung: its trials and its hypervolume history."""
    from autopeft.plots import write_plot

    rung = front[0].rung if front else 0
    history = [(done, volume) for at, done, volume, _ in store.hypervolumes(record.id) if at == rung]
    title = f"job {record.id}: {record.spec.get('model')} on {record.spec.get('task')}"
    written = write_plot(path, [t for t in trials if t.rung == rung], job_objectives(record), history, title)
    typer.echo(f"wrote {written}", err=as_json)  # keeps --json output parseable


@app.command()
def validate(
    job: int,
    top: Annotated[Optional[int], typer.Option(help="Validate the best K rows of the front (default 3; 0 = none).")] = 3,
    trial: Annotated[Optional[list[int]], typer.Option(help="Also validate this trial (repeatable).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (default: 4x the proxy's).")] = None,
    train_examples: Annotated[Optional[int], typer.Option(help="Training examples (default: 4x the proxy's).")] = None,
    storage: Storage = DEFAULT_URL,
    ray_address: Annotated[Optional[str], typer.Option(help="Existing Ray cluster (default: start a local one).")] = None,
    as_json: AsJson = False,
) -> None:
    """Retrain the front at a higher fidelity, score it on dev, and say whether the ranking holds."""
    from autopeft.scheduler.validation import validate_job

    store = Store(storage)
    metric = job_objectives(store.job(job))[0].name

    def progress(record) -> None:
        if not as_json:
            value = record.value(metric)
            console.print(f"validated trial {record.number}: {metric} {'-' if value is None else f'{value:.4f}'} "
                          f"on dev{'' if record.error is None else f' (failed: {record.error})'}")

    summary = validate_job(
        store, job, top=top, numbers=tuple(trial or ()), steps=steps, train_examples=train_examples,
        ray_address=ray_address, on_result=progress,
    )  # fmt: skip
    if as_json:
        _print_json(summary)
    elif summary is None:
        console.print("no validation run finished")
    else:
        console.print(views.validation_table(summary))


@app.command()
def export(
    job: int,
    trial: Annotated[int, typer.Option(help="Trial number (as listed by pareto).")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    fmt: Annotated[Optional[str], typer.Option("--format", help=f"One of: {FORMAT_HELP}. [default: peft]")] = None,
    compress: Annotated[Optional[float], typer.Option(
        help="ComPEFT: keep this fraction (0, 1] of each trained update tensor, stored ternary; needs --weights.",
    )] = None,
    weights: Annotated[Optional[Path], typer.Option(
        help="Folder `autopeft train` wrote for this trial (with --compress).",
    )] = None,
    storage: Storage = DEFAULT_URL,
    server: Server = None,
) -> None:
    """Write a trial's structure as a training-stack config, validated on the real model."""
    if compress is not None:
        _export_compressed(job, trial, out, fmt, compress, weights, storage, server)
        return
    if server:
        written = _client(server).export(job, trial, fmt or "peft", out)
    else:
        from autopeft.export import export_trial

        store = Store(storage)
        written = export_trial(store.job(job), store.trial(job, trial), fmt or "peft", out, store)
    for path in written:
        console.print(f"wrote {path}")


def _export_compressed(job: int, trial: int, out: Path, fmt: Optional[str], density: float,
                       weights: Optional[Path], storage: str, server: Optional[str]) -> None:
    """``export --compress``: the trial's trained adapter, ComPEFT-compressed, in autopeft's format."""
    from autopeft.export.compeft import check_density

    check_density(density)
    if fmt not in (None, "autopeft"):
        raise AutopeftError(f"--compress writes --format autopeft (got --format {fmt})")
    if server:
        raise AutopeftError("--compress reads trained weights on this machine; drop --server and give --storage")
    if weights is None:
        raise AutopeftError(
            f"--compress needs trial {trial}'s trained weights: run `autopeft train {job} --trial {trial} "
            "--out DIR`, then pass --weights DIR"
        )
    from autopeft.training.compress import compress_trial
    from autopeft.training.sources import config_of_trial, task_of

    store = Store(storage)
    config = config_of_trial(store.job(job), store.trial(job, trial), store)
    report = compress_trial(config, weights, density, task_of(config), out)
    console.print(f"trial {trial} of job {job}: {report.summary_line()}", highlight=False)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Folder for the best adapter and training_summary.json.")],
    job: Annotated[Optional[int], typer.Argument(help="Job of the trial to train (or give --config).")] = None,
    trial: Annotated[Optional[int], typer.Option(help="Trial number (as listed by pareto).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="An --format autopeft export instead of JOB --trial.")] = None,
    task: Annotated[Optional[str], typer.Option(help="Task to train on (default: the one searched on).")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the training data.")] = TrainingOptions.epochs,
    learning_rate: Annotated[Optional[float], typer.Option(
        help="AdamW peak learning rate (default: the rate the trial's proxy learned at, after any stall rescue; "
             f"{TrainingOptions.learning_rate:g} when the trial records none).",
    )] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = TrainingOptions.batch_size,
    max_length: Annotated[int, typer.Option(help="Tokens per example.")] = TrainingOptions.max_length,
    train_examples: Annotated[Optional[int], typer.Option(help="Seeded training subset (default: all).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, subset and data order.")] = 0,
    lr_rescues: Annotated[int, typer.Option(
        help=f"Restarts at {RESCUES_HELP} the rate when the training loss stalls or collapses.",
    )] = TrainingOptions.lr_rescues,
    storage: Storage = DEFAULT_URL,
) -> None:
    """Train a trial's structure at full fidelity with the HF Trainer and save the best adapter."""
    from autopeft.export.autopeft_format import AutopeftConfig
    from autopeft.training.run import train_config
    from autopeft.training.sources import config_of_trial, model_of, proxy_learning_rate, task_of

    names_trial = job is not None or trial is not None
    if names_trial == (config is not None) or (names_trial and None in (job, trial)):
        raise AutopeftError("give either JOB --trial N or --config FILE")
    if config is not None:
        structure_config, origin = AutopeftConfig.load(config), str(config)
    else:
        store = Store(storage)
        structure_config = config_of_trial(store.job(job), store.trial(job, trial), store)
        origin = f"trial {trial} of job {job}"
    if learning_rate is None:
        learning_rate = proxy_learning_rate(structure_config) or TrainingOptions.learning_rate
    options = TrainingOptions(epochs, learning_rate, batch_size, max_length, train_examples, seed,
                              lr_rescues=lr_rescues)
    result = train_config(structure_config, model_of(structure_config), task_of(structure_config, task), options, out)
    console.print(f"{origin}: {result.summary_line()}", highlight=False)
    if result.learned_nothing:
        tried = ", ".join(f"{rate:g}" for rate in result.learning_rates)
        console.print(f"warning: dev accuracy {result.dev['accuracy']:.4f} is at the majority class's "
                      f"{result.baseline['accuracy']:.4f}: the run collapsed or never learnt; try another "
                      f"--learning-rate (this run tried {tried})", highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    storage: Storage = DEFAULT_URL,
    ray_address: Annotated[Optional[str], typer.Option(help="Existing Ray cluster (default: start a local one).")] = None,
    max_jobs: Annotated[int, typer.Option(help="Jobs running at once; more wait their turn.")] = 2,
    max_unfinished_jobs: Annotated[int, typer.Option(help="Jobs running or waiting; more are refused (429).")] = 8,
    prepare_timeout: Annotated[float, typer.Option(help="Seconds a submission may take to validate (503 past it).")] = 120.0,
    allow_root: Annotated[Optional[list[Path]], typer.Option(
        help="Folder whose models, tasks and spaces requests may name (repeatable; default: shipped names only).",
    )] = None,
    max_workers: Annotated[Optional[int], typer.Option(help="Most workers one job may ask for [default: 8].")] = None,
    max_cpus_per_worker: Annotated[Optional[int], typer.Option(help="Most CPUs per worker [default: 8].")] = None,
    max_gpus_per_worker: Annotated[Optional[float], typer.Option(help="Most GPUs per worker [default: 8].")] = None,
    max_trials: Annotated[Optional[int], typer.Option(help="Largest trial budget [default: 1000].")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Most proxy steps per trial, at the top rung [default: 10000].")] = None,
    max_train_examples: Annotated[Optional[int], typer.Option(help="Most training examples, at the top rung [default: 1000000].")] = None,
    max_eval_examples: Annotated[Optional[int], typer.Option(help="Most scored examples per trial [default: 100000].")] = None,
    max_batch_size: Annotated[Optional[int], typer.Option(help="Largest proxy batch [default: 1024].")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Most tokens per example [default: 8192].")] = None,
) -> None:
    """Run the REST service (token from AUTOPEFT_TOKEN or the file in AUTOPEFT_TOKEN_FILE).

    Requests are bounded by the --max-* limits and may name only shipped models, tasks and spaces
    or paths inside an --allow-root folder.
    """
    import uvicorn

    from autopeft.service import JobRunner, create_app
    from autopeft.service.limits import ServiceLimits
    from autopeft.service.token import service_token
    from autopeft.worker.pool import start_ray

    token = service_token()
    roots = allow_root or []
    for root in roots:
        if not root.expanduser().is_dir():
            raise AutopeftError(f"--allow-root {root}: not a folder")
    chosen = dict(max_workers=max_workers, max_cpus_per_worker=max_cpus_per_worker,
                  max_gpus_per_worker=max_gpus_per_worker, max_trials=max_trials, max_steps=max_steps,
                  max_train_examples=max_train_examples, max_eval_examples=max_eval_examples,
                  max_batch_size=max_batch_size, max_length=max_length)
    limits = ServiceLimits(**{name: value for name, value in chosen.items() if value is not None})
    store = Store(storage)
    start_ray(ray_address, num_cpus=os.cpu_count() or 1)
    runner = JobRunner(store, ray_address, max_jobs, max_unfinished_jobs, prepare_timeout)
    resumed = runner.resume_unfinished()
    console.print(f"autopeft service on http://{host}:{port} (store {store.url}); resumed jobs: {resumed or 'none'}")
    uvicorn.run(create_app(store, token, runner, limits, roots), host=host, port=port, log_level="warning")


@app.command()
def spaces(
    model: Annotated[
        Optional[str],
        typer.Option(help="Also show the layout found in this model and what each space offers on it."),
    ] = None,
) -> None:
    """List the shipped search spaces; with --model, how each binds to that model."""
    from autopeft.space import shipped_spaces

    if model is None:
        for name, path in shipped_spaces().items():
            console.print(f"{name:12s} {path}")
        return
    _describe_spaces_on(model)


def _describe_spaces_on(model_name: str) -> None:
    from autopeft.models import TaskHead, build_skeleton, resolve_model
    from autopeft.space import shipped_spaces
    from autopeft.space.discovery import discover_architecture
    from autopeft.space.layout import read_layout
    from autopeft.space.schema import load_space_spec
    from autopeft.space.search_space import bind_space
    from autopeft.tasks import TaskKind

    # The layout does not depend on the head; a 2-label classifier head builds for every family.
    skeleton = build_skeleton(resolve_model(model_name), TaskHead(TaskKind.CLASSIFICATION, 2))
    layout = read_layout(skeleton)
    found = discover_architecture(skeleton) if layout.family == "discovered" else None
    console.print(views.layout_table(layout, found.unnamed if found else (), found.skipped if found else ()))
    for name in shipped_spaces():
        try:
            space = bind_space(load_space_spec(name), skeleton)
        except AutopeftError as exc:
            console.print(f"{name:10s} not usable: {exc}")
            continue
        console.print(f"{name:10s} {len(space.dimensions)} dimensions")
        for method, why in (space.methods.excluded.items() if space.methods else ()):
            console.print(f"{'':10s} without {method}: {why}")


