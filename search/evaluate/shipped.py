"""The tasks strata ships: their YAMLs (package data, ``search/evaluate/tasks/``) and their local data files.

At first use the data of every shipped task is generated from the built-in corpus's held-out split
(:func:`supernet.io.data.load_texts` ``("builtin", split="eval")``) into strata's cache, next to a copy of
each YAML whose ``dataset_kwargs.data_files.test`` names that file (lm-evaluation-harness reads it with
``dataset_path: json``, nothing downloaded). The folder is keyed by the corpus, the YAMLs and the generators'
source, and written atomically (a folder is complete or absent); later uses read it as it is.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from search.evaluate import heldout, nextline

log = logging.getLogger(__name__)

SHIPPED: dict[str, Callable[[list[str]], list[dict]]] = {  # task name -> its documents from the held-out texts
    "strata_nextline": nextline.nextline_docs,
    "strata_heldout_ppl": heldout.heldout_docs,
}


def template(name: str) -> str:
    """The shipped YAML of task ``name`` as packaged (its data file not filled in)."""
    return (resources.files("search.evaluate") / "tasks" / f"{name}.yaml").read_text(encoding="utf-8")


def shipped_key() -> str:
    """sha1 (12 hex) of the corpus, the YAMLs and the generators' source: what the data files depend on."""
    from supernet.io.reference.corpus import corpus_hash

    digest = hashlib.sha1(corpus_hash().encode())
    for name in SHIPPED:
        digest.update(template(name).encode())
    for module in (nextline, heldout):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:12]


def tasks_root() -> Path:
    """``<strata cache>/eval-tasks`` (beside the supernet cache, ``supernet.io.files.default_root``)."""
    from supernet.io.files import default_root

    return default_root().parent / "eval-tasks"


def write_task(folder: Path, final: Path, name: str, texts: list[str]) -> None:
    """``name.jsonl`` (one document a line) and ``name.yaml`` naming ``final/name.jsonl`` into ``folder``."""
    import yaml

    docs = SHIPPED[name](texts)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    config = yaml.safe_load(template(name))
    config["dataset_kwargs"]["data_files"]["test"] = str(final / f"{name}.jsonl")
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def shipped_tasks_dir() -> Path:
    """The folder of the shipped tasks' YAMLs and data (an lm-eval ``include_path``), generated at first use."""
    from supernet.io.data import load_texts
    from supernet.io.files import atomic_path

    out = tasks_root() / shipped_key()
    if out.is_dir():
        return out
    log.info("writing the shipped evaluation tasks (%s) into %s", ", ".join(SHIPPED), out)
    texts = load_texts("builtin", split="eval")
    try:
        with atomic_path(out, directory=True) as tmp:
            for name in SHIPPED:
                write_task(tmp, out, name, texts)
    except OSError:
        if not out.is_dir():  # another process wrote the same folder first: use it
            raise
    return out
