"""report.html: one self-contained page about a run, readable offline (plotly.js inlined once).

Built from the run directory's files only (``search.app.rundir``), so it can be rebuilt any time with
``python -m search.app.report RUN_DIR``. Sections, each drawn only when its input exists:

1. the allocation: GQA groups and MLP channels kept per layer (``allocation.json``) against the
   uniform allocation (every module keeps the fraction ``budget.keep`` of its units, or the exact
   uniform allocation when the caller passes it);
2. the search: best fitness so far against finished trials, one line per coarse-to-fine iteration
   (the studies ``strata``, ``strata-it1``, ... of the run's storage; metrics.json's per-iteration
   best when the storage cannot be read);
3. the Pareto front of a multi-objective search (``pareto.json``: ``front``, a list of
   ``{levels, fitness, params, feasible}``, and ``chosen``; fitness against kept parameters, points over
   the budget and the chosen point marked);
4. the proxy scatter when the directory holds a proxy report (``proxies.json`` of ``strata-proxies``);
5. healing (``metrics.json``'s ``heal``): loss curve and held-out perplexity (``search/app/report_heal.py``);
6. the lm-evaluation-harness results of the run's models (``eval.json``, :mod:`search.app.report_eval`);
7. the metrics table (``metrics.json``), the headline numbers first.
"""

from __future__ import annotations

import html
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.app.allocation_view import chart_kinds, module_units
from search.app.report_eval import eval_section
from search.app.report_heal import heal_section
from search.app.rundir import EVAL, open_storage, read_json, run_config, run_studies
from supernet.io.files import write_text
from supernet.kinds import EXPERTS, SHARED

if TYPE_CHECKING:
    import plotly.graph_objects as go

log = logging.getLogger(__name__)

REPORT = "report.html"
KIND_NAMES = {
    "attn": "attention: GQA groups kept",
    "mlp": "MLP: channels kept",
    EXPERTS: "experts kept",
    SHARED: "shared expert: channels kept",
}


def panel_title(allocation: dict, kind: str) -> str:
    """What a chart's panel of ``kind`` counts, as the model has it: a mixture's MLP keeps whole experts, or
    channels in each expert; a dense MLP keeps channels."""
    layers = allocation["layers"]
    if kind == "mlp" and allocation.get("mlp_unit") == "expert":
        return "MLP: experts kept"
    if kind == "mlp" and layers and "experts" in layers[0]:
        return "MLP: channels of each expert kept"
    return KIND_NAMES[kind]


COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d")


# ---- charts ----------------------------------------------------------------------------------------
def allocation_figure(allocation: dict, *, keep: float | None, uniform: dict | None = None) -> go.Figure:
    """Kept units per layer (bars; the dense width behind) against the uniform allocation (markers)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    layers = allocation["layers"]
    x = list(range(len(layers)))
    kinds = chart_kinds(allocation)
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=[panel_title(allocation, k) for k in kinds])
    for col, kind in enumerate(kinds, start=1):
        kept, total = zip(*(module_units(allocation, e, kind) for e in layers), strict=True) if layers else ((), ())
        if uniform is not None:
            reference = [module_units(uniform, e, kind)[0] for e in uniform["layers"]]
        else:
            reference = [keep * t for t in total] if keep is not None else None
        fig.add_trace(go.Bar(x=x, y=total, name="dense", marker_color="#dddddd", showlegend=col == 1), row=1, col=col)
        fig.add_trace(go.Bar(x=x, y=kept, name="kept", marker_color=COLORS[0], showlegend=col == 1), row=1, col=col)
        if reference is not None:
            fig.add_trace(
                go.Scatter(x=x, y=reference, name="uniform", mode="markers+lines", line={"dash": "dash"},
                           marker={"color": COLORS[1]}, showlegend=col == 1),
                row=1, col=col,
            )  # fmt: skip
        fig.update_xaxes(title_text="layer", dtick=1 if len(layers) <= 32 else None, row=1, col=col)
    fig.update_layout(barmode="overlay", height=380, margin={"t": 60}, legend={"orientation": "h", "y": -0.2})
    return fig


def study_curve(storage, name: str) -> tuple[list[int], list[float], list[float]]:
    """(finished-trial index, running best, trial value) at every complete trial of one study."""
    import optuna
    from optuna.trial import TrialState

    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    xs, best, values, running, finished = [], [], [], float("inf"), 0
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        finished += 1
        if trial.state == TrialState.COMPLETE and trial.values:
            running = min(running, trial.values[0])
            xs.append(finished)
            best.append(running)
            values.append(trial.values[0])
    return xs, best, values


def search_curves(run_dir: Path, metrics: dict, storage_url: str | None) -> list[dict]:
    """One curve per coarse-to-fine iteration: name, x (finished trials, cumulative), best, values."""
    studies = run_studies(run_dir, metrics)
    iterations = (metrics.get("search") or {}).get("iterations") or []
    try:  # a report never fails a finished run: an unreachable storage leaves metrics.json's summary
        storage = open_storage(run_dir, storage_url)
    except Exception as exc:  # any storage backend's connection error
        log.warning("report: cannot open the study storage (%s); plotting metrics.json's summary", exc)
        storage = None
    curves, offset = [], 0
    for i, name in enumerate(studies):
        entry = iterations[i] if i < len(iterations) else {}
        try:
            xs, best, values = study_curve(storage, name) if storage is not None else ([], [], [])
        except KeyError:  # the study is not in the storage
            xs, best, values = [], [], []
        if not xs and entry.get("best_fitness") is not None:
            xs, best, values = [entry.get("trials", 0)], [entry["best_fitness"]], []
        curves.append({"name": f"iteration {entry.get('iteration', i)} ({name})",
                       "x": [offset + x for x in xs], "best": best, "values": values})  # fmt: skip
        offset += int(entry.get("trials") or (xs[-1] if xs else 0))
    return curves


def search_figure(curves: list[dict], proxy: str) -> go.Figure:
    """Best fitness so far against finished trials, one colour per iteration; complete trials faint."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, curve in enumerate(curves):
        color = COLORS[i % len(COLORS)]
        if curve["values"]:
            fig.add_trace(go.Scatter(x=curve["x"], y=curve["values"], mode="markers", opacity=0.3, showlegend=False,
                                     marker={"color": color, "size": 5}, name=f"{curve['name']}: trials"))  # fmt: skip
        fig.add_trace(go.Scatter(x=curve["x"], y=curve["best"], mode="lines+markers", line_shape="hv",
                                 name=curve["name"], line={"color": color}))  # fmt: skip
    fig.update_layout(height=380, xaxis_title="finished trials", yaxis_title=f"best {proxy} (lower is better)",
                      margin={"t": 30}, legend={"orientation": "h", "y": -0.25})  # fmt: skip
    return fig


def pareto_points(pareto: Any) -> tuple[list[dict], dict | None]:
    """The points and the chosen one from pareto.json (a list, or a dict with points/front and chosen)."""
    if isinstance(pareto, list):
        return pareto, None
    points = pareto.get("points") or pareto.get("front") or []
    chosen = pareto.get("chosen")
    if isinstance(chosen, int):
        chosen = points[chosen] if 0 <= chosen < len(points) else None
    return points, chosen


def pareto_figure(pareto: Any, proxy: str) -> go.Figure:
    """Fitness against kept parameters of the Pareto-optimal candidates; the chosen one as a star."""
    import plotly.graph_objects as go

    points, chosen = pareto_points(pareto)
    points = sorted(points, key=lambda p: p["params"])
    fig = go.Figure(go.Scatter(x=[p["params"] for p in points], y=[p["fitness"] for p in points],
                               mode="lines+markers", name="Pareto front", marker={"color": COLORS[0]}))  # fmt: skip
    over = [p for p in points if p.get("feasible") is False]
    if over:
        marker = {"symbol": "x", "size": 10, "color": COLORS[1]}
        fig.add_trace(go.Scatter(x=[p["params"] for p in over], y=[p["fitness"] for p in over], mode="markers",
                                 name="over budget", marker=marker))  # fmt: skip
    if chosen is not None:
        fig.add_trace(go.Scatter(x=[chosen["params"]], y=[chosen["fitness"]], mode="markers", name="chosen",
                                 marker={"symbol": "star", "size": 16, "color": COLORS[3]}))  # fmt: skip
    fig.update_layout(height=380, xaxis_title="kept parameters", yaxis_title=f"{proxy} (lower is better)",
                      margin={"t": 30})  # fmt: skip
    return fig


def proxy_figure(proxies: dict) -> go.Figure:
    """One scatter per proxy of a proxy report: proxy score against held-out perplexity."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(proxies["proxies"])
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    titles = [f"{n} (tau {proxies['proxies'][n]['kendall_tau']:.2f})" for n in names]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles)
    ppl = proxies["held_out_ppl"]["values"]
    for i, name in enumerate(names):
        row, col = i // cols + 1, i % cols + 1
        fig.add_trace(go.Scatter(x=proxies["scores"][name], y=ppl, mode="markers", name=name,
                                 text=proxies.get("names")), row=row, col=col)  # fmt: skip
        fig.update_xaxes(title_text=f"{name} (lower is better)", row=row, col=col)
        fig.update_yaxes(title_text="held-out ppl", row=row, col=col)
    fig.update_layout(showlegend=False, height=340 * rows, margin={"t": 40})
    return fig


# ---- tables ----------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        text = json.dumps(value)
        return text if len(text) <= 200 else text[:200] + " ..."
    return str(value)


def flatten(data: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as (dotted key, value) rows; lists stay values."""
    rows = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            rows += flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def headline_rows(metrics: dict) -> list[tuple[str, Any, Any]]:
    """(model, held-out ppl, parameters) for dense, pruned and each baseline allocation."""
    rows = [(name, metrics[name].get("ppl"), metrics[name].get("params")) for name in ("dense", "pruned")
            if name in metrics]  # fmt: skip
    rows += [(f"{name} (same supernet)", b.get("ppl"), "") for name, b in (metrics.get("baselines") or {}).items()]
    if metrics.get("heal") and "pruned" in metrics:
        rows.append(("pruned + healed", metrics["heal"].get("ppl_after"), metrics["pruned"].get("params")))
    return rows


# ---- the page --------------------------------------------------------------------------------------
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}
th{{background:#f3f3f3}}section{{margin:1.5em 0}}.note{{color:#666}}</style>
<script type="text/javascript">{plotly}</script></head>
<body><h1>{title}</h1><p class="note">{subtitle}</p>
{sections}
</body></html>
"""


def chart(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False})


def sections(
    run_dir: Path, *, uniform: dict | None, storage_url: str | None, metrics: dict | None = None
) -> list[tuple[str, str]]:
    """(title, HTML) of every section whose input exists (``metrics``: metrics.json's content, else read)."""
    metrics = (read_json(run_dir / "metrics.json") or {}) if metrics is None else metrics
    allocation = read_json(run_dir / "allocation.json")
    pareto = read_json(run_dir / "pareto.json")
    proxies = read_json(run_dir / "proxies.json")
    keep = (metrics.get("budget") or {}).get("keep")
    search = metrics.get("search") or {}
    proxy = search.get("proxy", "fitness")
    if search.get("heal_tokens"):  # training-aware selection: the last stage's values are of healed copies
        proxy = f"{proxy} after healing {search['heal_tokens']:,} tokens"
    out = []
    if allocation is not None:
        fig = allocation_figure(allocation, keep=keep, uniform=uniform)
        out.append(("Kept units per layer against uniform", chart(fig, "chart-allocation")))
    curves = search_curves(run_dir, metrics, storage_url) if metrics.get("search") else []
    if any(c["x"] for c in curves):
        out.append(("Search: best fitness against trials", chart(search_figure(curves, proxy), "chart-search")))
    if pareto is not None and pareto_points(pareto)[0]:
        out.append(("Pareto front", chart(pareto_figure(pareto, proxy), "chart-pareto")))
    if proxies is not None and proxies.get("proxies"):
        out.append(("Proxy report: proxy against held-out perplexity", chart(proxy_figure(proxies), "chart-proxies")))
    healing = heal_section(metrics, chart)
    if healing is not None:
        out.append(healing)
    evaluation = read_json(run_dir / EVAL)
    if evaluation is not None and evaluation.get("results"):
        out.append(("Evaluation: lm-evaluation-harness", eval_section(evaluation, chart)))
    if metrics:
        headline = table(headline_rows(metrics), ("model", "held-out ppl", "parameters"))
        every = table(flatten(metrics), ("metric", "value"))
        out.append(("Metrics", f"{headline}<details open><summary>metrics.json</summary>{every}</details>"))
    return out


def render(
    run_dir: Path, *, uniform: dict | None = None, storage_url: str | None = None, metrics: dict | None = None
) -> str:
    """The report page of ``run_dir`` as one HTML string (``metrics``: metrics.json's content, else read: the
    run writes the report before metrics.json, which marks it finished)."""
    from plotly.offline import get_plotlyjs

    metrics = (read_json(run_dir / "metrics.json") or {}) if metrics is None else metrics
    manifest = read_json(run_dir / "manifest.json") or {}
    budget = metrics.get("budget") or run_config(run_dir).get("budget") or {}
    title = f"strata: {metrics.get('model', run_dir.name)} at keep {budget.get('keep', '?')}"
    git = manifest.get("git") or {}
    revision = git.get("revision") and f"git {git['revision'][:12]}{' (dirty)' if git.get('dirty') else ''}"
    subtitle = " · ".join(
        html.escape(str(part))
        for part in (run_dir.resolve(), f"allocation: {metrics.get('allocation', '?')}", manifest.get("started"),
                     revision)
        if part
    )  # fmt: skip
    body = "\n".join(f"<section><h2>{html.escape(t)}</h2>{content}</section>"
                     for t, content in sections(run_dir, uniform=uniform, storage_url=storage_url,
                                                metrics=metrics))  # fmt: skip
    return PAGE.format(title=html.escape(title), subtitle=subtitle, sections=body, plotly=get_plotlyjs())


def write_report(
    run_dir: Path, *, uniform: dict | None = None, storage_url: str | None = None, metrics: dict | None = None
) -> Path:
    """Write ``run_dir/report.html`` atomically; ``uniform``: the exact uniform allocation, if known;
    ``metrics``: metrics.json's content when it is not written yet."""
    run_dir = Path(run_dir)
    path = run_dir / REPORT
    write_text(path, render(run_dir, uniform=uniform, storage_url=storage_url, metrics=metrics))
    log.info("run report written to %s", path)
    return path


def main(argv: list[str] | None = None) -> None:
    """``python -m search.app.report RUN_DIR``: (re)build a run's report.html."""
    from search.app.args import fail

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        fail("give one run directory: python -m search.app.report RUN_DIR")
    print(write_report(Path(args[0])))


if __name__ == "__main__":
    main()
