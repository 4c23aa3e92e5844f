"""The grouped methods space of the lookup benchmark is conditional like the real methods space."""

import pytest

from bench.optimizers.grouped_spaces import METHOD_SIZES
from bench.optimizers.proxy_setup import grouped_space


@pytest.fixture(scope="module")
def space():
    return grouped_space("methods")


def test_every_configuration_is_one_point_with_its_inactive_sizes_at_their_first_value(space):
    points = list(space.all_points())
    sized = sum(1 for sizes in METHOD_SIZES.values() if sizes)
    assert len(points) == 7 * (2 * sized + len(METHOD_SIZES) - sized)  # 7 non-empty layer-group sets
    assert len({space.config_id(p) for p in points}) == len({space.structure_key(p) for p in points}) == len(points)
    assert all(space.canonical(p) == p for p in points)


def test_a_size_of_a_method_not_chosen_changes_neither_the_vector_nor_the_structure(space):
    point = next(p for p in space.all_points() if p["method"] == "lora")
    changed = {**point, "method.loha.size": METHOD_SIZES["loha"][-1]}
    assert space.encode(changed) == space.encode(point)
    assert space.structure_key(changed) == space.structure_key(point)
    assert not space.is_active("method.loha.size", point) and space.is_active("method.lora.size", point)
