"""``import runaudit`` (and the library modules) must not load typer, rich or matplotlib."""

from __future__ import annotations

import subprocess
import sys


def test_import_runaudit_is_light() -> None:
    code = ("import sys, runaudit, runaudit.ingest, runaudit.classify, runaudit.audit; "
            "bad = [m for m in ('typer', 'rich', 'matplotlib', 'runaudit.cli') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_python_dash_m_works() -> None:
    res = subprocess.run([sys.executable, "-m", "runaudit", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("runaudit ")


def test_import_linter_contracts_hold() -> None:
    """The library never imports typer/rich/the CLI; only report.charts imports matplotlib (pyproject.toml)."""
    import shutil
    from pathlib import Path

    exe = shutil.which("lint-imports")
    assert exe, "import-linter is part of the test extras"
    res = subprocess.run([exe], capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "2 kept, 0 broken" in res.stdout
