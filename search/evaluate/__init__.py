"""Evaluation as the field reports it: lm-evaluation-harness tasks on strata's models, offline.

``harness``: the wrapper over lm-eval's Python API (``simple_evaluate`` with its HF model class over a model and
the tokenizer it really has); ``shipped``: the tasks strata ships (``nextline``, ``heldout``: their documents from
the built-in corpus's held-out split); ``results``: eval.json and the table; ``config``: ``eval.*`` of a run.
"""
