"""One-time conversion of a GGUF checkpoint into a safetensors folder.

transformers dequantises a GGUF file on every load (~20 s for SmolLM2-135M); the converted folder
loads in well under a second, so every worker and every later run reuses it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def cache_root() -> Path:
    """Where converted models live: ``$AUTOPEFT_CACHE`` or ``~/.cache/autopeft``."""
    return Path(os.environ.get("AUTOPEFT_CACHE", Path.home() / ".cache" / "autopeft"))


def converted_gguf_folder(gguf_file: Path) -> Path:
    """Return a safetensors folder with the dequantised weights of ``gguf_file``, converting once.

    The folder name carries a digest of the file's size and modification time, so a reinstalled
    package converts again. Conversion writes to a temporary folder and renames it into place, so
    concurrent workers never read a half-written model.
    """
    stat = gguf_file.stat()
    digest = hashlib.sha256(f"{gguf_file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    target = cache_root() / "models" / f"{gguf_file.stem}-{digest[:12]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        _convert(gguf_file, staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert(gguf_file: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # The weights are already dequantised to float32; the GGUF quantizer marker would only make
    # save_pretrained refuse to write them.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
