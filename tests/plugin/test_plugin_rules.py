"""The plugin's own rules: Python 3.8 syntax, stdlib + PyQt5 + krita only, PyQt5 in qt.py alone."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.plugin.launch import REPO

PACKAGE = REPO / "krita_plugin" / "layerfusion"
FILES = sorted(PACKAGE.glob("*.py"))
STDLIB = set(sys.stdlib_module_names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_python_38_syntax_and_small_files(path: Path):
    source = path.read_text()
    ast.parse(source, filename=str(path), feature_version=(3, 8))
    assert len(source.splitlines()) < 400


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_imports_are_stdlib_pyqt5_krita_or_our_own(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "PyQt5":
                assert path.name == "qt.py", "%s imports PyQt5 directly; go through qt.py" % path.name
            elif top == "shared":
                assert path.name == "wire.py", "only wire.py finds the protocol package"
            else:
                assert top in STDLIB or top == "krita", "%s imports %s" % (path.name, name)


def test_manifest_names_the_package():
    text = (REPO / "krita_plugin" / "layerfusion.desktop").read_text()
    assert "X-KDE-Library=layerfusion" in text
    assert "ServiceTypes=Krita/PythonPlugin" in text
    assert "X-Python-2-Compatible=false" in text
    assert (REPO / "krita_plugin" / "layerfusion" / "Manual.html").exists()  # X-Krita-Manual names it
