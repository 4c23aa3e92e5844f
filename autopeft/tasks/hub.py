"""Tasks from the Hugging Face hub through ``datasets``: ``NAME`` or ``NAME:CONFIG``.

autopeft trains on the ``train`` split and scores on ``validation`` (``validation_matched``
for GLUE's MNLI). ``datasets`` retries an unreachable hub for tens of seconds, so the hub is
probed first with a short timeout and an unreachable one fails at once. In offline mode
(``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``) only the local datasets cache is used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from autopeft.errors import TaskError
from autopeft.tasks.glue import GlueLayout, glue_layout_for_hub
from autopeft.tasks.labels import RawExample
from autopeft.tasks.tables import check_columns, infer_columns, text_value

PROBE_TIMEOUT_S = 3.0

_OFFLINE = "offline mode is on: HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?(:[\w.-]+)?")


def looks_like_hub_id(source: str) -> bool:
    """``name``, ``owner/name`` or either with ``:config``; paths (``./x``, ``a/b/c``) are not."""
    return _HUB_ID.fullmatch(source) is not None


def read_hub_examples(
    source: str, text_columns: Sequence[str] | None, label_column: str | None
) -> tuple[list[RawExample], list[RawExample], GlueLayout | None]:
    """(train, dev) raw examples of hub dataset ``source``, and its GLUE layout if it is GLUE.

    Class-label features are turned into their names, so the label names of the task are the
    dataset's class names.
    """
    dataset_name, _, config = source.partition(":")
    layout = glue_layout_for_hub(dataset_name, config or None)
    splits = _download(dataset_name, config or None, source)
    dev_split = layout.hub_dev_split if layout else "validation"
    for split in ("train", dev_split):
        if split not in splits:
            raise TaskError(
                f"{source}: the dataset has no {split!r} split (splits: {', '.join(splits)}); "
                f"autopeft trains on 'train' and scores on {dev_split!r}"
            )
    if layout:
        text_columns = text_columns or layout.hub_text_columns
        label_column = label_column or "label"
    train = splits["train"]
    text_columns, label_column = infer_columns(train.column_names, source, text_columns, label_column)
    return (
        _examples(train, f"{source} [train]", text_columns, label_column),
        _examples(splits[dev_split], f"{source} [{dev_split}]", text_columns, label_column),
        layout,
    )


def _examples(dataset, where: str, text_columns: tuple[str, ...], label_column: str) -> list[RawExample]:
    """RawExamples from one ``datasets.Dataset``, read column by column (fast for large splits)."""
    check_columns(dataset.column_names, where, text_columns, label_column)
    class_names = getattr(dataset.features[label_column], "names", None)
    columns = [dataset[column] for column in text_columns]
    examples = []
    for row, label in enumerate(dataset[label_column]):
        position = f"row {row}"
        if class_names is not None:
            if not 0 <= label < len(class_names):
                raise TaskError(f"{where}: {position} has no class label ({label})")
            label = class_names[label]
        examples.append(
            RawExample(
                texts=tuple(
                    text_value(column[row], f"{where}: {position}", name).strip()
                    for name, column in zip(text_columns, columns, strict=True)
                ),
                label=text_value(label, f"{where}: {position}", label_column),
                source=where,
                position=position,
            )
        )
    return examples


def _download(dataset_name: str, config: str | None, source: str):
    """The ``datasets.DatasetDict``, or a one-line TaskError within seconds when unavailable."""
    import datasets  # imported here: it takes a second, and most tasks are local

    offline = bool(datasets.config.HF_HUB_OFFLINE)  # then datasets reads only its cache, at once
    if not offline and _offline_mode_in_environment():
        # Offline mode was switched on after `datasets` read its settings at import, so it
        # would still go online and retry; refuse instead of hanging.
        raise TaskError(_unreachable(source, _OFFLINE))
    if not offline:
        reason = _hub_unreachable_reason()
        if reason:
            raise TaskError(_unreachable(source, reason))
    try:
        return datasets.load_dataset(dataset_name, config)
    except Exception as error:  # datasets raises many types for a wrong name, config or cache miss
        detail = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
        if offline:
            raise TaskError(
                _unreachable(source, f"{_OFFLINE} and the local datasets cache lacks it; {detail}")
            ) from None
        raise TaskError(f"{source}: not a local path, and the hub could not load it ({detail})") from None


def _unreachable(source: str, reason: str) -> str:
    return (
        f"{source}: neither a local path nor reachable on the hub ({reason}); "
        "give a task folder or file, or a hub dataset NAME[:CONFIG] while online"
    )


def _offline_mode_in_environment() -> bool:
    """Offline as ``datasets`` would decide it from the environment now (its flag wins over the hub's)."""
    from datasets.config import ENV_VARS_TRUE_VALUES

    flag = os.environ.get("HF_DATASETS_OFFLINE", os.environ.get("HF_HUB_OFFLINE", ""))
    return flag.upper() in ENV_VARS_TRUE_VALUES


def _hub_unreachable_reason() -> str | None:
    """None when the hub endpoint answers within PROBE_TIMEOUT_S, otherwise why not."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT_S)
    except Exception as error:  # any transport failure (DNS, refused, timeout, proxy) means unreachable
        return f"{constants.ENDPOINT} is not reachable: {' '.join(str(error).split()) or type(error).__name__}"
    return None
