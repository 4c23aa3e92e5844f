"""Pictures of a job: its Pareto front, hypervolume history and the configs it tried.

- :func:`pareto_figure_png` (matplotlib): task metric against trainable parameters on a log
  axis; dominated trials grey, the front highlighted, joined and labelled with trial numbers;
  a second panel with the hypervolume history when one is given.
- :func:`pareto_figure_html` and :func:`parallel_figure_html` (plotly): the same front,
  interactive, and the trials as lines over their config dimensions.
- :func:`write_plot` writes a ``.png`` or a self-contained ``.html`` (both figures).

Failed trials, and completed trials without a value for an objective, are not plotted.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.subplots import make_subplots

from autopeft.errors import AutopeftError
from autopeft.objectives import Objective, observed, pareto_front
from autopeft.store import TrialRecord

FRONT_COLOUR = "#d62728"
DOMINATED_COLOUR = "#b0b0b0"
COST = "trainable_params"

HypervolumeHistory = Sequence[tuple[int, float]]
"""(trials done, hypervolume) pairs, in order."""


@dataclass(frozen=True)
class ParetoView:
    """The plotted trials: the front (sorted by cost) and the dominated rest."""

    metric: Objective
    front: list[TrialRecord]
    dominated: list[TrialRecord]

    @classmethod
    def of(cls, trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> ParetoView:
        metric = next((o for o in objectives if o.name != COST), None)
        if metric is None:
            raise AutopeftError("the job has no task-metric objective to plot against trainable parameters")
        pair = [metric, Objective(COST, "min")]
        front = sorted(pareto_front(trials, pair), key=lambda t: t.trainable_params)
        on_front = {t.number for t in front}
        dominated = [t for t in observed(trials, pair) if t.number not in on_front]
        return cls(metric, front, dominated)

    def values(self, trials: Sequence[TrialRecord]) -> tuple[list[int], list[float]]:
        return [t.trainable_params for t in trials], [t.value(self.metric.name) for t in trials]


def pareto_figure_png(view: ParetoView, hypervolume: HypervolumeHistory | None = None, title: str = "") -> Figure:
    """The Pareto front as a matplotlib figure (one panel, two with a hypervolume history)."""
    panels = 2 if hypervolume else 1
    figure = Figure(figsize=(6.5 * panels, 4.8), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    front_axes = axes[0]
    params, scores = view.values(view.dominated)
    front_axes.scatter(params, scores, color=DOMINATED_COLOUR, label="dominated", zorder=2)
    params, scores = view.values(view.front)
    front_axes.plot(params, scores, color=FRONT_COLOUR, drawstyle="steps-post", alpha=0.5, zorder=1)
    front_axes.scatter(params, scores, color=FRONT_COLOUR, label="Pareto front", zorder=3)
    for trial, x, y in zip(view.front, params, scores):
        front_axes.annotate(str(trial.number), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front_axes.set_xscale("log")
    front_axes.set_xlabel("trainable parameters")
    front_axes.set_ylabel(f"dev {view.metric.name} ({view.metric.goal})")
    front_axes.set_title(title or "Pareto front")
    front_axes.legend(loc="best")
    front_axes.grid(True, which="major", alpha=0.3)
    if hypervolume:
        done, volume = zip(*hypervolume)
        axes[1].plot(done, volume, marker="o", color=FRONT_COLOUR)
        axes[1].set_xlabel("trials done")
        axes[1].set_ylabel("hypervolume")
        axes[1].set_title("hypervolume history")
        axes[1].grid(True, alpha=0.3)
    return figure


def _hover(trial: TrialRecord, view: ParetoView) -> str:
    kinds = ", ".join(trial.structure) or "no modules"
    return (
        f"trial {trial.number}<br>{view.metric.name} {trial.value(view.metric.name):.4f}"
        f"<br>{trial.trainable_params:,} trainable<br>{kinds}"
    )


def pareto_figure_html(view: ParetoView, hypervolume: HypervolumeHistory | None = None, title: str = "") -> go.Figure:
    """The Pareto front as an interactive plotly figure (hypervolume history beside it when given)."""
    panels = 2 if hypervolume else 1
    titles = ["Pareto front", "hypervolume history"][:panels]
    figure = make_subplots(rows=1, cols=panels, subplot_titles=titles)
    for name, trials, colour, mode in (
        ("dominated", view.dominated, DOMINATED_COLOUR, "markers"),
        ("Pareto front", view.front, FRONT_COLOUR, "lines+markers+text"),
    ):
        params, scores = view.values(trials)
        figure.add_trace(
            go.Scatter(
                x=params,
                y=scores,
                mode=mode,
                name=name,
                marker={"color": colour, "size": 9},
                line={"shape": "hv", "color": colour},
                text=[str(t.number) for t in trials] if name == "Pareto front" else None,
                textposition="top center",
                hovertext=[_hover(t, view) for t in trials],
                hoverinfo="text",
            ),
            row=1,
            col=1,
        )
    figure.update_xaxes(type="log", title_text="trainable parameters", row=1, col=1)
    figure.update_yaxes(title_text=f"dev {view.metric.name} ({view.metric.goal})", row=1, col=1)
    if hypervolume:
        done, volume = zip(*hypervolume)
        figure.add_trace(
            go.Scatter(x=list(done), y=list(volume), mode="lines+markers", name="hypervolume"), row=1, col=2
        )
        figure.update_xaxes(title_text="trials done", row=1, col=2)
        figure.update_yaxes(title_text="hypervolume", row=1, col=2)
    figure.update_layout(title_text=title or "Pareto front", template="plotly_white")
    return figure


def _coordinate(name: str, values: list) -> dict:
    """One parallel-coordinates axis; text and booleans become ticked categories."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {"label": name, "values": values}
    categories = sorted({str(v) for v in values})
    index = {c: i for i, c in enumerate(categories)}
    return {
        "label": name,
        "values": [index[str(v)] for v in values],
        "tickvals": list(range(len(categories))),
        "ticktext": categories,
    }


def parallel_figure_html(trials: Sequence[TrialRecord], view: ParetoView, title: str = "") -> go.Figure:
    """Completed trials as lines over their config dimensions, the metric and log10(cost)."""
    plotted = sorted(view.front + view.dominated, key=lambda t: t.number)
    dimensions = list(dict.fromkeys(name for t in plotted for name in t.config))
    axes = [_coordinate(name, [t.config.get(name, "-") for t in plotted]) for name in dimensions]
    scores = [t.value(view.metric.name) for t in plotted]
    axes.append({"label": "log10 trainable", "values": [math.log10(max(t.trainable_params, 1)) for t in plotted]})
    axes.append({"label": view.metric.name, "values": scores})
    figure = go.Figure(
        go.Parcoords(
            dimensions=axes,
            line={"color": scores, "colorscale": "Viridis", "showscale": True,
                  "colorbar": {"title": {"text": view.metric.name}}},
        )
    )
    figure.update_layout(title_text=title or "trials over their config dimensions")
    return figure


def write_plot(
    path: str | Path,
    trials: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    hypervolume: HypervolumeHistory | None = None,
    title: str = "",
) -> Path:
    """Write the job's plots to ``path`` (``.png``: the Pareto figure; ``.html``: all figures)."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".png", ".html"):
        raise AutopeftError(f"--plot {path}: the file must end in .png or .html")
    if not path.parent.is_dir():
        raise AutopeftError(f"--plot {path}: folder {path.parent} does not exist")
    view = ParetoView.of(trials, objectives)
    if suffix == ".png":
        pareto_figure_png(view, hypervolume, title).savefig(path, dpi=120)
        return path
    parts = [
        pareto_figure_html(view, hypervolume, title).to_html(full_html=False, include_plotlyjs=True),
        parallel_figure_html(trials, view).to_html(full_html=False, include_plotlyjs=False),
    ]
    path.write_text(
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title or 'autopeft')}</title></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )
    return path
