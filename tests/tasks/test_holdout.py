"""The search split: carved from train, disjoint, stratified, seeded, and refused when train cannot spare it."""

from __future__ import annotations

import collections

import pytest

from autopeft.errors import TaskError
from autopeft.tasks import TaskKind, load_task
from autopeft.tasks.holdout import SEARCH_MAX, default_search_size, with_search_split


def test_sst2_search_split_is_disjoint_from_train_and_dev_and_keeps_the_class_balance(shared_path):
    loaded = load_task(str(shared_path("glue/SST-2")))
    task = with_search_split(loaded)
    assert len(task.search) == SEARCH_MAX == default_search_size(len(loaded.train))
    assert task.dev == loaded.dev
    rows = collections.Counter  # SST-2's train file repeats some phrases: compare as multisets of rows
    assert rows(zip(task.train.texts, task.train.labels)) + rows(zip(task.search.texts, task.search.labels)) == rows(
        zip(loaded.train.texts, loaded.train.labels)
    )
    share = collections.Counter(task.search.labels)[1] / len(task.search)
    assert share == pytest.approx(collections.Counter(loaded.train.labels)[1] / len(loaded.train), abs=0.002)


def test_the_same_seed_carves_the_same_split_and_another_seed_another():
    loaded = load_task("demo")
    first, again, other = (with_search_split(loaded, 60, seed) for seed in (0, 0, 1))
    assert len(first.search) == 60 and first.search == again.search and first.search != other.search
    assert collections.Counter(first.search.labels) == {0: 30, 1: 30}


def test_the_default_takes_a_fifth_of_a_small_training_split():
    task = with_search_split(load_task("demo"))
    assert (len(task.train), len(task.search)) == (480, 120)


def test_language_model_tasks_get_an_unstratified_search_split(shared_path):
    task = with_search_split(load_task(str(shared_path("instruct/alpaca_en_demo.json"))), 50)
    assert task.kind is TaskKind.CAUSAL_LM and len(task.search) == 50 and task.search.labels is None


@pytest.mark.parametrize("size", [0, 600, 10_000])
def test_a_search_split_that_leaves_no_training_data_is_one_clear_error(size):
    with pytest.raises(TaskError, match=r"--search-examples must be between 1 and 599 .*got") as raised:
        with_search_split(load_task("demo"), size)
    assert "\n" not in str(raised.value)
