"""Training windows for healing: the run's train split, cut into ``heal.seq_len`` windows, shuffled by the seed,
never a token of the held-out evaluation windows.

The text is the one ``search.app.inputs.train_windows`` calibrates on (the builtin train split, or ``data.path``).
The held-out windows (``search.app.inputs.eval_tokens``) come from other text (the builtin eval split,
``data.eval_path``) except where a user source has no other held-out text: then they are windows of the same
stream, and every training window that overlaps one of them is dropped (the eval windows are rebuilt exactly as
``supernet.io.windows.pack_tokens`` draws them: windows of ``data.eval_seq_len``, a permutation seeded 0).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from supernet.errors import UsageError
from supernet.io.data import load_texts
from supernet.io.windows import token_stream

if TYPE_CHECKING:
    from supernet.io.data import DataConfig

log = logging.getLogger(__name__)

EVAL_SEED = 0  # the seed search.app.inputs.eval_tokens packs the held-out windows with


def shares_eval_text(data: DataConfig, texts: list[str]) -> bool:
    """Whether the held-out windows are cut from ``texts``, the training text itself (a user source without other
    held-out text: eval_tokens then reads ``data.path``)."""
    if data.source == "builtin" and data.eval_path is None:
        return False  # the builtin eval split: other files of the corpus
    source = "text" if data.source == "builtin" else data.source
    eval_texts = load_texts(source, path=data.eval_path or data.path, text_field=data.text_field, split="eval")
    return eval_texts == texts


def eval_mask(length: int, data: DataConfig) -> torch.Tensor:
    """[length] bool: the stream positions inside a held-out window (pack_tokens' draw of eval_tokens)."""
    mask = torch.zeros(length, dtype=torch.bool)
    windows = length // data.eval_seq_len
    order = torch.randperm(windows, generator=torch.Generator().manual_seed(EVAL_SEED))[: data.eval_sequences]
    for w in order.tolist():
        mask[w * data.eval_seq_len : (w + 1) * data.eval_seq_len] = True
    return mask


def heal_windows(
    data: DataConfig, tokenizer, *, seq_len: int, tokens: int, seed: int, min_windows: int = 1
) -> torch.Tensor:
    """[ceil(tokens / seq_len), seq_len] train-split windows in a seeded order, disjoint from the held-out windows.

    When the text holds fewer windows, they repeat (each pass in a new seeded order), with a warning; text with
    fewer than ``min_windows`` distinct windows (one optimizer step's) is refused."""
    texts = load_texts(data.source, path=data.path, text_field=data.text_field, split="train")
    stream = token_stream(tokenizer, texts).long()  # [stream tokens]
    count = len(stream) // seq_len
    windows = stream[: count * seq_len].view(count, seq_len)  # [count, seq_len]
    if count and shares_eval_text(data, texts):
        held = eval_mask(len(stream), data)[: count * seq_len].view(count, seq_len)
        windows = windows[~held.any(dim=1)]
    if len(windows) < min_windows:
        raise UsageError(
            f"the training text gives {len(windows)} windows of heal.seq_len={seq_len} apart from the held-out "
            f"windows, fewer than one step's {min_windows}: add text, or lower heal.batch_tokens or heal.seq_len"
        )
    needed = -(-tokens // seq_len)
    passes = -(-needed // len(windows))
    if passes > 1:
        log.warning("heal: %d tokens need %d windows of %d, the text gives %d: each is seen up to %d times",
                    tokens, needed, seq_len, len(windows), passes)  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(windows), generator=generator) for _ in range(passes)])
    return windows[order[:needed]]
