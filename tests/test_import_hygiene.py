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


def test_package_inits_hold_exports_not_logic() -> None:
    """Each package ``__init__.py`` holds a docstring, imports, ``__all__`` and ``__version__``: no function,
    class, constant or statement that would make it the owner of some logic (the layout names the owners)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "runaudit"
    inits = sorted(root.rglob("__init__.py"))
    assert len(inits) >= 5
    for init in inits:
        tree = ast.parse(init.read_text(encoding="utf-8"))
        for i, node in enumerate(tree.body):
            if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # the docstring
            if isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] in (
                    ["__all__"], ["__version__"]) and isinstance(node.value, ast.List | ast.Constant):
                continue
            raise AssertionError(f"{init.relative_to(root.parent)}:{node.lineno} holds logic: {ast.dump(node)[:80]}")
