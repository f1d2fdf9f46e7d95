"""strata_nextline's documents: four distinct choices, the true next line among them, distractors from other files
at the true line's indentation, and the same documents for the same texts."""

from __future__ import annotations

from search.evaluate.nextline import CHOICES, functions, nextline_docs

FILES = [
    "def alpha(values):\n    total = sum(values) * 2\n    result_alpha = total + len(values)\n"
    "    return result_alpha\n",
    "class Beta:\n    def method(self, items):\n        counted_items = len(items) + 1\n"
    "        scaled_items = counted_items * 3\n        return scaled_items\n",
    "def gamma(text):\n    stripped_text = text.strip()\n    lowered_text = stripped_text.lower()\n"
    "    return lowered_text.split()\n",
    "def broken(:\n    pass\n",  # not Python: skipped
]


def test_every_document_asks_for_the_true_next_line_among_distinct_choices() -> None:
    docs = nextline_docs(FILES, seed=0)
    assert len(docs) == 3  # one per function with a body of two lines or more
    sources = {line for text in FILES for line in text.splitlines()}
    for doc in docs:
        choices, truth = doc["choices"], doc["choices"][doc["label"]]
        assert len(choices) == CHOICES and len({c.strip() for c in choices}) == CHOICES
        own = next(f for f in functions(FILES) if doc["context"] in "\n".join(f.lines) + "\n")
        cut = len(doc["context"].splitlines())
        assert doc["context"].endswith("\n") and truth == own.lines[cut]
        indent = truth[: len(truth) - len(truth.lstrip())]
        for other in (c for i, c in enumerate(choices) if i != doc["label"]):
            assert other.startswith(indent) and not other[len(indent)].isspace()  # re-indented like the truth
            assert not any(other.strip() == line.strip() for line in own.lines)  # from another file
            assert any(other.strip() == line.strip() for line in sources)


def test_the_same_texts_give_the_same_documents_and_another_seed_others() -> None:
    assert nextline_docs(FILES, seed=0) == nextline_docs(FILES, seed=0)
    assert nextline_docs(FILES, seed=0) != nextline_docs(FILES, seed=1)
