"""Training-aware selection (``search.heal_tokens``): does healing candidates during the search give a better model
after the final heal, at equal total compute?

    python -m bench.heal_selection [--quick] [--models zoo-llama3 zoo-qwen2] [--keep 0.3] [--seeds 0 1 2]
                                   [--heal-tokens N] [--tokens T] [--trials 64]

For every model and seed, two pipelines from the same config (``search.app.run.run``: search=evo, proxy=kl, the
defaults but ``--trials``; the run's seed moves its calibration and fitness windows and its search):

- ``with``: ``search.heal_tokens=N`` (each last-stage candidate healed N tokens in steps of
  ``search.heal_batch_tokens`` before its KL), then the winner (``model/``) healed for ``T`` tokens;
- ``without``: the plain search, then its winner healed for ``T + K x N`` tokens, where ``K`` is the number of
  candidates the ``with`` search healed: the same training tokens in all (equal total compute; a training token
  costs the same in both, a forward and a backward of the same-sized student plus the teacher's side). The
  plain search's winner healed for ``T`` alone is reported too (the comparison at equal final tokens), and healed
  for as many wall seconds as the ``with`` pipeline took in all (its run and final heal, less the plain run's
  seconds, at the plain winner's measured heal tokens/s, in whole steps): the selection heals read a cached
  teacher and a training token costs less there than in a final heal with the live teacher.

Every final heal: ``search.heal.train.heal_model``, forward KL to the dense model, full fine-tuning, lr ``--lr``
(heal.lr's default), 4096 tokens a step (the selection heals: ``search.heal_lr=--selection-lr``, default
``--lr``); held-out perplexity on the built-in eval split. Wall seconds of each
pipeline (search, selection heals, final heal) are recorded beside the token counts. Writes
``bench/results/heal-selection.json`` (``heal-selection-quick.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import markdown_table, print_result, setup, write_result  # noqa: E402
from bench.heal import BATCH_TOKENS, healed  # noqa: E402
from bench.zoo import run_config  # noqa: E402

log = logging.getLogger("bench.heal_selection")
MODELS = ("zoo-llama3", "zoo-qwen2")
SELECTION_BATCH = 2048  # search.heal_batch_tokens: N = 16384 is 8 steps


def searched(model_name: str, keep: float, seed: int, trials: int, heal_cfg, heal_tokens: int,
             heal_lr: float | None = None) -> dict:  # fmt: skip
    """One run (``heal_tokens`` 0: the plain search; ``heal_cfg``: the run's ``heal`` settings, which the selection
    heals use at ``heal_lr``) and what the final heals need: its winner (standalone), the dense teacher, the
    tokenizer, the config; with the run's seconds and search record."""
    from search.app.run import load_run_inputs, run
    from supernet.io.export.load import load_pruned

    overrides = {"search": {"heal_tokens": heal_tokens, "heal_batch_tokens": SELECTION_BATCH, "heal_lr": heal_lr}}
    cfg = dataclasses.replace(run_config(model_name, keep, overrides, trials), seed=seed, heal=heal_cfg)
    with tempfile.TemporaryDirectory(prefix="strata-heal-selection-") as tmp:
        start = time.perf_counter()
        metrics = run(cfg, Path(tmp))
        seconds = time.perf_counter() - start
        winner, _ = load_pruned(Path(tmp) / "model", dtype=cfg.model.dtype, device=cfg.device)
        allocation = json.loads((Path(tmp) / "allocation.json").read_text())
    inputs, _ = load_run_inputs(cfg)
    return {"cfg": cfg, "winner": winner, "teacher": inputs.model, "tokenizer": inputs.tokenizer,
            "metrics": metrics, "seconds": seconds, "allocation": allocation}  # fmt: skip


def final_heal(live: dict, tokens: int, heal_cfg, held_out) -> dict:
    """The winner (a copy) healed for ``tokens`` training tokens: held-out ppl, seconds, tokens."""
    import copy

    from search.heal.data import heal_windows

    cfg = dataclasses.replace(heal_cfg, tokens=tokens)
    run_cfg = live["cfg"]
    windows = heal_windows(run_cfg.data, live["tokenizer"], seq_len=cfg.seq_len, tokens=cfg.steps * cfg.batch_tokens,
                           seed=run_cfg.seed)  # fmt: skip
    return healed(copy.deepcopy(live["winner"]), live["teacher"], windows, cfg, held_out, seed=run_cfg.seed)


def measure(model_name: str, keep: float, seed: int, args, heal_cfg) -> dict:
    """One model, one seed: the two pipelines (module docstring)."""
    from search.app.inputs import eval_tokens

    plain = searched(model_name, keep, seed, args.trials, heal_cfg, 0)
    aware = searched(model_name, keep, seed, args.trials, heal_cfg, args.heal_tokens, args.selection_lr)
    held_out = eval_tokens(plain["cfg"].data, plain["tokenizer"])
    info = aware["metrics"]["search"]
    selection_tokens = info["healed_candidates"] * args.heal_tokens  # whole steps: N is a multiple of the step
    row = {"model": model_name, "keep": keep, "seed": seed, "dense_ppl": plain["metrics"]["dense"]["ppl"],
           "healed_candidates": info["healed_candidates"], "selection_tokens": selection_tokens,
           "same_winner": plain["allocation"] == aware["allocation"]}  # fmt: skip
    arms = [("with", aware, args.tokens), ("without_same_t", plain, args.tokens),
            ("without", plain, args.tokens + selection_tokens), ("without_equal_seconds", plain, None)]  # fmt: skip
    for name, live, tokens in arms:
        if tokens is None:  # the plain winner healed for as many seconds as the with pipeline took in all
            spare = row["with"]["total_seconds"] - row["without_same_t"]["run_seconds"]
            rate = row["without_same_t"]["final_tokens"] / row["without_same_t"]["heal_seconds"]  # its tokens/s
            tokens = max(heal_cfg.batch_tokens, int(spare * rate) // heal_cfg.batch_tokens * heal_cfg.batch_tokens)
        after = final_heal(live, tokens, heal_cfg, held_out)
        row[name] = {"pruned_ppl": live["metrics"]["pruned"]["ppl"], "healed_ppl": after["ppl"],
                     "final_tokens": after["tokens"], "run_seconds": round(live["seconds"], 1),
                     "search_seconds": live["metrics"]["search"]["seconds"], "heal_seconds": after["seconds"],
                     "total_seconds": round(live["seconds"] + after["seconds"], 1),
                     "training_tokens": after["tokens"] + (selection_tokens if name == "with" else 0)}  # fmt: skip
        log.warning("%s keep %.1f seed %d %s: %.2f -> %.2f healed (%d tokens)", model_name, keep, seed, name,
                    row[name]["pruned_ppl"], after["ppl"], after["tokens"])  # fmt: skip
    row["with_vs_without"] = row["with"]["healed_ppl"] / row["without"]["healed_ppl"]
    row["with_vs_without_equal_seconds"] = row["with"]["healed_ppl"] / row["without_equal_seconds"]["healed_ppl"]
    return row


def summary(rows: list[dict]) -> dict:
    """Per model: the mean healed ppl of each pipeline over seeds and the mean ratio with / without."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        arms = [name for name in ("with", "without", "without_same_t", "without_equal_seconds") if name in mine[0]]
        out[model] = {name: statistics.mean(r[name]["healed_ppl"] for r in mine) for name in arms}
        for key in ("with_vs_without", "with_vs_without_equal_seconds"):
            ratios = [r[key] for r in mine if key in r]
            if ratios:
                out[model][f"{key}_mean"] = statistics.mean(ratios)
                out[model][f"{key}_better_in"] = f"{sum(x < 1 for x in ratios)}/{len(ratios)} seeds"
    return out


def table(rows: list[dict]) -> str:
    header = ["model", "seed", "healed cands", "with: pruned", "with: healed (T)", "without: pruned",
              "without: healed (T)", "without: healed (T + K N)", "with / without (equal tokens)",
              "without: healed (equal seconds)", "with / without (equal s)", "seconds with / without"]  # fmt: skip
    return markdown_table(header, [
        [r["model"], r["seed"], r["healed_candidates"], r["with"]["pruned_ppl"], r["with"]["healed_ppl"],
         r["without"]["pruned_ppl"], r["without_same_t"]["healed_ppl"], r["without"]["healed_ppl"],
         f"{r['with_vs_without']:.3f}", r["without_equal_seconds"]["healed_ppl"],
         f"{r['with_vs_without_equal_seconds']:.3f}",
         f"{r['with']['total_seconds']} / {r['without_equal_seconds']['total_seconds']}"]
        for r in rows
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from search.heal.config import HealConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="zoo-llama3, one seed, 24 trials, N 4096, T 16384")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--keep", type=float, default=0.3)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--heal-tokens", type=int, default=16384, help="N: search.heal_tokens per candidate")
    parser.add_argument("--tokens", type=int, default=65536, help="T: the final heal's tokens")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--lr", type=float, default=HealConfig.lr)
    parser.add_argument(
        "--selection-lr",
        type=float,
        default=None,
        help="search.heal_lr, the selection heals' peak rate (default: --lr); the final heals use --lr",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="heal-selection", help="results file: bench/results/<name>.json")
    args = parser.parse_args(argv)
    setup(args.threads)
    if args.quick:
        args.models, args.seeds, args.trials, args.heal_tokens, args.tokens = ["zoo-llama3"], [0], 24, 4096, 16384
    heal_cfg = HealConfig(lr=args.lr, batch_tokens=BATCH_TOKENS, eval_every=0)
    rows = []
    for model_name in args.models:
        for seed in args.seeds:
            rows.append(measure(model_name, args.keep, seed, args, heal_cfg))
            result = {"rows": rows, "summary": summary(rows), "heal": dataclasses.asdict(heal_cfg),
                      "selection_batch_tokens": SELECTION_BATCH, "config": vars(args)}  # fmt: skip
            path = write_result(args.name, args.quick, result)  # after every row: a long run keeps its rows
    return print_result(table(rows), path, result["summary"])


if __name__ == "__main__":
    raise SystemExit(main())
