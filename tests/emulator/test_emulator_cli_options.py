"""`tfms emulator` options and help, as the CLI adds them (`cli_options` must stay import-light)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from tfms.emulator.cli_options import ENDPOINTS, add_emulator_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfms emulator")
    add_emulator_arguments(parser)
    return parser


def test_options_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TFMS_EMULATOR_REST_PORT", raising=False)
    monkeypatch.delenv("TFMS_EMULATOR_STATE", raising=False)
    args = _parser().parse_args([])
    assert (args.rest_port, args.state) == (8090, None)
    args = _parser().parse_args(["--rest-port", "0", "--state", "/tmp/s.json"])
    assert (args.rest_port, args.state) == (0, "/tmp/s.json")
    assert _parser().parse_args(["--rest-port", "off"]).rest_port is None
    monkeypatch.setenv("TFMS_EMULATOR_REST_PORT", "9999")
    monkeypatch.setenv("TFMS_EMULATOR_STATE", "/var/lib/tfms/emulator.json")
    args = _parser().parse_args([])
    assert (args.rest_port, args.state) == (9999, "/var/lib/tfms/emulator.json")
    with pytest.raises(SystemExit):
        _parser().parse_args(["--rest-port", "70000"])


def test_help_documents_the_control_interface() -> None:
    text = _parser().format_help()
    assert "--rest-port" in text and "--state FILE" in text
    for verb, path, _, _ in ENDPOINTS:
        assert f"{verb} /_emulator{path}" in text
    assert "curl -X POST" in text


def test_importing_the_options_stays_light() -> None:
    code = "import sys, tfms.emulator.cli_options; print(any(m in sys.modules for m in ('grpc', 'aiohttp')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
