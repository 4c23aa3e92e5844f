"""autopeft: search for the parameter-efficient fine-tuning structure of a model and a task."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # The public API pulls in torch and peft; importing autopeft for its version must stay cheap.
    if name in ("apply", "save_adapter", "load_adapter"):
        from autopeft import api

        return getattr(api, name)
    raise AttributeError(f"module 'autopeft' has no attribute {name!r}")
