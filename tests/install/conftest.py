"""Fixtures for install.py: a throw-away HOME for Krita, and the checkout install.py installs from."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "layerfusion"

# Used only while krita_plugin/ has not landed in this checkout: the smallest plugin Krita accepts.
STAND_IN_DESKTOP = """[Desktop Entry]
Type=Service
ServiceTypes=Krita/PythonPlugin
X-KDE-Library=layerfusion
X-Python-2-Compatible=false
Name=LayerFusion
Comment=Layered foreground/background/blend generation
"""
STAND_IN_INIT = "from ._shared import protocol  # stand-in: krita_plugin/ is not in this checkout yet\n"


@dataclass
class KritaHome:
    """A temporary HOME with Linux's XDG folders, as Krita resolves them."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def pykrita(self) -> Path:
        return self.data / "krita" / "pykrita"

    @property
    def kritarc(self) -> Path:
        return self.config / "kritarc"

    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(HOME=str(self.root / "home"), XDG_DATA_HOME=str(self.data),
                   XDG_CONFIG_HOME=str(self.config))
        return env

    def snapshot(self) -> Dict[str, Tuple[str, int]]:
        """Every file and folder under the temporary root: content hash and modification time."""
        out: Dict[str, Tuple[str, int]] = {}
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if path.is_dir():
                out[rel + "/"] = ("dir", 0)
            else:
                out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        return out


@dataclass
class Installer:
    repo: Path

    def run(self, home: KritaHome, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, str(self.repo / "install.py"), *args], env=home.env(), cwd=str(home.root),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=900,
        )
        assert result.returncode == 0, result.stdout
        return result

    def expected_files(self) -> Dict[str, bytes]:
        """What the plugin folder must hold: manifest, package, and shared/ as the package's _shared/."""
        src = self.repo / "krita_plugin"
        files = {PLUGIN + ".desktop": (src / (PLUGIN + ".desktop")).read_bytes()}
        for base, prefix in ((src / PLUGIN, PLUGIN + "/"), (self.repo / "shared", PLUGIN + "/_shared/")):
            for path in base.rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                    files[prefix + path.relative_to(base).as_posix()] = path.read_bytes()
        return files


@pytest.fixture(scope="session")
def installer(tmp_path_factory: pytest.TempPathFactory) -> Installer:
    """This checkout, or (until the plugin branch is merged) a copy of it with a stand-in plugin."""
    if (REPO / "krita_plugin" / (PLUGIN + ".desktop")).is_file():
        return Installer(REPO)
    copy = tmp_path_factory.mktemp("checkout")
    for name in ("install.py", "requirements.txt", "requirements-dev.txt"):
        shutil.copy2(str(REPO / name), str(copy / name))
    shutil.copytree(str(REPO / "shared"), str(copy / "shared"), ignore=shutil.ignore_patterns("__pycache__"))
    package = copy / "krita_plugin" / PLUGIN
    package.mkdir(parents=True)
    (copy / "krita_plugin" / (PLUGIN + ".desktop")).write_text(STAND_IN_DESKTOP)
    (package / "__init__.py").write_text(STAND_IN_INIT)
    return Installer(copy)


@pytest.fixture
def home(tmp_path: Path) -> KritaHome:
    (tmp_path / "home").mkdir()
    return KritaHome(tmp_path)

