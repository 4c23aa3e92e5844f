"""The ``autopeft`` command line.

Every user-facing failure (:class:`~autopeft.errors.AutopeftError`, or a usage error) prints one
``error: ...`` line on stderr and exits with status 2.
"""

from __future__ import annotations

import sys

import typer

from autopeft.cli.app import app
from autopeft.errors import AutopeftError


def main(argv: list[str] | None = None) -> None:
    try:
        code = app(args=argv, standalone_mode=False)
    except AutopeftError as exc:
        _fail(str(exc), exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except typer.TyperException as exc:  # usage errors: missing or malformed options
        _fail(exc.format_message() if hasattr(exc, "format_message") else str(exc), 2)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


__all__ = ["app", "main"]
