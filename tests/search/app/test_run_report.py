"""report.html: every section drawn when its input exists and skipped when not; charts render offline in
headless Chromium (a screenshot of each is kept under ``test-artifacts/``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend

from search.app.report import REPORT, pareto_points, write_report

optuna.logging.set_verbosity(optuna.logging.WARNING)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # ignored by git; CI keeps it
CHARTS = ("chart-allocation", "chart-search", "chart-pareto", "chart-proxies")
SEARCH = ["model.reference=tiny", "data.seq_len=64", "data.calib_sequences=8", "data.eval_seq_len=64",
          "data.eval_sequences=4", "progress=false", "search=evo", "search.trials=8", "search.offspring=4",
          "search.stage_tokens=[128,256,512]", "search.survivors=[2,1,1]"]  # fmt: skip


def write(path: Path, data) -> None:
    path.write_text(json.dumps(data))


def allocation(layers: int = 4) -> dict:
    return {"layers": [{"attn_units": 1 + i % 2, "attn_units_total": 2, "mlp_units": 32 * (1 + i % 3),
                        "mlp_units_total": 128} for i in range(layers)]}  # fmt: skip


def metrics(iterations: list[dict] | None) -> dict:
    data = {"model": "hand-made", "budget": {"kind": "block_params", "keep": 0.5},
            "dense": {"params": 1000, "ppl": 10.0}, "pruned": {"params": 600, "ppl": 12.5},
            "allocation": "search" if iterations else "uniform", "seconds": 3.0}  # fmt: skip
    if iterations:
        data["search"] = {"sampler": "evo", "proxy": "kl", "trials": sum(i["trials"] for i in iterations),
                          "best_fitness": iterations[-1]["best_fitness"], "iterations": iterations}  # fmt: skip
        data["baselines"] = {"uniform": {"ppl": 14.0, "kl": 0.3}, "flap_global": {"ppl": 13.0, "kl": 0.2}}
    return data


def journal_studies(run_dir: Path, values: dict[str, list[float]]) -> None:
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    for name, study_values in values.items():
        study = optuna.create_study(study_name=name, storage=storage)
        for value in study_values:
            study.tell(study.ask(), value)


@pytest.fixture
def full_run(tmp_path: Path) -> Path:
    """A run directory with every input: two coarse-to-fine studies, a Pareto front, a proxy report."""
    its = [{"iteration": 0, "study": "strata", "trials": 4, "best_fitness": 0.2},
           {"iteration": 1, "study": "strata-it1", "trials": 3, "best_fitness": 0.1}]  # fmt: skip
    write(tmp_path / "metrics.json", metrics(its))
    write(tmp_path / "allocation.json", allocation())
    journal_studies(tmp_path, {"strata": [0.5, 0.3, 0.4, 0.2], "strata-it1": [0.2, 0.1, 0.15]})
    points = [{"levels": [1, 2], "fitness": f, "params": p, "feasible": p <= 500}
              for f, p in ((0.1, 700), (0.2, 500), (0.4, 300))]  # fmt: skip
    write(tmp_path / "pareto.json", {"front": points, "chosen": points[1]})  # pipeline.pareto_choice's form
    write(tmp_path / "proxies.json", {
        "proxies": {"kl": {"kendall_tau": 0.9}, "params": {"kendall_tau": 0.0}},
        "scores": {"kl": [0.1, 0.2, 0.3], "params": [5, 5, 5]},
        "held_out_ppl": {"values": [11.0, 12.0, 14.0]}, "names": ["a", "b", "c"],
    })  # fmt: skip
    return tmp_path


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium is not installed (.ci/run installs Debian's `chromium` package)")
    return found


def render_in_chromium(page: Path, screenshot: Path) -> str:
    """The DOM of ``page`` after its scripts ran, and a screenshot (also copied to test-artifacts/).

    Every network request goes to a closed port (``--proxy-server``): the page must render offline.
    """
    base = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
            "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            f"--user-data-dir={screenshot.parent / 'chromium-profile'}", "--virtual-time-budget=20000"]  # fmt: skip
    shot = subprocess.run([*base, "--window-size=1280,2600", f"--screenshot={screenshot}", page.as_uri()],
                          capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(screenshot, ARTIFACTS / screenshot.name)
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180,
                         check=False)  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def rendered_charts(dom: str) -> set[str]:
    """Ids of the chart divs plotly drew into (it adds ``js-plotly-plot`` and ``main-svg`` children)."""
    drawn = set()
    for match in re.finditer(r'<div id="(chart-[a-z]+)"([^>]*)>', dom):
        following = dom[match.end() : match.end() + 5000]
        if "js-plotly-plot" in match.group(2) and "main-svg" in following:
            drawn.add(match.group(1))
    return drawn


def test_every_section_renders_in_headless_chromium(full_run: Path, tmp_path_factory) -> None:
    page = write_report(full_run)
    text = page.read_text()
    assert "<script src=" not in text  # plotly.js is inlined; Chromium below has no network either
    dom = render_in_chromium(page, tmp_path_factory.mktemp("shots") / "report-every-section.png")
    assert rendered_charts(dom) == set(CHARTS)
    assert "iteration 1 (strata-it1)" in dom and "hand-made" in dom
    assert "baselines.uniform.ppl" in dom and "chosen" in dom and "over budget" in dom


def test_absent_inputs_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "metrics.json", metrics(None))
    write(tmp_path / "allocation.json", allocation())
    text = write_report(tmp_path).read_text()
    assert 'id="chart-allocation"' in text and "Metrics" in text
    for absent in ("chart-search", "chart-pareto", "chart-proxies"):
        assert f'id="{absent}"' not in text


def test_search_curve_falls_back_to_metrics_without_a_storage(tmp_path: Path) -> None:
    its = [{"iteration": 0, "trials": 4, "best_fitness": 0.2}, {"iteration": 1, "trials": 3, "best_fitness": 0.1}]
    write(tmp_path / "metrics.json", metrics(its))
    text = write_report(tmp_path).read_text()
    assert 'id="chart-search"' in text and "iteration 1 (strata-it1)" in text


def test_pareto_points_accepts_a_list_an_index_or_a_point() -> None:
    points = [{"fitness": 0.1, "params": 2}, {"fitness": 0.2, "params": 1}]
    assert pareto_points(points) == (points, None)
    assert pareto_points({"points": points, "chosen": 1}) == (points, points[1])
    assert pareto_points({"front": points, "chosen": points[0]}) == (points, points[0])


def test_a_finished_run_has_its_report_and_manifest(tiny_reference_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "search.app.cli", *SEARCH, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    dom = render_in_chromium(run_dir / REPORT, tmp_path / "report-finished-run.png")
    assert rendered_charts(dom) == {"chart-allocation", "chart-search"}

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["device"]["torch"] == "cpu"
    assert manifest["packages"]["torch"] and manifest["packages"]["optuna"]
    assert len(manifest["data"]["calib_tokens_sha256"]) == 64 and manifest["data"]["corpus_sha1"]
    assert manifest["started"] <= manifest["ended"]
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    attrs = optuna.load_study(study_name="strata", storage=storage).user_attrs
    for key in ("git", "packages", "config_hash", "data", "seed", "device", "started", "ended"):
        assert attrs[key] == manifest[key], key
    assert (run_dir / "cli.log").read_text().strip(), "Hydra's job log is in the run directory"


def test_the_mlp_panel_names_what_the_model_keeps() -> None:
    """A dense model's MLP panel counts channels; a mixture's, whole experts or the channels of each expert."""
    from search.app.report import allocation_figure

    dense = {"layers": [{"attn_units": 2, "attn_units_total": 4, "mlp_units": 64, "mlp_units_total": 128}]}
    experts = {"layers": [{**dense["layers"][0], "experts": 4, "experts_total": 8}], "mlp_unit": "expert"}
    channels = {"layers": [{**dense["layers"][0], "experts": 8, "experts_total": 8}]}
    titles = [[a.text for a in allocation_figure(a, keep=None).layout.annotations] for a in (dense, experts, channels)]
    assert titles[0] == ["attention: GQA groups kept", "MLP: channels kept"]
    assert "MLP: experts kept" in titles[1]
    assert titles[2] == ["attention: GQA groups kept", "MLP: channels of each expert kept", "experts kept"]
