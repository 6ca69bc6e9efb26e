"""The backend as an installed package: the ``layerfusion`` command, what the package holds, and
install.py's skipping of the (editable) package install while nothing it depends on changed."""
from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("serve", "generate", "reblend", "models")


def clean_env() -> Dict[str, str]:
    """The environment without anything that would put the checkout on sys.path by other means."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def console_command() -> Path:
    """The venv's ``layerfusion``, beside the Python running the tests (the README runs them with
    ``.venv/bin/python -m pytest``, in the environment install.py built)."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run in a virtual environment built by install.py")
    folder = Path(sys.executable).parent
    return folder / ("layerfusion.exe" if platform.system() == "Windows" else "layerfusion")


def test_layerfusion_help_runs_from_any_folder(tmp_path: Path) -> None:
    command = console_command()
    assert command.is_file(), "install.py did not install the layerfusion command into " + str(command.parent)
    result = subprocess.run([str(command), "--help"], cwd=str(tmp_path), env=clean_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: layerfusion ")
    for name in COMMANDS:
        assert name in result.stdout
    assert result.stderr == ""

    from backend import __version__

    version = subprocess.run([str(command), "--version"], cwd=str(tmp_path), env=clean_env(),
                             capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == __version__


def test_the_installed_package_is_this_checkout(tmp_path: Path) -> None:
    """Editable: from any folder, the venv imports backend/ and shared/ from the checkout itself."""
    console_command()
    code = "import backend, shared; print(backend.__file__); print(shared.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=clean_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    backend_file, shared_file = (Path(line).resolve() for line in result.stdout.split())
    assert backend_file == (REPO / "backend" / "__init__.py").resolve()
    assert shared_file == (REPO / "shared" / "__init__.py").resolve()


def test_wheel_holds_the_code_and_shipped_files_and_nothing_else(tmp_path: Path) -> None:
    """A regular build of the package (from a copy: no build/ or egg-info in the checkout) has every
    file backend/ and shared/ need at run time, the command's entry point, and no tests or plugin."""
    pytest.importorskip("setuptools")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy2(str(REPO / name), str(source / name))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("backend", "shared", "tests", "krita_plugin"):
        shutil.copytree(str(REPO / name), str(source / name), ignore=ignore)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--no-index", "-w", str(tmp_path / "wheel"), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    wanted = _tree(REPO / "backend", "backend/") + _tree(REPO / "shared", "shared/")
    assert [n for n in wanted if n.endswith(".json")], "no shipped config files found to check"
    assert sorted(set(wanted) - names) == []
    packaged = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packaged == {"backend", "shared"}
    assert "layerfusion = backend.cli:main" in entry_points


def _tree(root: Path, prefix: str) -> List[str]:
    return sorted(prefix + p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


class FakePip:
    """Stands in for install.py's pip: records each call and puts the command where pip would."""

    def __init__(self, install, venv: Path) -> None:
        self.install, self.venv = install, venv
        self.calls: List[List[str]] = []

    def __call__(self, python: Path, args: List[str], quiet: bool = False) -> bool:
        self.calls.append(args)
        command = self.install.venv_command(self.venv)
        command.parent.mkdir(parents=True, exist_ok=True)
        command.write_text("#!/bin/sh\n")
        return True


def test_package_install_is_skipped_until_pyproject_changes(tmp_path: Path, monkeypatch) -> None:
    install = importlib.import_module("install")  # the repo root is on pytest's pythonpath
    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / "pyproject.toml").write_text('[project]\nname = "layerfusion-krita"\n')
    (repo / "requirements.txt").write_text("numpy\n")
    venv = tmp_path / "venv"
    pip = FakePip(install, venv)
    monkeypatch.setattr(install, "pip", pip)
    stamp: dict = {}

    def run() -> str:
        report = install.Report()
        install.install_package(venv, stamp, report, repo=repo)
        return "changed" if report.changed else "unchanged"

    assert run() == "changed" and pip.calls == [["--no-deps", "-e", str(repo)]]
    assert run() == "unchanged" and len(pip.calls) == 1  # the second run leaves pip alone
    (repo / "pyproject.toml").write_text('[project]\nname = "layerfusion-krita"\nversion = "2"\n')
    assert run() == "changed" and len(pip.calls) == 2  # pyproject.toml changed: installed again
    assert run() == "unchanged" and len(pip.calls) == 2
    install.venv_command(venv).unlink()  # the command went missing (a venv tool removed it)
    assert run() == "changed" and len(pip.calls) == 3
