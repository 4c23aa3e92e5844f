"""Where the service token comes from: ``AUTOPEFT_TOKEN``, or the file named by ``AUTOPEFT_TOKEN_FILE``."""

from __future__ import annotations

import os
from pathlib import Path

from autopeft.errors import AutopeftError


def service_token() -> str:
    token = os.environ.get("AUTOPEFT_TOKEN", "")
    path = os.environ.get("AUTOPEFT_TOKEN_FILE")
    if not token and path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AutopeftError(f"cannot read the token file {path}: {exc.strerror}") from exc
    if not token:
        raise AutopeftError("no service token: set AUTOPEFT_TOKEN or AUTOPEFT_TOKEN_FILE")
    return token
