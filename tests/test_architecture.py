"""The layering in DESIGN.md, enforced: import-linter contracts, and no tensorflow in the operator."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_import_contracts_hold() -> None:
    lint = REPO / ".venv" / "bin" / "lint-imports"
    cmd = [str(lint)] if lint.exists() else [sys.executable, "-m", "importlinter.cli"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().split("contracts:")[-1] or "0 broken" in result.stdout


def test_operator_process_never_imports_tensorflow() -> None:
    code = (
        "import sys\n"
        "import tfms.cli.main, tfms.cli.apply, tfms.reconcile.service, tfms.backends.cloudrun, tfms.emulator\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_no_init_in_source_root() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()
