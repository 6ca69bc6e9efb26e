"""Where install.py looks for Krita on each OS (the OS is what is faked here, not install.py)."""
from __future__ import annotations

import importlib
import platform
from pathlib import Path
from types import ModuleType

import pytest


def load_install() -> ModuleType:
    return importlib.import_module("install")  # the repo root is on pytest's pythonpath


def targets_on(system: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *argv: str):
    install = load_install()
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    return [(t.pykrita, t.kritarc) for t in install.krita_targets(install.parse_args(list(argv)))]


def test_windows(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert targets_on("Windows", monkeypatch, tmp_path) == [
        (tmp_path / "Roaming" / "krita" / "pykrita", tmp_path / "Local" / "kritarc")]


def test_macos(monkeypatch, tmp_path: Path) -> None:
    assert targets_on("Darwin", monkeypatch, tmp_path) == [
        (tmp_path / "Library" / "Application Support" / "krita" / "pykrita",
         tmp_path / "Library" / "Preferences" / "kritarc")]


def test_linux_defaults_and_flatpak(monkeypatch, tmp_path: Path) -> None:
    assert targets_on("Linux", monkeypatch, tmp_path) == [
        (tmp_path / ".local" / "share" / "krita" / "pykrita", tmp_path / ".config" / "kritarc")]
    flatpak = tmp_path / ".var" / "app" / "org.kde.krita"
    flatpak.mkdir(parents=True)
    assert targets_on("Linux", monkeypatch, tmp_path)[1] == (
        flatpak / "data" / "krita" / "pykrita", flatpak / "config" / "kritarc")


def test_overrides(monkeypatch, tmp_path: Path) -> None:
    rc = tmp_path / "elsewhere" / "kritarc"
    assert targets_on("Linux", monkeypatch, tmp_path, "--krita-dir", str(tmp_path / "k" / "pykrita"),
                      "--kritarc", str(rc)) == [(tmp_path / "k" / "pykrita", rc)]


def test_venv_python_per_os(monkeypatch, tmp_path: Path) -> None:
    install = load_install()
    monkeypatch.setattr(platform, "system", lambda: "Windows")
    assert install.venv_python(tmp_path) == tmp_path / "Scripts" / "python.exe"
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert install.venv_python(tmp_path) == tmp_path / "bin" / "python"
    assert install.torch_attempts("mps", None) == [["torch==2.13.0"]]
