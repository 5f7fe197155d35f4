"""Packages depend downward only: platform -> compliance -> hierarchy -> core, and mllm on no app.

Every ``import`` statement (module level or inside a function) is read with ``ast``, so a lazy
import that reaches up is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import subprocess_env

REPO = Path(__file__).resolve().parents[2]
APPS = ("core", "hierarchy", "compliance", "oblivio_site")
#: package -> top-level modules it must never import
FORBIDDEN = {
    "mllm": {"django", "rest_framework", "celery", *APPS},
    "core": {"hierarchy", "compliance", "oblivio_site"},
    "hierarchy": {"compliance", "oblivio_site"},
    "compliance": {"oblivio_site"},
}


def _package_dir(package: str) -> Path:
    return REPO / package if (REPO / package).is_dir() else REPO / "platform" / package


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package: str) -> None:
    offenders = sorted(
        f"{path.relative_to(REPO)} imports {root}"
        for path in _package_dir(package).rglob("*.py")
        for root in _imported_roots(path) & FORBIDDEN[package])
    assert not offenders, "\n".join(offenders)


def test_the_scan_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from compliance.audit import x\n    import oblivio_site.cli\n")
    assert _imported_roots(module) == {"compliance", "oblivio_site"}


def test_web_server_and_task_modules_load_without_torch() -> None:
    """The web process and the worker's task modules stay light: torch and transformers load only when
    an ``ml`` task runs (measured: a worker booted in 5.6 s with them imported at start-up, 1 s less
    the 4 s of importing them; every gunicorn process carried them too)."""
    import subprocess
    import sys

    code = ("import sys, oblivio_site.wsgi; from oblivio_site.celery import app; "
            "app.loader.import_default_modules(); "
            "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO / "platform", capture_output=True,
                            text=True, timeout=120, env=subprocess_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
