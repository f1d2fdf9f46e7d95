"""Healing: train a pruned model, at its shapes, toward the dense model's next-token distributions (knowledge
distillation), so it recovers what pruning cost. ``config.py`` (HealConfig), ``data.py`` (train-split windows),
``loss.py`` (the distillation loss), ``teacher.py`` (the teacher's side, live or cached), ``checkpoint.py``
(resumable state), ``faults.py`` (the resume tests' kill points), ``distributed.py`` (FSDP2 over torchrun),
``train.py`` (``heal_model``, the loop). The command and the run directory's side are ``search/app/heal.py``."""
