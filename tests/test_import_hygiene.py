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
