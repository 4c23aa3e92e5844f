"""autopeft: search for the parameter-efficient fine-tuning structure of a model and a task."""

__version__ = "0.1.0"
