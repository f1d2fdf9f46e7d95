"""The table a run ends with on stdout: dense, the baselines and the result, side by side.

    model        params     ppl   x dense
    dense        6,511,104  37.78  1.000
    uniform      ...
    flap_global  ...
    searched     ...

Rows come from ``metrics.json``'s ``dense``, ``baselines`` (searched runs: ``uniform`` on the run's
supernet, ``flap_global`` = FLAP's own method) and ``pruned`` (named ``searched``, or by its allocator), and after
healing (``heal``) the same model healed (``searched + healed``).
"""

from __future__ import annotations

from pathlib import Path


def outcome_rows(metrics: dict) -> list[tuple[str, int, float]]:
    """(name, parameters, held-out ppl) of the dense model, each baseline and the pruned model."""
    rows = [("dense", metrics["dense"]["params"], metrics["dense"]["ppl"])]
    for name, entry in metrics.get("baselines", {}).items():
        rows.append((name, entry["params"], entry["ppl"]))
    name = "searched" if metrics.get("allocation") == "search" else str(metrics.get("allocation", "pruned"))
    rows.append((name, metrics["pruned"]["params"], metrics["pruned"]["ppl"]))
    if metrics.get("heal"):  # strata-heal, or heal.tokens > 0: the same model after healing
        rows.append((f"{name} + healed", metrics["pruned"]["params"], metrics["heal"]["ppl_after"]))
    return rows


def outcome_table(metrics: dict, run_dir: Path) -> str:
    """The rows as aligned text, the keep fraction in the title and the run directory below."""
    rows = outcome_rows(metrics)
    dense_ppl = rows[0][2]
    width = max(len(name) for name, _, _ in rows)
    budget = metrics["budget"]
    lines = [
        f"{metrics['model']}, keep {budget['keep']:g} of {budget['kind']}; held-out perplexity "
        f"({metrics['eval']['windows']} windows of {metrics['eval']['seq_len']} tokens)",  # fmt: skip
        f"{'':<{width}}  {'params':>12}  {'ppl':>9}  {'x dense':>7}",
    ]
    for name, params, ppl in rows:
        lines.append(f"{name:<{width}}  {params:>12,}  {ppl:>9.2f}  {ppl / dense_ppl:>7.3f}")
    lines.append(f"run directory: {run_dir}")
    return "\n".join(lines)
