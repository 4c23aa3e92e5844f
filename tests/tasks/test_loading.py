"""load_task on the real GLUE folders, the demo task, local files and folders, and the hub path."""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest

from autopeft.errors import TaskError
from autopeft.tasks import Split, Task, TaskKind, load_task
from autopeft.tasks.language_modeling import CHUNK_CHARS, chunk_text


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def task_error(source, **options) -> str:
    """The message of the TaskError that load_task raises; it must be one line."""
    with pytest.raises(TaskError) as raised:
        load_task(str(source), **options)
    message = str(raised.value)
    assert "\n" not in message
    return message


def label_counts(task: Task, split: Split) -> dict[str, int]:
    return {task.label_names[i]: n for i, n in collections.Counter(split.labels).items()}


def binary_tsv(rows: int, offset: int = 0) -> str:
    return "sentence\tlabel\n" + "".join(f"example number {i + offset}\t{i % 2}\n" for i in range(rows))


# --- the real GLUE folders ------------------------------------------------------------------


def test_sst2_loads_as_published(shared_path):
    task = load_task(str(shared_path("glue/SST-2")))
    assert (task.name, task.kind, task.metric, task.num_labels) == ("SST-2", TaskKind.CLASSIFICATION, "accuracy", 2)
    assert (len(task.train), len(task.dev)) == (67_349, 872)
    assert task.label_names == ("0", "1")
    assert label_counts(task, task.train) == {"0": 29_780, "1": 37_569}
    assert label_counts(task, task.dev) == {"0": 428, "1": 444}
    # The trailing space before the tab is not part of the sentence.
    assert task.train.texts[0] == ("hide new secretions from the parental units",)
    assert task.dev.texts[0] == ("it 's a charming and often affecting journey .",)


def test_rte_loads_sentence_pairs_with_string_labels(shared_path):
    task = load_task(str(shared_path("glue/RTE")))
    assert (task.name, task.metric, len(task.train), len(task.dev)) == ("RTE", "accuracy", 2_490, 277)
    assert task.label_names == ("entailment", "not_entailment")
    assert label_counts(task, task.train) == {"entailment": 1_249, "not_entailment": 1_241}
    assert label_counts(task, task.dev) == {"entailment": 146, "not_entailment": 131}
    assert task.train.texts[0] == (
        "No Weapons of Mass Destruction Found in Iraq Yet.",
        "Weapons of Mass Destruction Found in Iraq.",
    )
    assert task.label_names[task.train.labels[0]] == "not_entailment"


def test_mrpc_loads_despite_bom_and_keeps_quotes_literal(shared_path):
    task = load_task(str(shared_path("glue/MRPC")))
    assert (task.name, task.metric, len(task.train), len(task.dev)) == ("MRPC", "f1", 3_668, 408)
    assert label_counts(task, task.train) == {"1": 2_474, "0": 1_194}
    assert label_counts(task, task.dev) == {"1": 279, "0": 129}
    first_sentence, second_sentence = task.train.texts[0]
    assert first_sentence.startswith('Amrozi accused his brother, whom he called "the witness"')
    assert second_sentence.startswith('Referring to him as only "the witness"')


def test_glue_task_source_loads_the_same_task_again(shared_path):
    task = load_task(str(shared_path("glue/RTE")))
    assert load_task(task.source) == task


# --- GLUE layouts of all nine tasks, on small files in the original format --------------------

GLUE_FORMATS = {
    # folder: (header or None, {column: value per label}, label column, labels, dev file, kind, metric)
    "CoLA": (
        None,
        ["source", "label", "original_label", "sentence"],
        "label",
        ["0", "1"],
        "dev.tsv",
        "classification",
        "mcc",
    ),
    "SST-2": ("", ["sentence", "label"], "label", ["0", "1"], "dev.tsv", "classification", "accuracy"),
    "MRPC": (
        "\ufeff",
        ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        "Quality",
        ["0", "1"],
        "dev.tsv",
        "classification",
        "f1",
    ),
    "STS-B": (
        "",
        ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"],
        "score",
        ["0.500", "3.750"],
        "dev.tsv",
        "regression",
        "pearson",
    ),
    "QQP": (
        "",
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        "is_duplicate",
        ["0", "1"],
        "dev.tsv",
        "classification",
        "f1",
    ),
    "MNLI": (
        "",
        [
            "index",
            "promptID",
            "pairID",
            "genre",
            "sentence1_binary_parse",
            "sentence2_binary_parse",
            "sentence1_parse",
            "sentence2_parse",
            "sentence1",
            "sentence2",
            "label1",
            "gold_label",
        ],
        "gold_label",
        ["contradiction", "entailment", "neutral"],
        "dev_matched.tsv",
        "classification",
        "accuracy",
    ),
    "QNLI": (
        "",
        ["index", "question", "sentence", "label"],
        "label",
        ["entailment", "not_entailment"],
        "dev.tsv",
        "classification",
        "accuracy",
    ),
    "RTE": (
        "",
        ["index", "sentence1", "sentence2", "label"],
        "label",
        ["entailment", "not_entailment"],
        "dev.tsv",
        "classification",
        "accuracy",
    ),
    "WNLI": (
        "",
        ["index", "sentence1", "sentence2", "label"],
        "label",
        ["0", "1"],
        "dev.tsv",
        "classification",
        "accuracy",
    ),
}
TEXT_COLUMNS = {"sentence", "#1 String", "#2 String", "sentence1", "sentence2", "question", "question1", "question2"}


def write_glue_file(
    path: Path, header_prefix: str | None, columns: list[str], label_column: str, labels: list[str]
) -> None:
    lines = [] if header_prefix is None else [header_prefix + "\t".join(columns)]
    for row in range(6):
        fields = {c: f'{c} text "{row}"' if c in TEXT_COLUMNS else "7" for c in columns}
        fields[label_column] = labels[row % len(labels)]
        lines.append("\t".join(fields[c] for c in columns))
    write(path, "\n".join(lines) + "\n")


@pytest.mark.parametrize("folder", GLUE_FORMATS)
def test_every_glue_task_is_recognised_by_its_folder_name(tmp_path, folder):
    header_prefix, columns, label_column, labels, dev_file, kind, metric = GLUE_FORMATS[folder]
    for file_name in ("train.tsv", dev_file):
        write_glue_file(tmp_path / folder / file_name, header_prefix, columns, label_column, labels)
    task = load_task(str(tmp_path / folder))
    assert (task.kind, task.metric, len(task.train), len(task.dev)) == (kind, metric, 6, 6)
    expected_fields = [c for c in columns if c in TEXT_COLUMNS]
    assert task.train.texts[1] == tuple(f'{c} text "1"' for c in expected_fields)
    if kind == "classification":
        assert task.label_names == tuple(labels)
        assert task.train.labels[:3] == tuple(labels.index(labels[r % len(labels)]) for r in range(3))
    else:
        assert task.train.labels[:2] == (0.5, 3.75) and task.num_labels == 1


def test_glue_folder_name_is_matched_loosely(tmp_path):
    header_prefix, columns, label_column, labels, *_ = GLUE_FORMATS["STS-B"]
    for file_name in ("train.tsv", "dev.tsv"):
        write_glue_file(tmp_path / "stsb" / file_name, header_prefix, columns, label_column, labels)
    assert load_task(str(tmp_path / "stsb")).name == "STS-B"


def test_unknown_folder_name_falls_through_to_generic_files(tmp_path):
    write(tmp_path / "mytask" / "train.tsv", binary_tsv(10))
    write(tmp_path / "mytask" / "dev.tsv", binary_tsv(4, offset=100))
    task = load_task(str(tmp_path / "mytask"))
    assert (task.name, len(task.train), len(task.dev), task.metric) == ("mytask", 10, 4, "accuracy")


def test_metric_and_kind_overrides_apply_to_glue(tmp_path):
    header_prefix, columns, label_column, labels, *_ = GLUE_FORMATS["SST-2"]
    for file_name in ("train.tsv", "dev.tsv"):
        write_glue_file(tmp_path / "SST-2" / file_name, header_prefix, columns, label_column, labels)
    assert load_task(str(tmp_path / "SST-2"), metric="mcc").metric == "mcc"
    regression = load_task(str(tmp_path / "SST-2"), kind=TaskKind.REGRESSION)
    assert (regression.kind, regression.metric, regression.train.labels[:2]) == ("regression", "pearson", (0.0, 1.0))


# --- the demo task -----------------------------------------------------------------------------


def test_demo_task_is_a_balanced_binary_task():
    task = load_task("demo")
    assert (task.name, task.source, task.kind, task.metric) == ("demo", "demo", TaskKind.CLASSIFICATION, "accuracy")
    assert (len(task.train), len(task.dev), task.label_names) == (600, 200, ("0", "1"))
    assert label_counts(task, task.train) == {"0": 300, "1": 300}
    assert label_counts(task, task.dev) == {"0": 100, "1": 100}
    assert not set(task.train.texts) & set(task.dev.texts)
    assert len(set(task.train.texts)) == 600


# --- local CSV / TSV / JSONL files and folders -----------------------------------------------


def test_single_csv_file_is_split_into_train_and_dev_deterministically(tmp_path):
    rows = "".join(f'"review {i}, with a comma",{"pos" if i % 3 else "neg"}\n' for i in range(100))
    path = write(tmp_path / "reviews.csv", "text,label\n" + rows)
    task = load_task(str(path))
    assert (task.name, task.source, task.label_names) == ("reviews.csv", str(path.resolve()), ("neg", "pos"))
    assert (len(task.train), len(task.dev)) == (90, 10)
    assert task.train.texts[0] in {(f"review {i}, with a comma",) for i in range(100)}
    assert not set(task.train.texts) & set(task.dev.texts)
    # 10% of each class: 33 "neg" rows give 3 dev rows, 67 "pos" rows give 7.
    assert label_counts(task, task.dev) == {"neg": 3, "pos": 7}
    assert load_task(str(path)) == task == load_task(task.source)


def test_single_file_holdout_depends_on_nothing_but_the_file(tmp_path):
    first = load_task(str(write(tmp_path / "a" / "data.tsv", binary_tsv(50))))
    second = load_task(str(write(tmp_path / "b" / "data.tsv", binary_tsv(50))))
    assert first.dev == second.dev and first.train == second.train


def test_jsonl_folder_with_validation_file_and_sentence_pairs(tmp_path):
    def records(n, offset):
        return "".join(
            json.dumps(
                {"sentence1": f"premise {i}", "sentence2": f"hypothesis {i}", "label": ["yes", "no", "maybe"][i % 3]}
            )
            + "\n"
            for i in range(offset, offset + n)
        )

    write(tmp_path / "nli" / "train.jsonl", records(9, 0))
    write(tmp_path / "nli" / "validation.jsonl", "\n" + records(3, 50) + "\n")
    task = load_task(str(tmp_path / "nli"))
    assert task.label_names == ("maybe", "no", "yes")
    assert task.train.texts[0] == ("premise 0", "hypothesis 0")
    assert task.dev.texts[0] == ("premise 50", "hypothesis 50")
    assert [task.label_names[i] for i in task.dev.labels] == ["maybe", "yes", "no"]  # rows 50, 51, 52


def test_integer_labels_are_ordered_numerically(tmp_path):
    rows = "".join(f"text {i}\t{[2, 10, 1][i % 3]}\n" for i in range(30))
    task = load_task(str(write(tmp_path / "nums.tsv", "text\tlabel\n" + rows)))
    assert task.label_names == ("1", "2", "10")
    assert task.num_labels == 3


def test_json_numbers_one_and_one_point_zero_are_one_class(tmp_path):
    lines = [json.dumps({"text": f"t{i}", "label": [0, 1.0, 1][i % 3]}) for i in range(30)]
    task = load_task(str(write(tmp_path / "mixed.jsonl", "\n".join(lines))))
    assert task.label_names == ("0", "1")


def test_fractional_labels_make_a_regression_task(tmp_path):
    rows = "".join(f"pair {i}\tother {i}\t{i / 4}\n" for i in range(40))
    task = load_task(str(write(tmp_path / "sim.tsv", "sentence1\tsentence2\tlabel\n" + rows)))
    assert (task.kind, task.metric, task.label_names, task.num_labels) == ("regression", "pearson", (), 1)
    assert sorted(task.train.labels + task.dev.labels) == [i / 4 for i in range(40)]


def test_kind_override_makes_integer_labels_a_regression(tmp_path):
    task = load_task(str(write(tmp_path / "stars.tsv", binary_tsv(20))), kind=TaskKind.REGRESSION, metric="spearman")
    assert (task.kind, task.metric) == ("regression", "spearman")
    assert set(task.train.labels) <= {0.0, 1.0}


def test_named_columns_are_used(tmp_path):
    rows = "".join(f"{i}\tbody {i}\ttitle {i}\t{'good' if i % 2 else 'bad'}\n" for i in range(20))
    path = write(tmp_path / "custom.tsv", "id\tbody\ttitle\tverdict\n" + rows)
    task = load_task(str(path), text_columns=["title", "body"], label_column="verdict")
    assert set(task.train.texts) | set(task.dev.texts) == {(f"title {i}", f"body {i}") for i in range(20)}
    assert load_task(str(path), text_columns="body", label_column="verdict").train.texts[0][0].startswith("body")


def test_split_subset_is_deterministic_and_without_replacement():
    split = Split(texts=tuple((f"t{i}",) for i in range(50)), labels=tuple(range(50)))
    subset = split.subset(10, seed=3)
    assert len(subset) == 10 and len(set(subset.texts)) == 10
    assert subset == split.subset(10, seed=3) != split.subset(10, seed=4)
    assert all(text == (f"t{label}",) for text, label in zip(subset.texts, subset.labels, strict=True))
    assert split.subset(50, seed=0) is split and split.subset(80, seed=0) is split


# --- errors the user can cause -----------------------------------------------------------------


def test_missing_named_column_lists_the_columns(tmp_path):
    path = write(tmp_path / "train.tsv", "a\tb\tlabel\nx\ty\t1\n")
    message = task_error(path, text_columns=["sentence"])
    assert message == f"{path}: no column 'sentence' (columns: a, b, label); pass --text-columns"


def test_ambiguous_columns_are_not_guessed(tmp_path):
    path = write(tmp_path / "reviews.csv", "review,stars\ngreat,5\nbad,1\n")
    message = task_error(path)
    assert str(path) in message and "columns: review, stars" in message and "--text-columns" in message
    message = task_error(write(tmp_path / "both.csv", "sentence,text,label\na,b,1\n"))
    assert "cannot tell which columns hold the text" in message


def test_missing_label_column_asks_for_it(tmp_path):
    message = task_error(write(tmp_path / "t.csv", "text,score\na,1\n"))
    assert "which column holds the label" in message and "--label-column" in message


def test_empty_and_header_only_files(tmp_path):
    assert "empty file" in task_error(write(tmp_path / "empty.csv", "\n\n"))
    message = task_error(write(tmp_path / "header.tsv", "sentence\tlabel\n"))
    assert str(tmp_path / "header.tsv") in message and "no examples" in message


def test_dev_label_unseen_in_train_names_file_and_line(tmp_path):
    write(tmp_path / "task" / "train.tsv", binary_tsv(6))
    write(tmp_path / "task" / "dev.tsv", "sentence\tlabel\nfine\t1\nodd one\t7\n")
    message = task_error(tmp_path / "task")
    assert message == (
        f"{tmp_path / 'task' / 'dev.tsv'}: line 3: label '7' does not occur in the training data "
        "(training labels: 0, 1)"
    )


def test_row_with_wrong_field_count_names_file_and_line(tmp_path):
    path = write(tmp_path / "data.tsv", "sentence\tlabel\nok\t1\nbroken\t0\textra\n")
    assert task_error(path) == f"{path}: line 3 has 3 fields, expected 2 (sentence, label)"


def test_invalid_jsonl_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "data.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 0}\n')
    message = task_error(path)
    assert message.startswith(f"{path}: line 2 is not valid JSON")
    path = write(tmp_path / "list.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n')
    assert task_error(path) == f"{path}: line 2 is a JSON list; expected one JSON object per line"


def test_missing_value_in_jsonl_row(tmp_path):
    path = write(tmp_path / "data.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n{"text": "c", "label": null}\n')
    assert task_error(path) == f"{path}: line 2 has no value for column 'label'"


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "latin.tsv"
    path.write_bytes("sentence\tlabel\nok\t1\ncaf\xe9\t0\n".encode("latin-1"))
    assert task_error(path) == f"{path}: line 3 is not UTF-8 text (invalid continuation byte); save the file as UTF-8"


def test_empty_label_and_single_class(tmp_path):
    path = write(tmp_path / "t" / "train.tsv", "sentence\tlabel\na\t1\nb\t\n")
    write(tmp_path / "t" / "dev.tsv", "sentence\tlabel\nc\t1\n")
    assert task_error(tmp_path / "t") == f"{path}: line 3: empty label"
    path = write(tmp_path / "one" / "train.tsv", "sentence\tlabel\na\tyes\nb\tyes\n")
    write(tmp_path / "one" / "dev.tsv", "sentence\tlabel\nc\tyes\n")
    assert "every training label is 'yes'; classification needs at least two classes" in task_error(tmp_path / "one")


def test_regression_needs_numeric_labels(tmp_path):
    path = write(tmp_path / "t.tsv", "sentence\tlabel\n" + "a\t0.5\n" * 9 + "b\thigh\n")
    assert (
        task_error(path, kind="regression")
        == f"{path}: line 11: label 'high' is not a finite number; regression needs numeric labels"
    )


def test_folder_without_split_files_lists_what_it_holds(tmp_path):
    write(tmp_path / "f" / "train.tsv", binary_tsv(4))
    write(tmp_path / "f" / "notes.txt", "hello")
    message = task_error(tmp_path / "f")
    assert message == (
        f"{tmp_path / 'f'}: no dev.csv/.tsv/.jsonl or validation.csv/.tsv/.jsonl file "
        "(found: notes.txt, train.tsv); a task folder needs train and dev files"
    )


def test_folder_with_two_train_files_is_ambiguous(tmp_path):
    write(tmp_path / "f" / "train.tsv", binary_tsv(4))
    write(tmp_path / "f" / "train.csv", "sentence,label\na,1\n")
    write(tmp_path / "f" / "dev.tsv", binary_tsv(4))
    assert "train.csv and train.tsv both hold the split" in task_error(tmp_path / "f")


def test_too_few_rows_to_hold_out_dev(tmp_path):
    message = task_error(write(tmp_path / "tiny.tsv", "sentence\tlabel\na\t0\nb\t1\n"))
    assert "too few to hold out 10% as dev" in message


def test_unsupported_file_type(tmp_path):
    message = task_error(write(tmp_path / "data.parquet", "x"))
    assert message.startswith(f"{tmp_path / 'data.parquet'}: unsupported file type '.parquet'")


@pytest.mark.parametrize("source", ["./missing-folder", "/no/such/task", "data/train.csv", "nope.tsv", "a/b/c"])
def test_missing_local_path_is_not_sent_to_the_hub(source):
    started = time.monotonic()
    assert task_error(source) == f"task folder not found: {source} (no such file or folder)"
    assert time.monotonic() - started < 1


def test_metric_must_fit_the_kind_and_kind_must_exist(tmp_path):
    path = write(tmp_path / "t.tsv", binary_tsv(20))
    assert "metric 'pearson' does not apply to a classification task; choose one of accuracy, f1, mcc" in task_error(
        path, metric="pearson"
    )
    assert (
        task_error(path, kind="ranking")
        == "unknown task kind 'ranking'; expected one of classification, regression, causal_lm"
    )
    assert "cannot make a causal_lm task" in task_error(path, kind="causal_lm")


# --- causal-LM data ----------------------------------------------------------------------------


def test_alpaca_demo_becomes_prompt_response_pairs(shared_path):
    path = shared_path("instruct/alpaca_en_demo.json")
    records = json.loads(path.read_text(encoding="utf-8"))
    task = load_task(str(path))
    assert (task.kind, task.metric, task.num_labels, task.train.labels) == ("causal_lm", "loss", 0, None)
    assert (len(task.train), len(task.dev)) == (899, 100)
    pairs = set(task.train.texts) | set(task.dev.texts)
    assert len(pairs) == len({(r["instruction"], r["input"], r["output"]) for r in records})
    with_input = next(r for r in records if r["input"])
    prompt, _ = next(p for p in pairs if p[1] == with_input["output"])
    assert prompt.endswith(
        f"### Instruction:\n{with_input['instruction']}\n\n### Input:\n{with_input['input']}\n\n### Response:\n"
    )
    without_input = next(r for r in records if not r["input"])
    prompt, _ = next(p for p in pairs if p[1] == without_input["output"])
    assert "### Input:" not in prompt and prompt.endswith(f"{without_input['instruction']}\n\n### Response:\n")


def test_alpaca_errors_name_the_record(tmp_path):
    path = write(tmp_path / "a.json", json.dumps([{"instruction": "Say hi", "output": "hi"}, {"instruction": "x"}]))
    assert task_error(path).startswith(f"{path}: record 2 has no text in 'output' (keys: instruction)")
    path = write(tmp_path / "b.json", json.dumps({"instruction": "x", "output": "y"}))
    assert "found a JSON dict; expected a JSON list of Alpaca records" in task_error(path)
    assert "found an empty list" in task_error(write(tmp_path / "c.json", "[]"))
    assert "not valid JSON" in task_error(write(tmp_path / "d.json", "[{"))
    assert "is a causal-LM task, not classification" in task_error(path, kind="classification")


def test_plain_text_is_chunked_with_the_last_tenth_as_dev(shared_path):
    path = shared_path("lm/tinyshakespeare.txt")
    text = path.read_text(encoding="utf-8")
    task = load_task(str(path))
    chunks = [t[0] for t in task.train.texts + task.dev.texts]
    assert (task.kind, task.metric, task.train.labels) == ("causal_lm", "loss", None)
    assert "".join(chunks) == text
    assert all(len(c) <= CHUNK_CHARS and c.endswith("\n") for c in chunks)
    assert len(task.dev) == round(len(chunks) / 10)
    assert "".join(t[0] for t in task.dev.texts) == text[-sum(len(t[0]) for t in task.dev.texts) :]


def test_chunk_text_cuts_at_lines_and_splits_overlong_lines():
    assert chunk_text("aaaa\nbb\ncc\n", size=8) == ["aaaa\nbb\n", "cc\n"]
    assert chunk_text("x" * 20 + "\ny\n", size=8) == ["x" * 8, "x" * 8, "xxxx\ny\n"]
    assert chunk_text("  \n\n", size=8) == []


def test_short_or_empty_text_file(tmp_path):
    assert "make fewer than 2 chunks" in task_error(write(tmp_path / "short.txt", "one line\n"))
    assert "fewer than 2 chunks" in task_error(write(tmp_path / "empty.txt", ""))


# --- the Hugging Face hub ------------------------------------------------------------------------


def test_hub_name_fails_fast_when_unreachable():
    started = time.monotonic()
    message = task_error("autopeft-tests/no-such-dataset:default")
    assert time.monotonic() - started < 15
    assert (
        message.startswith("autopeft-tests/no-such-dataset:default: ") and "local path" in message and "hub" in message
    )


def test_hub_name_fails_fast_at_a_dead_endpoint(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    started = time.monotonic()
    message = task_error("nyu-mll/glue:sst2")
    assert time.monotonic() - started < 15
    assert message.startswith(
        "nyu-mll/glue:sst2: neither a local path nor reachable on the hub (http://127.0.0.1:9 is not reachable"
    )


def test_hub_name_fails_fast_in_offline_mode(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    message = task_error("nyu-mll/glue:sst2")
    assert time.monotonic() - started < 15
    assert "neither a local path nor" in message and "offline" in message.lower()


def fake_hub(monkeypatch, splits: dict):
    import datasets

    dataset_dict = datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(*columns) for name, columns in splits.items()}
    )
    monkeypatch.setattr("autopeft.tasks.hub._download", lambda name, config, source: dataset_dict)


def test_hub_class_labels_become_label_names(monkeypatch):
    import datasets

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    fake_hub(
        monkeypatch,
        {
            "train": ({"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]}, features),
            "validation": ({"sentence": ["great"], "label": [1]}, features),
            "test": ({"sentence": ["?"], "label": [-1]}, features),
        },
    )
    task = load_task("someone/reviews")
    assert (task.name, task.source, task.label_names) == (
        "someone/reviews",
        "someone/reviews",
        ("negative", "positive"),
    )
    assert task.train.texts == (("good",), ("bad",), ("fine",)) and task.train.labels == (1, 0, 1)
    assert task.dev.labels == (1,)


def test_hub_glue_uses_glue_columns_and_the_matched_dev_split(monkeypatch):
    import datasets

    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
        }
    )
    columns = {"premise": ["p0", "p1", "p2"], "hypothesis": ["h0", "h1", "h2"], "label": [0, 1, 2]}
    fake_hub(monkeypatch, {"train": (columns, features), "validation_matched": (columns, features)})
    task = load_task("nyu-mll/glue:mnli")
    assert task.train.texts[0] == ("p0", "h0")
    assert task.label_names == ("contradiction", "entailment", "neutral")
    assert [task.label_names[i] for i in task.dev.labels] == ["entailment", "neutral", "contradiction"]


def test_hub_dataset_without_validation_split(monkeypatch):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
    fake_hub(monkeypatch, {"train": ({"text": ["a", "b"], "label": [0, 1]}, features)})
    assert task_error("someone/data") == (
        "someone/data: the dataset has no 'validation' split (splits: train); "
        "autopeft trains on 'train' and scores on 'validation'"
    )


def test_hub_name_fails_fast_when_offline_mode_is_set_from_the_start(tmp_path):
    """The usual offline setup: the variable is set before anything imports `datasets`."""
    import os
    import subprocess
    import sys

    repository = str(Path(__file__).parents[2])
    python_path = os.pathsep.join(filter(None, [repository, os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": python_path}
    # Only the failing call is timed: importing datasets and transformers first takes 5-16 s on a
    # loaded 2-core machine and says nothing about hub retries, which is what "fast" is about.
    script = (
        "import time, datasets, transformers\nfrom autopeft.tasks import load_task\nstarted = time.monotonic()\n"
        "try:\n    load_task('nyu-mll/glue:sst2')\nfinally:\n    print(time.monotonic() - started)"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120
    )
    assert float(finished.stdout.strip().splitlines()[-1]) < 15
    assert finished.returncode != 0
    last_line = finished.stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        "autopeft.errors.TaskError: nyu-mll/glue:sst2: neither a local path nor reachable on the hub"
    )


def test_columns_do_not_apply_to_language_model_files(tmp_path):
    path = write(tmp_path / "corpus.txt", "a line\n" * 1000)
    assert task_error(path, label_column="label") == (
        f"{path}: a .txt file is a causal-LM task; --text-columns and --label-column do not apply"
    )


def test_windows_line_endings_and_a_csv_without_header(tmp_path):
    path = write(tmp_path / "crlf.tsv", "sentence\tlabel\r\n" + "".join(f"row {i}\t{i % 2}\r\n" for i in range(20)))
    task = load_task(str(path))
    assert {t for (t,) in task.train.texts + task.dev.texts} == {f"row {i}" for i in range(20)}
    path = write(tmp_path / "blank.csv", ",,\n,,\n")
    assert task_error(path) == f"{path}: no header row; expected column names on the first line"


def test_missing_folder_under_an_existing_local_folder_is_a_path(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert task_error("data/mytask") == "task folder not found: data/mytask (no such file or folder)"
