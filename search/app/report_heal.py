"""report.html's healing section: the training loss per step and the held-out perplexity during healing
(metrics.json's ``heal``: ``curve`` and ``evals``), with the dense model's and the unhealed model's perplexity as
reference lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import plotly.graph_objects as go

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756")


def heal_figure(heal: dict) -> go.Figure:
    """Loss against tokens trained (left) and held-out perplexity against tokens trained (right)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["training loss", "held-out perplexity"])
    curve, evals = heal.get("curve") or [], heal.get("evals") or []
    fig.add_trace(go.Scatter(x=[c["tokens"] for c in curve], y=[c["loss"] for c in curve], mode="lines",
                             name="loss", line={"color": COLORS[0]}), row=1, col=1)  # fmt: skip
    fig.add_trace(go.Scatter(x=[e["tokens"] for e in evals], y=[e["ppl"] for e in evals], mode="lines+markers",
                             name="healed", line={"color": COLORS[1]}), row=1, col=2)  # fmt: skip
    end = max([c["tokens"] for c in curve] + [e["tokens"] for e in evals] + [0])
    for name, value, color in (("dense", heal.get("dense_ppl"), COLORS[2]), ("before", heal.get("ppl_before"),
                                                                             COLORS[3])):  # fmt: skip
        if value is not None:
            fig.add_trace(go.Scatter(x=[0, end], y=[value, value], mode="lines", name=name,
                                     line={"dash": "dash", "color": color}), row=1, col=2)  # fmt: skip
    fig.update_xaxes(title_text="tokens trained")
    fig.update_layout(height=380, margin={"t": 60}, legend={"orientation": "h", "y": -0.25})
    return fig


def heal_section(metrics: dict, chart) -> tuple[str, str] | None:
    """(title, HTML) of the healing section, None when the run was not healed; ``chart``: report.py's renderer."""
    heal = metrics.get("heal")
    if not heal:
        return None
    title = f"Healing: {heal.get('method')} on {heal.get('tokens'):,} tokens (teacher {heal.get('teacher')})"
    return title, chart(heal_figure(heal), "chart-heal")
