"""report.html's evaluation section: accuracy per task per model (eval.json, search/app/eval.py) as grouped
bars with lm-eval's stderr as error bars, and every metric in the table ``strata-eval`` prints."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING

from search.evaluate.results import table

if TYPE_CHECKING:
    import plotly.graph_objects as go

ACCURACY = ("acc", "acc_norm", "exact_match", "mc1", "mc2")  # lm-eval's accuracy metrics (0..1, higher is better)
COLORS = {"dense": "#9d9d9d", "uniform": "#f58518", "flap_global": "#e45756", "searched": "#4c78a8",
          "pruned": "#4c78a8", "healed": "#54a24b"}  # fmt: skip


def accuracy_bars(evaluation: dict) -> list[tuple[str, str]]:
    """(task, metric) of every accuracy metric in eval.json, in its order."""
    return [(task, metric) for task, metrics in evaluation["results"].items() for metric in metrics
            if metric.split(" ")[0] in ACCURACY]  # fmt: skip


def eval_figure(evaluation: dict) -> go.Figure | None:
    """One bar per model for each (task, accuracy metric), stderr as error bars; None without accuracy."""
    import plotly.graph_objects as go

    bars = accuracy_bars(evaluation)
    if not bars:
        return None
    x = [f"{task}<br>{metric}" for task, metric in bars]
    fig = go.Figure()
    for model in evaluation["models"]:
        cells = [evaluation["results"][task][metric].get(model) or {} for task, metric in bars]
        fig.add_trace(go.Bar(x=x, y=[c.get("value") for c in cells], name=model,
                             marker_color=COLORS.get(model),
                             error_y={"type": "data", "array": [c.get("stderr") or 0 for c in cells]}))  # fmt: skip
    fig.update_layout(barmode="group", height=380, yaxis_title="accuracy", yaxis_range=[0, 1], margin={"t": 30},
                      legend={"orientation": "h", "y": -0.25})  # fmt: skip
    return fig


def eval_section(evaluation: dict, chart: Callable[[go.Figure, str], str]) -> str:
    """The section's HTML: the chart (drawn by report.py's ``chart``) and the table of every metric."""
    fig = eval_figure(evaluation)
    settings = evaluation.get("settings") or {}
    note = (f"lm-evaluation-harness {evaluation.get('lm_eval')}; num_fewshot {settings.get('num_fewshot')}, "
            f"limit {settings.get('limit')}; the value over dense per model in the last columns")  # fmt: skip
    parts = [chart(fig, "chart-eval")] if fig is not None else []
    parts.append(f'<p class="note">{html.escape(note)}</p><pre>{html.escape(table(evaluation))}</pre>')
    return "".join(parts)
