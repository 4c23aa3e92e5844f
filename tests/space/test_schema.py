"""Space files: valid ones load, every malformed one fails with one line naming file and key."""

import pytest

from autopeft.errors import SpaceError
from autopeft.space import load_space_spec, parse_space, shipped_spaces


def test_every_shipped_space_validates():
    assert "lora" in shipped_spaces()
    for name in shipped_spaces():
        assert load_space_spec(name).name == name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nmodules: {lora: {roles: [q], rank: {choices: [4]}}}\n", None),
        ("name: x\nmodules: [\n", "bad.yaml: line 3: malformed YAML"),
        ("- just\n- a list\n", "bad.yaml: expected a mapping"),
        ("name: x\nmodules: {}\n", "bad.yaml: modules: declare at least one module type"),
        ("modules: {lora: {roles: [q], rank: {choices: [4]}}}\n", "bad.yaml: name: Field required"),
        (
            "name: x\nmodules: {lora: {roles: [q], rank: {choices: [eight]}}}\n",
            "bad.yaml: modules.lora.rank.choices.0: expected an integer size or 'hidden' (got 'eight')",
        ),
        (
            "name: x\nmodules: {lora: {roles: [q], rank: {choices: [-1, 4]}}}\n",
            "bad.yaml: modules.lora.rank.choices: sizes must be >= 0",
        ),
        (
            "name: x\nmodules: {lora: {roles: [q], rank: {choices: [4], per: everywhere}}}\n",
            "bad.yaml: modules.lora.rank.per: Input should be 'global', 'layer', 'role' or 'placement'",
        ),
        (
            "name: x\nmodules: {lora: {roles: [q], rank: {choices: [4]}, variants: [vera]}}\n",
            "bad.yaml: modules.lora.variants.0: Input should be 'lora', 'dora', 'rslora' or 'kasa'",
        ),
        ("name: x\nmodules: {loraa: {}}\n", "bad.yaml: modules.loraa: Extra inputs are not permitted"),
    ],
)
def test_space_errors_name_file_and_key(text, expected):
    if expected is None:
        assert parse_space(text, source="bad.yaml").name == "x"
        return
    with pytest.raises(SpaceError) as error:
        parse_space(text, source="bad.yaml")
    message = str(error.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_missing_space_file_lists_shipped_spaces(tmp_path):
    with pytest.raises(SpaceError, match=r"space file not found: .*nope.yaml \(shipped spaces: .*lora"):
        load_space_spec(str(tmp_path / "nope.yaml"))
