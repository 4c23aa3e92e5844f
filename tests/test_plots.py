"""Plots of a job: the files hold the trials, the front and the history, not just bytes."""

from __future__ import annotations

import json
import re

import pytest

from autopeft.errors import AutopeftError
from autopeft.objectives import Objective
from autopeft.plots import ParetoView, parallel_figure_html, pareto_figure_png, write_plot
from autopeft.store import Store
from autopeft.trials import TrialOutcome, TrialState

OBJECTIVES = [Objective("accuracy", "max"), Objective("trainable_params", "min")]
# (trainable params, accuracy or None for a failed trial, config)
TRIALS = [
    (10_000, 0.76, {"lora.rank": 1, "lora.variant": "lora", "layers.L0": True}),
    (74_000, 0.81, {"lora.rank": 8, "lora.variant": "dora", "layers.L0": True}),
    (296_000, 0.80, {"lora.rank": 32, "lora.variant": "lora", "layers.L0": False}),
    (25_000, 0.735, {"lora.rank": 8, "lora.variant": "rslora", "layers.L0": False}),
    (50_000, None, {"lora.rank": 4, "lora.variant": "lora", "layers.L0": True}),
    (339_000, 0.84, {"lora.rank": 8, "lora.variant": "lora", "layers.L0": True}),
]
FRONT = [0, 1, 5]  # trial numbers on the front, by cost
DOMINATED = [2, 3]
HISTORY = [(2, 0.1), (4, 0.35), (6, 0.42)]


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def trials(store_url):
    store = Store(store_url)
    spec = {"objectives": [o.to_json() for o in OBJECTIVES], "model": "minilm", "task": "SST-2"}
    job = store.create_job(spec, budget_trials=len(TRIALS))
    for params, accuracy, config in TRIALS:
        trial = store.add_trial(job, config=config, structure={"lora": {}, "point": config}, trainable_params=params,
                                seed=0, fidelity={})
        failed = accuracy is None
        store.record_outcome(TrialOutcome(
            trial.id, TrialState.FAILED if failed else TrialState.COMPLETED, "w",
            metrics={} if failed else {"accuracy": accuracy}, error="non-finite loss" if failed else None,
        ))
    return store.trials(job)


def plotly_calls(page: str) -> list[tuple[list, dict]]:
    """(data, layout) of every Plotly.newPlot call in an HTML page."""
    decoder = json.JSONDecoder()
    calls = []
    for match in re.finditer(r"Plotly\.newPlot\(\s*", page):
        _, end = decoder.raw_decode(page, match.end())  # the div id
        data, end = decoder.raw_decode(page, page.index("[", end))
        layout, _ = decoder.raw_decode(page, page.index("{", end))
        calls.append((data, layout))
    return calls


def test_front_and_dominated_split(trials):
    view = ParetoView.of(trials, OBJECTIVES)
    assert [t.number for t in view.front] == FRONT
    assert sorted(t.number for t in view.dominated) == DOMINATED  # failed trial 4 is nowhere


def test_png_has_grey_dominated_points_a_labelled_front_and_the_history(trials, tmp_path):
    view = ParetoView.of(trials, OBJECTIVES)
    figure = pareto_figure_png(view, HISTORY, "job 1")
    front_axes, history_axes = figure.axes
    dominated, front = front_axes.collections
    assert dominated.get_offsets().tolist() == [[296_000, 0.80], [25_000, 0.735]]
    assert front.get_offsets().tolist() == [[10_000, 0.76], [74_000, 0.81], [339_000, 0.84]]
    assert [text.get_text() for text in front_axes.texts] == ["0", "1", "5"]
    assert front_axes.get_xscale() == "log"
    assert history_axes.lines[0].get_xydata().tolist() == [[2, 0.1], [4, 0.35], [6, 0.42]]

    path = write_plot(tmp_path / "pareto.png", trials, OBJECTIVES, HISTORY)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_png_without_history_has_one_panel(trials):
    assert len(pareto_figure_png(ParetoView.of(trials, OBJECTIVES)).axes) == 1


def test_html_holds_the_front_the_history_and_parallel_coordinates(trials, tmp_path):
    page = write_plot(tmp_path / "pareto.html", trials, OBJECTIVES, HISTORY, title="job 1").read_text()
    (pareto_data, pareto_layout), (parallel_data, _) = plotly_calls(page)
    by_name = {trace["name"]: trace for trace in pareto_data}
    assert by_name["Pareto front"]["x"] == [10_000, 74_000, 339_000]
    assert by_name["Pareto front"]["text"] == ["0", "1", "5"]
    assert by_name["dominated"]["y"] == [0.80, 0.735]
    assert by_name["hypervolume"]["x"] == [2, 4, 6] and by_name["hypervolume"]["y"] == [0.1, 0.35, 0.42]
    assert pareto_layout["xaxis"]["type"] == "log"
    (parallel,) = parallel_data
    assert parallel["type"] == "parcoords"
    axes = {axis["label"]: axis for axis in parallel["dimensions"]}
    assert axes["lora.rank"]["values"] == [1, 8, 32, 8, 8]  # trials 0, 1, 2, 3, 5: no failed trial
    assert axes["lora.variant"]["ticktext"] == ["dora", "lora", "rslora"]
    assert axes["accuracy"]["values"] == [0.76, 0.81, 0.80, 0.735, 0.84]
    assert re.search(r"plotly\.js v\d", page)  # the library is embedded: the page works offline


def test_parallel_coordinates_treat_booleans_as_categories(trials):
    figure = parallel_figure_html(trials, ParetoView.of(trials, OBJECTIVES))
    axis = next(d for d in figure.data[0].dimensions if d.label == "layers.L0")
    assert list(axis.ticktext) == ["False", "True"] and list(axis.values) == [1, 1, 0, 0, 1]


@pytest.mark.parametrize("name, message", [("pareto.svg", "must end in .png or .html"),
                                           ("missing/pareto.png", "does not exist")])
def test_bad_plot_paths(trials, tmp_path, name, message):
    with pytest.raises(AutopeftError, match=message):
        write_plot(tmp_path / name, trials, OBJECTIVES)


@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_cli_pareto_plot(trials, store_url, tmp_path, capsys, suffix):
    from autopeft.cli import main

    store = Store(store_url)
    for done, volume in HISTORY:
        store.record_hypervolume(1, 0, done, volume, {"accuracy": 0.0, "trainable_params": -1e6})
    store.record_hypervolume(1, 1, 2, 0.9, {})  # another rung's history stays out of the plot
    path = tmp_path / f"front{suffix}"
    with pytest.raises(SystemExit) as done:
        main(["pareto", "1", "--storage", store_url, "--plot", str(path), "--json"])
    assert done.value.code == 0
    printed = capsys.readouterr()
    assert printed.err == f"wrote {path}\n" and json.loads(printed.out)[0]["trial"] == 5
    assert path.stat().st_size > 10_000
    if suffix == ".html":
        (data, _), _ = plotly_calls(path.read_text())
        history = next(trace for trace in data if trace["name"] == "hypervolume")
        assert (history["x"], history["y"]) == ([2, 4, 6], [0.1, 0.35, 0.42])


def test_cli_pareto_plot_rejects_other_suffixes(trials, store_url, tmp_path, capsys):
    from autopeft.cli import main

    with pytest.raises(SystemExit) as done:
        main(["pareto", "1", "--storage", store_url, "--plot", str(tmp_path / "front.pdf")])
    assert done.value.code == 2
    assert capsys.readouterr().err.startswith("error: --plot ")
