"""Packaging promises: the stdlib ``platform`` module is never shadowed; the CLI lists its commands."""

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from conftest import REPO_ROOT
from oblivio_site.cli import main


def test_import_platform_from_repo_root_is_the_stdlib_module() -> None:
    code = "import platform, sysconfig; print(platform.__file__); print(platform.system())"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].startswith(__import__("sysconfig").get_paths()["stdlib"])
    assert out[1] == "Linux"
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()


def test_torch_imports_from_repo_root() -> None:
    """torch imports ``platform`` internally; it must still work when run from the checkout."""
    subprocess.run([sys.executable, "-c", "import torch; torch.zeros(1)"], cwd=REPO_ROOT,
                   check=True)


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "doctor", "serve", "worker", "manage"):
        assert f"  {command} " in result.output


def test_console_script_is_installed() -> None:
    """The ``oblivio`` entry point of pyproject.toml, installed next to the interpreter, runs."""
    script = Path(sys.executable).with_name("oblivio")
    assert script.is_file(), "pip install -e . did not install the oblivio console script"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert "doctor" in out and "serve" in out
