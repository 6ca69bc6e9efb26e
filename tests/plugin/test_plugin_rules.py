"""The plugin's own rules: Python 3.10 syntax and nothing Python 3.13 removed, stdlib + Qt + krita only,
Qt (PyQt5 or PyQt6) through qt.py alone."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.plugin.launch import REPO

PACKAGE = REPO / "krita_plugin" / "layerfusion"
FILES = sorted(PACKAGE.glob("*.py"))
STDLIB = set(sys.stdlib_module_names)


# Gone from the standard library by Python 3.13 (PEP 594, distutils in 3.12, imp in 3.12).
REMOVED_BY_313 = {"aifc", "asynchat", "asyncore", "audioop", "cgi", "cgitb", "chunk", "crypt", "distutils",
                  "imghdr", "imp", "mailcap", "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "smtpd",
                  "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib", "lib2to3"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_python_310_syntax_and_small_files(path: Path):
    source = path.read_text()
    ast.parse(source, filename=str(path), feature_version=(3, 10))
    assert len(source.splitlines()) < 400


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_imports_are_stdlib_qt_krita_or_our_own(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top not in REMOVED_BY_313, "%s imports %s, which Python 3.13 no longer has" % (path.name, name)
            if top in ("PyQt5", "PyQt6"):
                assert path.name == "qt.py", "%s imports %s directly; go through qt.py" % (path.name, top)
            elif top == "shared":
                assert path.name == "wire.py", "only wire.py finds the protocol package"
            else:
                assert top in STDLIB or top == "krita", "%s imports %s" % (path.name, name)


def test_qt_is_imported_by_qt_py_alone_even_by_name():
    """importlib calls do not show as imports: no other module names a binding in code at all."""
    for path in FILES:
        if path.name == "qt.py":
            continue
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        tree = ast.parse(code)
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert not any(s.startswith(("PyQt5.", "PyQt6.")) for s in strings), path.name


def test_manifest_names_the_package():
    text = (REPO / "krita_plugin" / "layerfusion.desktop").read_text()
    assert "X-KDE-Library=layerfusion" in text
    assert "ServiceTypes=Krita/PythonPlugin" in text
    assert "X-Python-2-Compatible=false" in text
    assert (REPO / "krita_plugin" / "layerfusion" / "Manual.html").exists()  # X-Krita-Manual names it
