"""Exporting a trial's structure into the configuration format of a training stack.

Every format is validated on the real base model before a file is written, and files land in
the output folder only when the whole export succeeded.
"""

from importlib import import_module

FORMAT_HELP = (
    "peft (LoRA or IA3 adapter_config.json), autopeft (every module type), "
    "axolotl / llamafactory (LoRA YAML, causal LMs), trl (training script)"
)
"""The formats for ``--help``; :data:`autopeft.export.trial.FORMATS` holds their writers."""

_LAZY = ("FORMATS", "export_source", "export_trial")

__all__ = ["FORMAT_HELP", *_LAZY]


def __getattr__(name: str):
    # The writers load torch, transformers and peft; the CLI's --help only needs FORMAT_HELP.
    if name not in _LAZY:
        raise AttributeError(f"module 'autopeft.export' has no attribute {name!r}")
    return getattr(import_module("autopeft.export.trial"), name)
