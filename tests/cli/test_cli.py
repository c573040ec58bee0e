"""The command-line surface: every command answers --help, presets follow the device, JSON is strict."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from molshape.cli import COMMANDS, main
from molshape.cli.common import emit_summary, resolve_preset


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_preset_auto_follows_the_device() -> None:
    assert resolve_preset("auto", "cpu") == "cpu"
    assert resolve_preset("paper", "cpu") == "paper"
    expected = "paper" if torch.cuda.is_available() else "cpu"
    assert resolve_preset("auto", "auto") == expected


def test_json_summary_has_no_nan(capsys: pytest.CaptureFixture[str]) -> None:
    emit_summary({"mean": 1.5, "se": math.nan, "rows": [math.inf, 2.0]}, as_json=True)
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out  # not JSON; jq and JSON.parse reject them
    parsed = json.loads(out)
    assert parsed == {"mean": 1.5, "se": None, "rows": [None, 2.0]}
