"""A byte-level BPE tokenizer trained on the corpus with the ``tokenizers`` library (GPT-2 style).

Byte-level means every string round-trips and nothing is ever unknown; ``<|endoftext|>`` is the one
special token and plays bos, eos, pad and unk. The tokenizer is wrapped in a plain
``PreTrainedTokenizerFast``; saved with :func:`save_tokenizer`, its ``tokenizer_config.json`` names that
class, so ``AutoTokenizer.from_pretrained`` reloads the very same tokenizer even when the directory's
``config.json`` says ``model_type: llama`` (transformers 5 would otherwise rebuild a Llama tokenizer
from the vocabulary, with another pre-tokenizer, and produce other ids).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

END_OF_TEXT = "<|endoftext|>"
TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def _bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE ``tokenizers.Tokenizer`` of ``vocab_size`` entries on ``texts``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it for transformers.

    Args:
        texts: the training texts.
        vocab_size: number of entries, the 256 bytes and ``<|endoftext|>`` included.
    """
    from transformers import PreTrainedTokenizerFast

    assert vocab_size > 257, f"vocab_size {vocab_size} leaves no room for merges past the 256 bytes + 1 special"
    tokenizer = _bpe_tokenizer(texts, vocab_size)
    logger.info("trained a byte-level BPE tokenizer of %d entries", tokenizer.get_vocab_size())
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=1_000_000,  # the model's context is in its config; this only silences warnings
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> None:
    """``save_pretrained``; a plain ``PreTrainedTokenizerFast`` gets its ``tokenizer_class`` pinned, so
    AutoTokenizer reloads exactly this tokenizer and not the model type's own class."""
    from transformers import PreTrainedTokenizerFast

    tokenizer.save_pretrained(out_dir)
    if type(tokenizer) is not PreTrainedTokenizerFast:  # a model type's own class names itself
        return
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = TOKENIZER_CLASS
    config_path.write_text(json.dumps(config, indent=2) + "\n")
