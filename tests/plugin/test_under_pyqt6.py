"""The whole offscreen plugin suite once more, on PyQt6 (Krita 6's binding), in a child pytest.

The two bindings cannot share a process (two Qt libraries), so the suite that runs here on the
default binding (PyQt5, Krita 5's) is started again with ``LAYERFUSION_QT=PyQt6``; its JUnit report
says how it went. Inside that child run this file skips itself.
"""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.plugin.launch import REPO

HERE = Path(__file__).resolve().parent


def test_binding_is_the_one_asked_for():
    from layerfusion import qt

    wanted = os.environ.get("LAYERFUSION_QT")
    assert qt.API == (wanted or "PyQt5")  # the dev environment has both: PyQt5 comes first
    assert qt.QT_MAJOR == int(qt.API[-1])
    assert qt.QApplication.__module__.startswith(qt.API)


@pytest.mark.slow
def test_the_plugin_suite_passes_on_pyqt6(tmp_path):
    if os.environ.get("LAYERFUSION_QT") == "PyQt6":
        pytest.skip("this is the PyQt6 run already")
    pytest.importorskip("PyQt6.QtWidgets", reason="PyQt6 is in requirements-dev.txt (install.py --dev)")
    report = tmp_path / "pyqt6.xml"
    env = dict(os.environ, LAYERFUSION_QT="PyQt6", QT_QPA_PLATFORM="offscreen")
    log = tmp_path / "pyqt6.log"
    with open(log, "w") as out:
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                "--junitxml", str(report), str(HERE)],
                               cwd=str(REPO), env=env, stdout=out, stderr=subprocess.STDOUT)
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    assert code == 0 and counts["failures"] == 0 and counts["errors"] == 0, log.read_text()[-4000:]
    # the suite really ran there (all of it but this file's own test of the child run)
    assert counts["tests"] - counts["skipped"] >= 100, counts
