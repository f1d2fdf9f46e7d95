"""What a budget counts, turned into the level grid the search works on.

``budget.kind``:

- ``block_params`` (default): parameters of the attention and MLP units; ``keep`` is the fraction of
  them kept. Norms and the parameters no unit owns stay.
- ``total_params``: every parameter of the model. Embeddings, head, norms and unit-less parameters
  (``N_fixed = N_total - N_units``) always stay, so keeping ``keep * N_total`` parameters keeps the
  fraction ``(keep * N_total - N_fixed) / N_units`` of the unit parameters.
- ``active_params``: the block parameters one token uses. In a dense model all of them (the same as
  ``block_params``); in a mixture of experts with channel units (``supernet.expert_unit=channel``) a
  channel unit counts in its top-k experts only, 3 H k, and the router (E H) while the MLP is present; with
  ``expert_unit=both`` e experts of width w count 3 H w min(k, e) + e H (``supernet.space.grid``, coupled
  modules).
- ``flops``: forward FLOPs of the transformer blocks on one sequence of ``T = budget.seq_len`` tokens,
  counting a multiply-add as 2 FLOPs. A unit's cost (supernet/space/flops.py: Kaplan et al. 2020's 2N per token,
  plus causal attention's T(T+1)/2 query-key pairs, each 2d for QK^T and 2d for AV per query head):

      GQA group:   2 T P_group + 2 d g T (T + 1)     (g query heads of dimension d)
      query head:  2 T P_head + 2 d T (T + 1)        (attn_unit=head; its K/V base costs 2 T P_kv)
      MLP channel: 2 T P_channel

  ``keep`` is the fraction of the units' FLOPs kept; the budget rule (supernet/space/grid.py) holds as for
  parameters: never above, below by less than one MLP step's FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from supernet.errors import UsageError, check_choice
from supernet.kinds import KINDS
from supernet.space.flops import attention_flops, causal_pairs, linear_flops
from supernet.space.grids import supernet_grid
from supernet.space.params import count_params

if TYPE_CHECKING:
    from torch import nn

    from supernet.io.adapters.base import DecoderAdapter
    from supernet.space.grid import LevelGrid
    from supernet.space.grids import GridConfig


def unit_flops(adapter: DecoderAdapter, kind: str, seq_len: int) -> int:
    """Forward FLOPs of one unit on one causal sequence of ``seq_len`` tokens (formula above)."""
    linear = linear_flops(adapter.unit_params(kind), seq_len)
    if kind == "mlp":
        return linear
    geo = adapter.geometry
    heads = geo.group_size if adapter.attn_unit == "group" else 1  # query heads of one unit
    return linear + attention_flops(geo.head_dim, heads, causal_pairs(seq_len))


def base_flops(adapter: DecoderAdapter, kind: str, seq_len: int) -> int:
    """Forward FLOPs of a module's base (K/V projections with head units) on one sequence."""
    return linear_flops(adapter.base_params(kind), seq_len)


def unit_keep(model: nn.Module, adapter: DecoderAdapter, budget: BudgetConfig) -> float:
    """The fraction of the units' cost that ``budget`` keeps."""
    if budget.kind != "total_params":
        return budget.keep
    geo = adapter.geometry
    units = geo.num_layers * adapter.block_unit_params()
    total = count_params(model)
    fixed = total - units
    keep = (budget.keep * total - fixed) / units
    if keep <= 0:
        raise UsageError(
            f"budget.keep={budget.keep} of all {total} parameters is below the {fixed} that no unit owns "
            f"(embeddings, head, norms): use budget.keep > {fixed / total:.3f} or budget.kind=block_params"
        )
    return min(keep, 1.0)


def budget_grid(model: nn.Module, adapter: DecoderAdapter, budget: BudgetConfig, cfg: GridConfig) -> LevelGrid:
    """The level grid of ``cfg`` around the uniform allocation that meets ``budget``."""
    keep = unit_keep(model, adapter, budget)
    if budget.kind == "flops" and adapter.moe:
        raise UsageError("budget.kind=flops would count every expert as computed for every token; budget a mixture "
                         "by budget.kind=active_params (with supernet.expert_unit=channel or both)")  # fmt: skip
    if budget.kind == "active_params" and adapter.moe:
        if not adapter.channel_units:
            raise UsageError("budget.kind=active_params counts the top-k experts a token uses, which removing "
                             "whole experts does not change: use supernet.expert_unit=channel or both")  # fmt: skip
        actives = {k: adapter.active_params(k) for k in adapter.grid_kinds}
        return supernet_grid(adapter, keep, cfg, unit_cost={k: a[0] for k, a in actives.items()},
                             base_cost={k: a[1] for k, a in actives.items()}, active=True)  # fmt: skip
    if budget.kind != "flops":  # block_params, total_params, and active_params of a dense model (all are active)
        return supernet_grid(adapter, keep, cfg)
    costs = {k: unit_flops(adapter, k, budget.seq_len) for k in KINDS}
    bases = {k: base_flops(adapter, k, budget.seq_len) for k in KINDS}
    return supernet_grid(adapter, keep, cfg, unit_cost=costs, base_cost=bases)


BUDGET_KINDS = ("block_params", "total_params", "flops", "active_params")


@dataclass
class BudgetConfig:
    kind: str = "block_params"  # what is counted: block_params | total_params | flops | active_params (the
    # parameters one token uses: a mixture's top-k experts; supernet/space/budget.py)
    keep: float = 0.5  # fraction of that count to keep, in (0, 1]
    seq_len: int = 2048  # flops: tokens of the sequence the FLOPs are counted on (attention grows with it)

    def __post_init__(self) -> None:
        check_choice("budget.kind", self.kind, BUDGET_KINDS)
        if not 0.0 < self.keep <= 1.0:
            raise UsageError(f"budget.keep={self.keep} is outside (0, 1]: give the fraction of parameters to keep")
        if self.seq_len < 1:
            raise UsageError(f"budget.seq_len={self.seq_len} must be a positive number of tokens")
