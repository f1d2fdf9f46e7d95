"""Find or build the built-in reference model, and the command that (re)builds it.

``reference_model_dir(variant)`` returns an ordinary Hugging Face directory. It looks first in the
committed ``supernet/io/reference/artifacts/<variant>/``, then in the user cache
``<cache root>/reference/<variant>-<key>/`` (cache root: ``$STRATA_CACHE_DIR``, else
``platformdirs.user_cache_dir("strata")``), and trains the model there if neither matches.
``key`` hashes the recipe and the corpus, so a changed recipe or another Python's standard library
never reuses a stale model. The weights are stored in bfloat16; load them in float32
(``config.json`` says float32, and :func:`load_reference` passes it explicitly).

    python -m supernet.io.reference.build [--variant default] [--out DIR]

rebuilds a variant; ``--out supernet/io/reference/artifacts/default`` makes the directory to commit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from supernet.errors import UsageError
from supernet.io.reference.recipe import INFO_FILE, RECIPES, ZOO, Recipe, reference_key, train_reference

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

ARTIFACTS_DIR = Path(__file__).parent / "artifacts"
CACHE_ENV = "STRATA_CACHE_DIR"
EXPECTED_MINUTES = {"default": 8, "tiny": 0.2, **dict.fromkeys(ZOO, 12)}  # on 2 CPU cores, for the log line


def _recipe(variant: str) -> Recipe:
    if variant not in RECIPES:
        raise UsageError(f"unknown reference variant {variant!r}: use one of {', '.join(RECIPES)}")
    return RECIPES[variant]


def cache_root() -> Path:
    """``$STRATA_CACHE_DIR`` if set, else the platform's user cache directory for strata."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("strata"))


def _matches(directory: Path, key: str) -> bool:
    """True if ``directory`` holds a complete reference build whose ``reference.json`` has ``key``."""
    info_path = directory / INFO_FILE
    if not info_path.is_file():
        return False
    return json.loads(info_path.read_text()).get("key") == key


def reference_model_dir(variant: str = "default", *, progress: bool = True) -> Path:
    """The directory of the reference model ``variant``, trained into the cache on first use
    (``progress``: the training's progress bar)."""
    recipe = _recipe(variant)
    key = reference_key(recipe)
    committed = ARTIFACTS_DIR / variant
    if _matches(committed, key):
        return committed
    cached = cache_root() / "reference" / f"{variant}-{key}"
    if _matches(cached, key):
        return cached
    logger.warning(
        "no reference model '%s' (key %s) found: training it into %s, about %s minutes on 2 CPU cores",
        variant, key, cached, EXPECTED_MINUTES.get(variant, "a few"),
    )  # fmt: skip
    train_reference(recipe, cached, progress=progress)
    return cached


def load_reference(variant: str = "default") -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """The reference model (float32, eval mode) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = reference_model_dir(variant)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(directory)


def main(argv: list[str] | None = None) -> int:
    """Rebuild a reference variant into ``--out`` (default: the cache)."""
    parser = argparse.ArgumentParser(prog="python -m supernet.io.reference.build", description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="default", help=f"one of {', '.join(RECIPES)}")
    parser.add_argument("--out", type=Path, help="target directory (default: the user cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        recipe = _recipe(args.variant)
        out = args.out or cache_root() / "reference" / f"{args.variant}-{reference_key(recipe)}"
        info = train_reference(recipe, out)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)  # the CLI's one-line error contract
        return 2
    logger.info("wrote %s (held-out ppl %.2f)", out, info["eval_ppl"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
