"""Full-fidelity training of an exported structure with the Hugging Face Trainer.

:func:`autopeft.training.run.train_config` runs it; :mod:`autopeft.training.sources` finds the
config, model and task that ``autopeft train`` was pointed at.
"""

from autopeft.training.options import TrainingOptions

__all__ = ["TrainingOptions"]
