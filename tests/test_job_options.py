"""A job's options are declared once (autopeft.scheduler.job_spec); the CLI and the service agree with it.

Each test iterates over the declaration, so an option added there and forgotten by ``autopeft
search`` or the service's request schema fails here by name.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields
from typing import get_type_hints

import pytest
from typer.models import OptionInfo
from typer.testing import CliRunner

import autopeft.scheduler
from autopeft.cli.app import app, search
from autopeft.options import bounds_of, default_of, help_of
from autopeft.scheduler.job_spec import OPTION_GROUPS, JobSpec, TaskOptions, job_options
from autopeft.service.app import FidelityRequest, JobRequest, job_request
from autopeft.trials import Fidelity

OPTIONS = job_options()
CLI_ONLY = {"storage", "ray_address", "server"}
"""Parameters of ``autopeft search`` that say where to run, not what: no job option."""

NON_DEFAULT = {
    "model": "minilm", "task": "demo", "space": "autopeft", "trials": 5, "workers": 2, "optimizer": "random",
    "seed": 7, "train_examples": 96, "steps": 6, "batch_size": 8, "max_length": 32, "learning_rate": 0.01,
    "eval_examples": 48, "lr_rescues": 1, "text_columns": ("question", "answer"), "label_column": "label",
    "metric": "f1", "also_minimize": ("peak_memory_bytes", "step_time_s"), "max_trainable_fraction": 0.01,
    "max_time_s": 60.0, "max_worker_hours": 2.5, "rungs": 2, "eta": 2.0, "max_attempts": 4, "warm_start": 3,
    "cpus_per_worker": 2, "gpus_per_worker": 0.5, "search_examples": 100, "confirm_seeds": 3, "defaults": False,
}
"""A value other than the default for every option."""


def test_every_option_is_declared_once_with_help():
    names = [f.name for f in fields(JobSpec) if f.name not in OPTION_GROUPS]
    for group in OPTION_GROUPS:
        names += [f.name for f in fields(default_of(next(f for f in fields(JobSpec) if f.name == group)))]
    assert len(names) == len(set(names)) == len(OPTIONS), "an option name is used twice"
    assert all(help_of(declared) for declared in OPTIONS.values())
    assert set(NON_DEFAULT) == set(OPTIONS)
    assert all(NON_DEFAULT[name] != default_of(declared) for name, declared in OPTIONS.items())


def test_the_options_build_the_spec_they_name():
    assert JobSpec.from_options({"model": "m", "task": "t"}) == JobSpec(model="m", task="t")
    spec = JobSpec.from_options(NON_DEFAULT)
    assert spec.fidelity.steps == 6 and spec.task_options.metric == "f1" and spec.max_time_s == 60.0
    with pytest.raises(TypeError, match="unknown job options: colour"):
        JobSpec.from_options({"model": "m", "task": "t", "colour": "red"})


def test_the_cli_search_options_are_the_declared_ones_with_their_defaults_and_help():
    parameters = inspect.signature(search).parameters
    hints = get_type_hints(search, include_extras=True)
    assert set(parameters) - CLI_ONLY == set(OPTIONS)
    for name, declared in OPTIONS.items():
        info = next(m for m in hints[name].__metadata__ if isinstance(m, OptionInfo))
        assert info.help == help_of(declared), name
        default = parameters[name].default
        if default_of(declared) is MISSING:
            assert default is inspect.Parameter.empty, name
        elif default_of(declared) == ():
            assert default is None, name  # a list option: nothing given is the declared empty tuple
        else:
            assert default == default_of(declared), name


class Submitted(Exception):
    pass


@pytest.fixture
def cli_spec(monkeypatch):
    """``autopeft search ARGS`` -> the JobSpec it would prepare (nothing runs)."""
    def prepare(spec):
        raise Submitted(spec)

    monkeypatch.setattr(autopeft.scheduler, "prepare", prepare, raising=False)

    def run(*args: str) -> JobSpec:
        result = CliRunner().invoke(app, ["search", *args])
        assert isinstance(result.exception, Submitted), result.output
        return result.exception.args[0]

    return run


def test_the_cli_builds_the_declared_defaults(cli_spec):
    assert cli_spec("--model", "m", "--task", "t") == JobSpec(model="m", task="t")


def test_the_cli_passes_every_option_on(cli_spec):
    flags = {"max_time_s": "--max-time"}
    args = []
    for name, value in NON_DEFAULT.items():
        flag = flags.get(name, "--" + name.replace("_", "-"))
        if name == "text_columns":
            args += [flag, ",".join(value)]
        elif isinstance(value, tuple):
            args += [part for item in value for part in (flag, item)]
        elif isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(value)]
    assert cli_spec(*args) == JobSpec.from_options(NON_DEFAULT)


def test_the_service_schema_has_the_declared_options_defaults_and_bounds():
    request = dict(JobRequest.model_fields)
    fidelity = request.pop("fidelity")
    assert fidelity.annotation is FidelityRequest
    schema = {**request, **FidelityRequest.model_fields}
    assert set(schema) == set(OPTIONS)
    assert {f.name for f in fields(Fidelity)} == set(FidelityRequest.model_fields)
    assert {f.name for f in fields(TaskOptions)} <= set(request)  # task options sit at the top level
    for name, declared in OPTIONS.items():
        field = schema[name]
        declared_default = default_of(declared)
        if declared_default is MISSING:
            assert field.is_required(), name
        else:
            assert field.get_default() == (list(declared_default) if declared_default == () else declared_default), name
        assert field.description == help_of(declared), name
        bounds = {type(m).__name__.lower(): getattr(m, type(m).__name__.lower()) for m in field.metadata
                  if type(m).__name__ in ("Ge", "Le")}
        assert bounds == bounds_of(declared), name


def test_the_service_builds_the_declared_defaults_and_every_option():
    assert JobRequest(model="m", task="t").to_spec() == JobSpec(model="m", task="t")
    spec = JobSpec.from_options(NON_DEFAULT)
    assert JobRequest.model_validate(job_request(spec)).to_spec() == spec
