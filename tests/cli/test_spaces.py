"""``autopeft spaces --model M``: the layout found in a model and what each shipped space offers on it."""

from __future__ import annotations

from autopeft.cli import main
from tests.cli.test_bad_input import run_cli
from tests.space.tiny_models import tiny_phi3


def spaces_output(capsys, *args: str) -> str:
    """What ``autopeft spaces ARGS`` prints, run in-process through the CLI's entry point."""
    try:
        main(["spaces", *args])
    except SystemExit as exited:
        assert exited.code == 0, capsys.readouterr().err[-2000:]
    return capsys.readouterr().out


def test_spaces_on_a_registered_real_model_lists_roles_and_dimensions(tmp_path):
    result = run_cli("spaces", "--model", "minilm", cwd=tmp_path)  # a fresh process: no warning on stderr
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "bert layout from the registry" in out
    assert "bert.encoder.layer.0.attention.self.query" in out and "384 -> 1536" in out
    assert "methods" in out and "lora       13 dimensions" in out
    assert "Warning" not in result.stderr


def test_spaces_on_an_unlisted_family_shows_what_discovery_found(tmp_path, capsys):
    folder = tmp_path / "phi3"
    tiny_phi3().config.save_pretrained(folder)
    out = spaces_output(capsys, "--model", str(folder))
    assert "layout discovered from the model" in out
    assert "model.layers.0.self_attn.qkv_proj" in out and "model.layers.0.mlp.gate_up_proj" in out
    assert "without bias: the chosen matrices have no bias" in out
