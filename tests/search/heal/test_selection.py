"""Training-aware selection (``search.heal_tokens``, search/heal/selection.py): the last stage scores a healed copy
of each candidate; the live model and the supernet stay as they were; the windows it trains on are apart from the
calibration and fitness windows; what it cannot do is refused before any work."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from proxies.config import ProxyConfig
from search.app.config import RunConfig
from search.driver import SearchConfig
from search.heal.config import HealConfig
from search.heal.selection import SelectionHeal, selection_config
from supernet.errors import UsageError
from supernet.io.data import DataConfig
from supernet.io.loading import ModelConfig

SEQ = 16
HEAL = selection_config(HealConfig(lr=1e-3), tokens=256, batch_tokens=64, seq_len=SEQ)  # 4 steps of 4 windows


@pytest.fixture(scope="module")
def live(tiny_reference_dir: Path):
    """The tiny reference model, its supernet at keep 0.5, the switcher, and windows of its own text: 8 to score
    on (2, then 8 per stage), 16 to heal on; and the model's directory."""
    from search.app.inputs import train_windows
    from supernet.io.loading import load_model
    from supernet.space.grids import supernet_grid
    from supernet.variants.build import build_supernet
    from supernet.variants.config import SupernetConfig
    from supernet.variants.switch import Switcher

    model, tokenizer, adapter = load_model(tiny_reference_dir)
    data = DataConfig(source="builtin", seq_len=SEQ, calib_sequences=4)
    calib, tokens = train_windows(data, tokenizer, seed=0, fitness_tokens=24 * SEQ)
    cfg = SupernetConfig(criterion="wanda_sp", compensation="bias", radius=1)
    net = build_supernet(model, adapter, calib, cfg, supernet_grid(adapter, 0.5, cfg), use_cache=False,
                         progress=False)  # fmt: skip
    return model, Switcher(model, adapter), net, tokens[:8], tokens[8:], tiny_reference_dir


def evaluator(live, heal: HealConfig | None):
    from search.fitness import Evaluator, stage_windows

    model, switcher, net, fitness, heal_windows, _ = live
    healer = None if heal is None else SelectionHeal(heal, heal_windows, seed=0)
    return Evaluator(model, switcher, net, ProxyConfig(name="kl"), stage_windows(fitness, [32, 128]), heal=healer)


def test_the_last_stage_scores_a_healed_copy_and_leaves_the_live_model_alone(live) -> None:
    plain, healing = evaluator(live, None), evaluator(live, HEAL)
    levels = list(live[2].grid.target)
    before = plain.score(levels, 1)
    assert healing.score(levels, 0) == plain.score(levels, 0)  # earlier stages score the live candidate
    healed = healing.score(levels, 1)
    assert 0 < healed < before  # trained toward the dense model, the copy is closer to it
    plain.cache.clear()
    assert plain.score(levels, 1) == before  # the live model and the supernet are as they were
    assert healing.score(levels, 1) == healed and healing.healed == 1  # cached: healed once
    again = evaluator(live, HEAL)
    assert again.score(levels, 1) == healed  # the same windows and seed for every candidate: repeatable
    for used in (healing, again):
        directory = used.heal.directory
        assert directory.is_dir()
        used.close()
        assert not directory.exists()  # the teacher cache goes with the evaluator


def test_a_ray_actor_builds_the_same_selection_heal_from_its_spec(live) -> None:
    """The spec an actor gets carries the heal settings and windows: its evaluator heals as the driver's does."""
    from search.actor import EvaluatorSpec, SupernetState, tensors_to_bytes

    _, _, net, fitness, heal_windows, model_dir = live
    spec = EvaluatorSpec(model_dir=str(model_dir), dtype="float32", device="cpu", proxy=ProxyConfig(name="kl"),
                         stage_tokens=[32, 128], batch_size=8, prescreen=None, attn_unit="group", expert_unit="expert",
                         calib=tensors_to_bytes({"calib": fitness}), heal=HEAL,
                         heal_windows=tensors_to_bytes({"windows": heal_windows}))  # fmt: skip
    actor = spec.build(SupernetState.of(net))
    levels = list(net.grid.target)
    driver = evaluator(live, HEAL)
    assert actor.score(levels, 1) == pytest.approx(driver.score(levels, 1), rel=1e-5) and actor.healed == 1
    actor.close()
    driver.close()


def run_config(**search) -> RunConfig:
    return RunConfig(model=ModelConfig(reference="tiny"), data=DataConfig(seq_len=64, calib_sequences=4),
                     search=SearchConfig(stage_tokens=[128, 256, 512], survivors=[2, 1, 1], **search),
                     progress=False)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"search": {"heal_tokens": 512, "sampler": "none"}}, "search=evo"),
        ({"search": {"heal_tokens": 512}, "proxy": "trace_correlation"}, "proxy=kl|ppl"),
        ({"search": {"heal_tokens": 512, "heal_batch_tokens": 768}}, "search.heal_batch_tokens = 512 x n"),
        ({"search": {"heal_tokens": 512, "heal_batch_tokens": 32}}, "under one window"),
        ({"search": {"heal_tokens": -1}}, "search.heal_tokens=-1"),
        ({"search": {"heal_tokens": 512, "heal_lr": 0.0}}, "search.heal_lr=0.0"),
    ],
)
def test_what_training_aware_selection_cannot_do_is_refused_in_one_line(change: dict, key: str) -> None:
    with pytest.raises(UsageError) as info:
        cfg = run_config(**{"sampler": "evo", **change["search"]})
        if "proxy" in change:  # the proxy is checked with the whole config
            RunConfig(model=cfg.model, data=cfg.data, search=cfg.search, proxy=ProxyConfig(name=change["proxy"]))
    assert key in str(info.value) and "\n" not in str(info.value)


def test_the_selection_heal_takes_the_heal_settings_but_its_own_rate_and_steps() -> None:
    from search.app.config import selection_heal_config

    cfg = run_config(heal_tokens=1000, heal_batch_tokens=1024)
    cfg.heal = HealConfig(lr=2e-4, temperature=2.0, method="lora", micro_batch=4)
    heal = selection_heal_config(cfg)
    assert (heal.lr, heal.temperature, heal.method, heal.teacher) == (2e-4, 2.0, "lora", "cache")
    assert (heal.seq_len, heal.batch_tokens, heal.micro_batch, heal.steps) == (64, 1024, 4, 1)
    cfg.search.heal_lr = 1e-3
    assert selection_heal_config(cfg).lr == 1e-3 and cfg.heal.lr == 2e-4  # the run's final heal keeps heal.lr
    assert selection_heal_config(run_config()) is None


def test_selection_windows_are_apart_from_calibration_and_fitness(tiny_reference_dir: Path) -> None:
    from transformers import AutoTokenizer

    from search.app.inputs import fitness_tokens, selection_heal_windows, train_windows

    tokenizer = AutoTokenizer.from_pretrained(tiny_reference_dir)
    cfg = run_config(heal_tokens=1000)
    calib, fitness = train_windows(cfg.data, tokenizer, seed=cfg.seed, fitness_tokens=fitness_tokens(cfg))
    windows = selection_heal_windows(cfg, tokenizer)
    assert windows.shape == (-(-1000 // 64), 64)  # ceil(heal_tokens / data.seq_len) windows of data.seq_len
    rows = {tuple(r) for r in windows.tolist()}
    assert not rows & {tuple(r) for r in calib.tolist()} and not rows & {tuple(r) for r in fitness.tolist()}
    assert selection_heal_windows(dataclasses.replace(cfg, search=SearchConfig()), tokenizer) is None


def test_a_run_with_training_aware_selection_heals_each_last_stage_candidate(tiny_reference_dir, tmp_path) -> None:
    """Every complete trial's value is its healed fitness; metrics.json counts the healed candidates."""
    import optuna

    from search.app.run import run
    from search.study import make_storage

    cfg = run_config(trials=6, offspring=4, heal_tokens=512, heal_batch_tokens=256)
    cfg.heal = HealConfig(lr=1e-3)
    metrics = run(cfg, tmp_path)
    study = optuna.load_study(study_name="strata", storage=make_storage(None, tmp_path))
    last = [t for t in study.trials if "kl_stage2" in t.user_attrs]  # every trial scored on the last stage
    assert metrics["search"]["healed_candidates"] == len({tuple(t.user_attrs["levels"]) for t in last}) > 0
    assert metrics["search"]["heal_tokens"] == 512
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(t.value == t.user_attrs["kl_stage2"] for t in complete)
    assert "best kl after healing 512 tokens" in (tmp_path / "report.html").read_text()  # the search chart's axis
