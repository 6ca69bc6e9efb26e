"""Real Krita loads what install.py put in place: kritarunner, Krita's own zip importer, the GUI."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

pytestmark = pytest.mark.krita
HERE = Path(__file__).resolve().parent
needs_kritarunner = pytest.mark.skipif(shutil.which("kritarunner") is None,
                                       reason="kritarunner not installed")


def run_bounded(command: List[str], env: Dict[str, str], cwd: Path, limit: float = 900,
                done_file: Optional[Path] = None, grace: float = 240) -> Tuple[str, bool]:
    """Runs Krita in its own process group, so that on a hang we stop exactly what we started.
    Returns the output and whether it exited by itself (within ``grace`` s of writing ``done_file``).

    Both bounds are deadlines that only guard against a hang: Krita starting (and quitting) on a
    loaded 2-core machine takes minutes.
    """
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(command, env=env, cwd=str(cwd), stdout=log, stderr=subprocess.STDOUT,
                                universal_newlines=True, start_new_session=True)
        deadline = time.monotonic() + limit
        while proc.poll() is None and time.monotonic() < deadline:
            if done_file is not None and done_file.exists():
                deadline = time.monotonic() + grace
                done_file = None  # the grace period starts once, when the file first appears
            time.sleep(0.2)
        exited = proc.poll() is not None
        if not exited:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.seek(0)
        return log.read(), exited


def tail(log: str) -> str:
    """The end of Krita's output without its resource-database chatter."""
    lines = [line for line in log.splitlines() if not line.startswith("krita.lib.resources")]
    return "\n".join(lines[-60:])


def kritarunner_probe(home, out: Path, extra: Optional[Dict[str, str]] = None) -> dict:
    env = home.env()
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(HERE), LF_PROBE_OUT=str(out), **(extra or {}))
    log, _ = run_bounded(["kritarunner", "-s", "krita_probe"], env, home.root)
    assert out.is_file(), tail(log)
    report = json.loads(out.read_text())
    assert "error" not in report, report["error"]
    return report


def assert_loaded_from(installed: dict, pykrita: Path) -> None:
    assert "import_error" not in installed, installed["import_error"]
    assert installed["library"] == "layerfusion"
    assert "Krita/PythonPlugin" in str(installed["service"])
    assert installed["package_file"] == str(pykrita / "layerfusion" / "__init__.py")
    assert installed["protocol_file"] == str(pykrita / "layerfusion" / "_shared" / "protocol.py")


@needs_kritarunner
def test_kritarunner_imports_the_installed_plugin(installer, home) -> None:
    installer.run(home, "--plugin-only")
    report = kritarunner_probe(home, home.root / "probe.json")
    assert report["enabled"] == "true"  # read by Qt from the kritarc Krita uses
    assert report["python"].startswith("3.")
    assert_loaded_from(report["installed"], home.pykrita)


@needs_kritarunner
def test_krita_imports_the_zip_with_its_own_importer(installer, home, tmp_path: Path) -> None:
    installer.run(home, "--zip", "--out", str(tmp_path))
    resources = tmp_path / "resources"
    resources.mkdir()
    report = kritarunner_probe(home, tmp_path / "probe.json", {
        "LF_PROBE_ZIP": str(tmp_path / "layerfusion-krita-plugin.zip"), "LF_PROBE_RESOURCES": str(resources)})
    assert report["imported"] == ["layerfusion"]
    assert_loaded_from(report["installed"], resources / "pykrita")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("krita") is None or shutil.which("xvfb-run") is None,
                    reason="krita or xvfb-run not installed")
def test_krita_window_loads_the_enabled_plugin_at_start(installer, home) -> None:
    installer.run(home, "--plugin-only")
    probe = home.pykrita / "lfprobe"
    probe.mkdir()
    shutil.copy2(str(HERE / "krita_gui_probe.py"), str(probe / "__init__.py"))
    (home.pykrita / "lfprobe.desktop").write_text(
        "[Desktop Entry]\nType=Service\nServiceTypes=Krita/PythonPlugin\nX-KDE-Library=lfprobe\n"
        "X-Python-2-Compatible=false\nName=LayerFusion test probe\n")
    rc = home.kritarc.read_text()  # install.py enabled layerfusion; the test enables its probe beside it
    home.kritarc.write_text(rc.replace("enable_layerfusion=true\n",
                                       "enable_layerfusion=true\nenable_lfprobe=true\n"))
    assert "enable_lfprobe=true" in home.kritarc.read_text()
    out = home.root / "gui.json"
    env = home.env()
    env.pop("QT_QPA_PLATFORM", None)
    env["LF_PROBE_OUT"] = str(out)
    log, exited = run_bounded(["xvfb-run", "-a", "krita", "--nosplash"], env, home.root, done_file=out)
    assert out.is_file(), tail(log)
    report = json.loads(out.read_text())
    assert report["loaded"], tail(log)
    assert report["package_file"] == str(home.pykrita / "layerfusion" / "__init__.py")
    assert report["shared_loaded"]  # the plugin reached the protocol copy install.py put beside it
    # The probe asked Krita to quit: a Python error dialog raised by a plugin on the way out would hold
    # Krita open until we kill it.
    assert exited, "Krita did not quit when asked (a plugin error dialog at shutdown?)\n" + tail(log)
