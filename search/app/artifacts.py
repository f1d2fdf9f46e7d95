"""Per-trial artifacts for optuna-dashboard: every complete trial's allocation, a small plot of each new best.

``TrialArtifacts(run_dir, grid)`` is a hook for ``search.driver.Search(on_complete=[...])``, called as
``hook(study, trial, levels, value)``. Files go through Optuna's artifact API
(``optuna.artifacts.upload_artifact``) into a ``FileSystemArtifactStore`` at ``<run_dir>/artifacts``;
``strata-dashboard`` serves that store, so the dashboard lists the files on each trial's page:

- ``allocation-<trial>.json``: units kept per layer (``allocation.json``'s format), levels, value;
- ``best-<trial>.svg``: a bar chart of the fraction each layer keeps, only when the trial improves the
  study's best value (a few KB; at most a few dozen per search).

Optuna attaches an artifact to a trial through a trial attribute, and a finished trial takes no more
attributes: when the hook runs after ``study.tell`` the files are attached to the study instead, with
the trial number in their names (the dashboard lists them on the study's page).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState

from search.app.allocation_view import chart_kinds, module_units
from search.app.rundir import ARTIFACTS
from supernet.kinds import ATTN, EXPERTS, MLP, SHARED

if TYPE_CHECKING:
    from collections.abc import Sequence

    import optuna

    from supernet.space.grid import LevelGrid

log = logging.getLogger(__name__)

KIND_COLORS = {ATTN: "#4c78a8", MLP: "#f58518", EXPERTS: "#54a24b", SHARED: "#b279a2"}


def artifact_store(run_dir: Path) -> FileSystemArtifactStore:
    """The run's artifact store, ``<run_dir>/artifacts`` (created when missing)."""
    path = Path(run_dir) / ARTIFACTS
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def allocation_svg(allocation: dict, *, title: str) -> str:
    """A grouped bar chart, as a standalone SVG, of the fraction of units each layer keeps per kind."""
    layers = allocation["layers"]
    kinds = chart_kinds(allocation)
    bar, gap, height, left, top = 7, 6, 120, 34, 22
    width = left + len(layers) * (len(kinds) * bar + gap) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + height + 30}" '
        'font-family="sans-serif" font-size="10">',
        f'<text x="{left}" y="14">{title}</text>',
        f'<line x1="{left}" y1="{top + height}" x2="{width - 6}" y2="{top + height}" stroke="#888"/>',
        f'<text x="2" y="{top + 8}">100%</text><text x="14" y="{top + height}">0%</text>',
    ]
    for i, entry in enumerate(layers):
        x = left + i * (len(kinds) * bar + gap)
        for j, kind in enumerate(kinds):
            kept, total = module_units(allocation, entry, kind)
            h = height * kept / total if total else 0.0
            parts.append(
                f'<rect x="{x + j * bar}" y="{top + height - h:.1f}" width="{bar}" height="{h:.1f}" '
                f'fill="{KIND_COLORS[kind]}"><title>layer {i} {kind}: {kept}/{total}</title></rect>'
            )
        if i % 5 == 0:
            parts.append(f'<text x="{x}" y="{top + height + 12}">{i}</text>')
    legend_y = top + height + 26
    parts.append(f'<text x="{left}" y="{legend_y}" fill="{KIND_COLORS["attn"]}">attention</text>')
    parts.append(f'<text x="{left + 60}" y="{legend_y}" fill="{KIND_COLORS["mlp"]}">mlp</text>')
    for offset, kind in ((90, EXPERTS), (140, SHARED)):
        if kind in kinds:
            parts.append(f'<text x="{left + offset}" y="{legend_y}" fill="{KIND_COLORS[kind]}">{kind}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


class TrialArtifacts:
    """``on_complete`` hook uploading each complete trial's allocation (and a plot per new best).

    Args:
        run_dir: the run directory; the store is ``<run_dir>/artifacts``.
        grid: the level grid the trials' levels index (turns levels into units per layer).
        plot_best: also upload ``best-<trial>.svg`` when a trial improves the best value.
    """

    def __init__(self, run_dir: Path, grid: LevelGrid, *, plot_best: bool = True) -> None:
        self.store = artifact_store(run_dir)
        self.grid = grid
        self.plot_best = plot_best
        self.best: float | None = None  # best first-objective value seen, read from the study on first call

    def __call__(self, study: optuna.Study, trial: optuna.Trial, levels: Sequence[int], value: float) -> None:
        first = value if isinstance(value, int | float) else value[0]  # multi-objective: the first objective
        allocation = self.grid.allocation(levels).to_json()
        record = {"trial": trial.number, "value": value, "levels": list(levels),
                  "kept_params": self.grid.params(levels), **allocation}  # fmt: skip
        self.upload(study, trial, f"allocation-{trial.number}.json", json.dumps(record, indent=1), "application/json")
        if self.plot_best and self.improves(study, trial, first):
            svg = allocation_svg(allocation, title=f"trial {trial.number}: {first:.5g} (fraction kept per layer)")
            self.upload(study, trial, f"best-{trial.number}.svg", svg, "image/svg+xml")

    def improves(self, study: optuna.Study, trial: optuna.Trial, value: float) -> bool:
        """Whether ``value`` beats every other complete trial's (lower is better); remembers the best."""
        if self.best is None:
            others = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            values = [t.values[0] for t in others if t.number != trial.number and t.values]
            self.best = min(values, default=float("inf"))
        if value < self.best:
            self.best = value
            return True
        return False

    def upload(self, study: optuna.Study, trial: optuna.Trial, name: str, text: str, mimetype: str) -> str:
        """Upload ``text`` as file ``name`` to the trial while it runs, else to the study; returns the id."""
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        target = trial if any(t.number == trial.number for t in running) else study
        with tempfile.TemporaryDirectory(prefix="strata-artifact-") as tmp:
            path = Path(tmp) / name
            path.write_text(text)
            return upload_artifact(
                artifact_store=self.store, file_path=str(path), study_or_trial=target, mimetype=mimetype
            )
