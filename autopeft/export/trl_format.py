"""``--format trl``: a runnable training script (``train_trl.py``) around the exact peft config.

The script's ``build_peft_config()`` returns the same config as the ``peft`` export (same class,
same fields). Causal LMs train with TRL's ``SFTTrainer(peft_config=...)``; classification and
regression train with transformers' ``Trainer`` on ``get_peft_model(model, config)``, because
TRL has no sequence-classification trainer. Structures peft cannot hold are refused as for
``--format peft``.
"""

from __future__ import annotations

import json
import pprint
from pathlib import Path
from typing import Any

from peft import PeftConfig

import autopeft
from autopeft.errors import ExportError
from autopeft.export.peft_format import peft_config_of, refuse_beyond_config
from autopeft.export.source import ExportSource
from autopeft.export.validation import validate_on_base_model
from autopeft.space.tuners import TUNER_METHODS, adapter_rate_factor
from autopeft.tasks import TaskKind

FILE_NAME = "train_trl.py"


def config_arguments(config: PeftConfig) -> dict[str, Any]:
    """The config's fields that differ from its class's defaults, as plain Python values."""

    def plain(value: Any) -> Any:
        return json.loads(json.dumps(value, default=lambda v: sorted(v) if isinstance(v, set) else str(v)))

    current, default = plain(config.to_dict()), plain(type(config)().to_dict())
    return {key: value for key, value in current.items() if key != "peft_type" and value != default.get(key)}


def render_config_function(config: PeftConfig) -> str:
    """Source of ``build_peft_config()``, one keyword argument per non-default field."""
    lines = [f"def build_peft_config() -> {type(config).__name__}:", '    """The peft config of the exported trial."""']
    lines.append(f"    return {type(config).__name__}(")
    for key, value in config_arguments(config).items():
        literal = pprint.pformat(value, width=100 - len(key), sort_dicts=False)
        # Continuation lines of a long list or dict line up under its opening bracket.
        lines.append(" " * 8 + f"{key}={literal},".replace("\n", "\n" + " " * (9 + len(key))))
    lines.append("    )")
    return "\n".join(lines)


def render_script(source: ExportSource, config: PeftConfig) -> str:
    """The whole script for the source's task kind."""
    kind = source.task_kind
    body = _CAUSAL_LM_MAIN if kind is TaskKind.CAUSAL_LM else _SEQUENCE_MAIN
    fidelity = source.trial.fidelity
    header = _HEADER.format(
        trial=source.trial.number,
        job=source.job.id,
        base_model=source.hub_id,
        version=autopeft.__version__,
        trainer="TRL's SFTTrainer" if kind is TaskKind.CAUSAL_LM else "transformers' Trainer",
        config_class=type(config).__name__,
    )
    constants = "\n".join(
        [
            f"BASE_MODEL = {source.hub_id!r}",
            f"TASK_KIND = {str(kind)!r}",
            f"LABEL_NAMES = {list(source.job.spec['task_info']['label_names'])!r}",
            # One rate for the whole adapter: the proxy's, times the method's factor (head included).
            f"LEARNING_RATE = {fidelity.get('learning_rate', 1e-3) * adapter_rate_factor(source.structure)!r}",
            f"MAX_LENGTH = {fidelity.get('max_length', 128)!r}",
        ]
    )
    return f"{header}\n{constants}\n\n\n{render_config_function(config)}\n\n\n{body}"


def write_trl(source: ExportSource, out_dir: Path) -> list[Path]:
    refuse_beyond_config(source, "a TRL script")
    tuner = source.structure.tuner
    if tuner is not None and TUNER_METHODS[tuner.method].scheduled:
        raise ExportError(
            f"{source.describe()} uses {tuner.method}, which must update its ranks after every optimizer step, "
            "and the TRL script's trainer does not; export it with --format peft or train it with autopeft train"
        )
    config = peft_config_of(source)
    validate_on_base_model(config, source)
    path = out_dir / FILE_NAME
    path.write_text(render_script(source, config))
    return [path]


_HEADER = '''\
#!/usr/bin/env python
"""Train trial {trial} of autopeft job {job} on {base_model} with {trainer}.

Exported by autopeft {version}: build_peft_config() is the same {config_class} as
`autopeft export --format peft`. Example:

    python train_trl.py --train-file train.jsonl --dev-file dev.jsonl --output-dir adapter

Data files are CSV, TSV or JSON lines; --model takes a local folder instead of the hub id.
"""

from __future__ import annotations

import argparse

from peft import {config_class}
'''

_COMMON_ARGUMENTS = '''\
def parse_args(argv=None, **defaults):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-file", required=True)
    parser.add_argument("--dev-file", help="scored after every epoch")
    parser.add_argument("--model", default=BASE_MODEL, help="base model: hub id or local folder")
    parser.add_argument("--output-dir", default="adapter")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (overrides --epochs)")
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=MAX_LENGTH)
    parser.add_argument("--seed", type=int, default=0)
    for name, value in defaults.items():
        parser.add_argument("--" + name.replace("_", "-"), default=value)
    return parser.parse_args(argv)


def read_table(path):
    """A CSV, TSV or JSON-lines file as a datasets.Dataset."""
    from datasets import load_dataset

    suffix = path.rsplit(".", 1)[-1].lower()
    if suffix in ("json", "jsonl"):
        return load_dataset("json", data_files=path, split="train")
    return load_dataset("csv", data_files=path, split="train", delimiter="\\t" if suffix == "tsv" else ",")
'''

_SEQUENCE_MAIN = _COMMON_ARGUMENTS + '''

def main(argv=None):
    args = parse_args(argv, text_columns="sentence", label_column="label")
    import numpy as np
    from peft import get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    columns = args.text_columns.split(",")
    classification = TASK_KIND == "classification"
    label_ids = {name: index for index, name in enumerate(LABEL_NAMES)}

    def encode(batch):
        encoded = tokenizer(*(batch[c] for c in columns), truncation=True, max_length=args.max_length)
        labels = batch[args.label_column]
        encoded["labels"] = [label_ids[str(v)] for v in labels] if classification else [float(v) for v in labels]
        return encoded

    def prepared(path):
        table = read_table(path)
        return table.map(encode, batched=True, remove_columns=table.column_names)

    train = prepared(args.train_file)
    dev = prepared(args.dev_file) if args.dev_file else None
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(LABEL_NAMES) if classification else 1
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model = get_peft_model(model, build_peft_config())
    model.print_trainable_parameters()

    def accuracy(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=args.output_dir,
            num_train_epochs=args.epochs,
            max_steps=args.max_steps,
            learning_rate=args.learning_rate,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            eval_strategy="epoch" if dev is not None else "no",
            save_strategy="no",
            seed=args.seed,
            report_to="none",
        ),
        train_dataset=train,
        eval_dataset=dev,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy if classification else None,
    )
    trainer.train()
    if dev is not None:
        print(trainer.evaluate())
    model.save_pretrained(args.output_dir)


if __name__ == "__main__":
    main()
'''

_CAUSAL_LM_MAIN = _COMMON_ARGUMENTS + '''

def as_prompt_completion(record):
    """An Alpaca record (instruction, input, output) as TRL's prompt/completion pair."""
    prompt = record["instruction"] + ("\\n\\n" + record["input"] if record.get("input") else "")
    return {"prompt": prompt, "completion": record["output"]}


def sft_dataset(path):
    """Records with text, prompt/completion or messages are used as they are; Alpaca records converted."""
    table = read_table(path)
    if "instruction" in table.column_names:
        table = table.map(as_prompt_completion, remove_columns=table.column_names)
    return table


def main(argv=None):
    args = parse_args(argv)
    import torch
    from trl import SFTConfig, SFTTrainer

    trainer = SFTTrainer(
        model=args.model,
        args=SFTConfig(
            output_dir=args.output_dir,
            num_train_epochs=args.epochs,
            max_steps=args.max_steps,
            learning_rate=args.learning_rate,
            per_device_train_batch_size=args.batch_size,
            max_length=args.max_length,
            eval_strategy="epoch" if args.dev_file else "no",
            save_strategy="no",
            seed=args.seed,
            report_to="none",
            # SFTConfig trains in bf16 unless told that there is no GPU.
            use_cpu=not torch.cuda.is_available(),
        ),
        train_dataset=sft_dataset(args.train_file),
        eval_dataset=sft_dataset(args.dev_file) if args.dev_file else None,
        peft_config=build_peft_config(),
    )
    trainer.train()
    trainer.save_model(args.output_dir)


if __name__ == "__main__":
    main()
'''
