"""The ``autopeft`` command line.

Every user-facing failure (:class:`~autopeft.errors.AutopeftError`, or a usage error) prints one
``error: ...`` line on stderr and exits with status 2.
"""

from __future__ import annotations

import sys

import click

from autopeft.cli.app import app
from autopeft.errors import AutopeftError


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except AutopeftError as exc:
        _fail(str(exc), exc.exit_code)
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    except click.ClickException as exc:
        _fail(exc.format_message(), 2)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _fail(message: str, code: int) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


__all__ = ["app", "main"]
