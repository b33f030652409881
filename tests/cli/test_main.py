"""The ``after`` command: help, version, and errors as one clear line."""

import subprocess
import sys

import pytest

from after import __version__
from after.cli.main import COMMANDS, build_parser, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "after", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_with_its_purpose():
    result = run_cli("--help")
    assert result.returncode == 0
    for name, (_, purpose) in COMMANDS.items():
        assert name in result.stdout
        assert purpose[:30] in " ".join(result.stdout.split())


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_every_command_has_help():
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as stop:
            parser.parse_args([name, "--help"])
        assert stop.value.code == 0


def test_unknown_command_is_refused():
    result = run_cli("no-such-command")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "commands" in capsys.readouterr().out
