"""strata_heldout_ppl: held-out text for lm-evaluation-harness's rolling log-likelihood.

``output_type: loglikelihood_rolling`` scores each document whole, in windows of the model's context
(lm-eval's ``get_rolling_token_windows``), and reports word perplexity, byte perplexity and bits per byte:

    bits_per_byte = -sum_docs log p(doc) / (ln 2 * sum_docs bytes(doc))

(lm-eval's ``bits_per_byte``; not token perplexity, so models with other tokenizers compare). The documents are
the built-in corpus's held-out files (the Python standard library files :mod:`supernet.io.reference.corpus`
holds out), each cut at a line boundary to at most ``max_chars`` characters.
"""

from __future__ import annotations

MAX_CHARS = 4000  # characters per document (~1-2k tokens of Python for the reference tokenizer)
MAX_DOCS = 64  # documents written


def heldout_docs(texts: list[str], *, max_chars: int = MAX_CHARS, max_docs: int = MAX_DOCS) -> list[dict]:
    """``{"text": ...}`` per text (in order, up to ``max_docs``): its first whole lines within ``max_chars``."""
    docs = []
    for text in texts:
        cut = text if len(text) <= max_chars else text[: text.rfind("\n", 0, max_chars) + 1]
        if cut.strip():
            docs.append({"text": cut})
        if len(docs) == max_docs:
            break
    return docs
