"""Which models, tasks and spaces a service request may name, and what a refusal may say.

``autopeft search`` trusts its user with the machine's files and the Hugging Face hub; the service
does not trust its callers that far. A request names a shipped model, task or space, or an
existing path inside a root folder the operator allowed (``autopeft serve --allow-root``, none
by default); a relative path is looked up under each root in turn. Hub ids are refused: a
download would let a caller fill the server's disk. Paths are resolved, links included, before
they are checked, so a link inside a root cannot lead out of it.

Refusals never say whether a path outside the roots exists, and errors from loading an allowed
source are replaced by a line naming the field: the loaders' own messages quote file names,
directory listings and file content, which belong to the server (the log keeps them).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autopeft.errors import AutopeftError, BudgetError, ModelError, SpaceError, TaskError
from autopeft.scheduler import JobSpec
from autopeft.service.limits import RequestError
from autopeft.space import shipped_spaces

log = logging.getLogger("autopeft.service")

SHIPPED_MODELS = ("minilm", "smollm2")
SHIPPED_TASKS = ("demo",)

_LOAD_FAILURES = (
    (ModelError, "model", "model: cannot be loaded as a model"),
    (TaskError, "task", "task: cannot be read as a task with these text_columns, label_column and metric"),
    (SpaceError, "space", "space: not a valid search space for this model"),
    (BudgetError, "space", "space: no configuration of this space fits under max_trainable_fraction"),
)


@dataclass(frozen=True)
class Sources:
    """The folders whose files requests may name (resolved); empty allows the shipped names only."""

    roots: tuple[Path, ...] = ()

    @classmethod
    def under(cls, roots: Iterable[Path]) -> Sources:
        return cls(tuple(Path(root).expanduser().resolve() for root in roots))

    def resolved(self, spec: JobSpec) -> JobSpec:
        """``spec`` with its model, task and space checked and turned into shipped names or absolute paths."""
        return dataclasses.replace(
            spec,
            model=self._resolve("model", spec.model, SHIPPED_MODELS),
            task=self._resolve("task", spec.task, SHIPPED_TASKS),
            space=self._resolve("space", spec.space, tuple(shipped_spaces())),
        )

    def _resolve(self, field: str, value: str, shipped: tuple[str, ...]) -> str:
        if value.lower() in shipped:
            return value.lower()
        given = Path(value)
        candidates = [given] if given.is_absolute() else [root / given for root in self.roots]
        for candidate in candidates:
            try:
                path = candidate.resolve(strict=True)
            except (OSError, RuntimeError, ValueError):  # missing, a link loop, a NUL byte
                continue
            if any(path.is_relative_to(root) for root in self.roots):
                return str(path)
        paths = " or an existing path inside a folder this service allows" if self.roots else " (this service allows no paths)"
        raise RequestError(field, f"{field}: must be one of ({', '.join(shipped)}){paths}")


def load_failure(exc: AutopeftError) -> RequestError:
    """What the caller learns when an allowed request fails to load: the field, not the loader's words."""
    log.warning("refused a job request: %s", exc)
    for kind, field, message in _LOAD_FAILURES:
        if isinstance(exc, kind):
            return RequestError(field, message)
    return RequestError(None, "the job cannot be prepared from this request (the service log has the reason)")
