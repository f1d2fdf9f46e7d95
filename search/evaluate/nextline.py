"""strata_nextline: a multiple-choice task the tiny reference and zoo models can do, from held-out Python.

Each document is the start of a function from the built-in corpus's held-out split (the Python standard
library files :mod:`supernet.io.reference.corpus` puts in "eval", never trained on) and four candidate next
lines: its true next line and three lines drawn from functions of *other* files, re-indented to the true
line's indentation (so indentation alone does not give the answer away). Chance is 0.25.

A model that has learned Python ranks the true continuation first far more often than chance; the scores
are lm-evaluation-harness's ``acc`` (the choice of highest log-likelihood) and ``acc_norm`` (per byte).
The documents are a pure function of the texts and ``seed``: the same corpus gives the same task.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass

CHOICES = 4  # one true next line and CHOICES - 1 distractors
MIN_CHARS = 12  # candidate lines shorter than this ("pass", "else:", "return x") are too alike across files
MAX_CONTEXT_LINES = 8  # the function's first lines shown, at most
MAX_DOCS = 400  # documents written (stderr of acc <= 0.025)


@dataclass(frozen=True)
class Function:
    """One function of one file: its source lines (the ``def`` line first) and the file's index."""

    file: int
    lines: tuple[str, ...]


def functions(texts: list[str]) -> list[Function]:
    """Every function and method of ``texts`` with a body of at least two lines, in file and line order
    (files Python cannot parse are skipped)."""
    out = []
    for index, text in enumerate(texts):
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        lines = text.splitlines()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 2:
                start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                out.append(Function(index, tuple(lines[start - 1 : node.end_lineno])))
    out.sort(key=lambda f: (f.file, f.lines))
    return out


def candidate(line: str) -> bool:
    """A line that can be a choice: long enough to be specific, not a comment."""
    stripped = line.strip()
    return len(stripped) >= MIN_CHARS and not stripped.startswith("#")


def indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def document(function: Function, cut: int, pool: list[tuple[int, str]], rng: random.Random) -> dict | None:
    """The document asking for ``function.lines[cut]`` after ``lines[:cut]``; None when the pool of other
    files' lines cannot give CHOICES - 1 distinct distractors."""
    answer = function.lines[cut]
    truth = answer.strip()
    distractors: list[str] = []
    for _ in range(50):
        file, line = pool[rng.randrange(len(pool))]
        text = line.strip()
        if file != function.file and text != truth and text not in distractors:
            distractors.append(text)
        if len(distractors) == CHOICES - 1:
            break
    else:
        return None
    label = rng.randrange(CHOICES)
    options = [indent(answer) + d for d in distractors]
    options.insert(label, answer)
    return {"context": "\n".join(function.lines[:cut]) + "\n", "choices": options, "label": label}


def nextline_docs(texts: list[str], *, seed: int = 0, max_docs: int = MAX_DOCS) -> list[dict]:
    """Up to ``max_docs`` documents ``{"context", "choices", "label"}``: per function (in a seeded order), a
    cut after one of its first MAX_CONTEXT_LINES lines whose next line is a candidate."""
    found = functions(texts)
    pool = [(f.file, line) for f in found for line in f.lines[1:] if candidate(line)]
    rng = random.Random(seed)
    order = list(range(len(found)))
    rng.shuffle(order)
    docs = []
    for index in order:
        function = found[index]
        cuts = [c for c in range(1, min(len(function.lines), MAX_CONTEXT_LINES + 1)) if candidate(function.lines[c])]
        if not cuts:
            continue
        doc = document(function, rng.choice(cuts), pool, rng)
        if doc is not None:
            docs.append(doc)
        if len(docs) == max_docs:
            break
    return docs
