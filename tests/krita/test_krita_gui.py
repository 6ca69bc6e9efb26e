"""LayerFusion in the real Krita GUI under Xvfb: docker, Tools actions, undo, and a screenshot.

A test-only plugin (gui_selftest/) drives the session from inside Krita and writes what it saw.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.plugin.launch import REPO

pytestmark = pytest.mark.krita
HERE = Path(__file__).resolve().parent
W, H, DX, DY = 256, 192, 32, 24


def install_profile(home: Path) -> dict:
    """A throw-away Krita profile holding the plugin (with shared/ copied in, as install.py does)."""
    pykrita = home / "data" / "krita" / "pykrita"
    pykrita.mkdir(parents=True)
    shutil.copy(REPO / "krita_plugin" / "layerfusion.desktop", pykrita)
    shutil.copytree(REPO / "krita_plugin" / "layerfusion", pykrita / "layerfusion",
                    ignore=shutil.ignore_patterns("__pycache__", "server.json"))
    shutil.copytree(REPO / "shared", pykrita / "layerfusion" / "_shared", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(HERE / "gui_selftest" / "lf_selftest.desktop", pykrita)
    shutil.copytree(HERE / "gui_selftest" / "lf_selftest", pykrita / "lf_selftest")
    config = home / "config"
    config.mkdir()
    (config / "kritarc").write_text("[python]\nenable_layerfusion=true\nenable_lf_selftest=true\n")
    return {"HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(config)}


@pytest.fixture(scope="module")
def gui(live_backend, tmp_path_factory):
    if shutil.which("krita") is None or shutil.which("xvfb-run") is None:
        pytest.skip("Krita or xvfb-run is not installed; CI installs both")
    work = tmp_path_factory.mktemp("krita-gui")
    artifacts = REPO / "artifacts"
    artifacts.mkdir(exist_ok=True)
    cfg = {"url": live_backend.url, "width": W, "height": H, "dx": DX, "dy": DY,
           "result": str(work / "gui.json"), "screenshot": str(artifacts / "krita_gui.png")}
    (work / "cfg.json").write_text(json.dumps(cfg))
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)  # the real xcb platform on Xvfb, not offscreen
    env.update(install_profile(work / "home"), LF_GUI_CONFIG=str(work / "cfg.json"))
    log = open(work / "krita.log", "w")
    proc = subprocess.Popen(
        ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "krita", "--nosplash"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    result = Path(cfg["result"])
    # Guards against a hang, not timing assertions: Krita under Xvfb on a loaded machine is slow to
    # start, to run the jobs, and to quit.
    deadline = time.monotonic() + 1500
    while proc.poll() is None and time.monotonic() < deadline and not result.exists():
        time.sleep(0.2)
    try:
        proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # only the session this test started
        proc.wait(timeout=30)
    if not result.exists():
        raise AssertionError("Krita wrote no result; log tail:\n" + (work / "krita.log").read_text(errors="replace")[-3000:])
    facts = json.loads(result.read_text())
    if "error" in facts:
        raise AssertionError("the GUI self-test failed inside Krita:\n" + facts["error"])
    facts["screenshot"] = cfg["screenshot"]
    return facts


def test_docker_and_actions_exist(gui):
    assert gui["docker_found"]
    assert gui["actions"] == [True, True]
    assert gui["connection_text"].startswith("Connected")


def test_generate_action_inserts_the_group(gui):
    assert gui["generate_state"] == "done"
    assert gui["children"] == ["Background", "Foreground", "Blend"]


def test_regenerate_blend_is_one_undo_step(gui):
    assert gui["reblend_state"] == "done"
    assert gui["children_after_reblend"] == ["Background", "Foreground", "Blend (previous)", "Blend"]  # one Blend
    assert gui["top_blend_changed"]
    # the previous blend back on top; its name is put right when the group is next read
    assert gui["children_after_undo"] == ["Background", "Foreground", "Blend (previous)"]
    assert gui["children_after_undo_read"] == ["Background", "Foreground", "Blend"]
    assert gui["blend_restored_by_undo"]


def test_generation_is_one_undo_step(gui):
    assert gui["top_level_after_second_undo"] == ["Background"]
    assert len(gui["top_level_after_redo"]) == 2


def test_add_object_action_inserts_one_group_undone_in_one_step(gui):
    assert gui["canvas_actions"] == [True, True, True]
    assert gui["add_object_state"] == "done", gui["add_object_message"]
    names = gui["top_level_after_add_object"]
    assert len(names) == 3 and names[-1].startswith("LayerFusion object: a wine glass")
    assert gui["add_object_children"] == ["Foreground", "Blend"]
    assert gui["add_object_left_the_rest"]
    assert gui["top_level_after_add_object_undo"] == names[:2]


@pytest.mark.parametrize("kind, group", [("add_background", "LayerFusion background: a wooden table at dusk"),
                                         ("harmonize", "LayerFusion harmonized")])
def test_layer_jobs_insert_one_group_undone_in_one_step(gui, kind, group):
    before = gui["top_level_before_layer_jobs"]
    assert gui[kind + "_started"]
    assert gui[kind + "_state"][0] == "done", gui[kind + "_state"][1]
    top = gui[kind + "_top_level"]
    assert top[:-1] == before and top[-1].startswith(group)  # over the painted layer, the top one
    assert gui[kind + "_left_the_rest"]
    assert gui[kind + "_top_level_after_undo"] == before


def test_select_foreground_action_is_registered(gui):
    assert gui["select_action"]


def test_layers_docker_lists_the_group(gui):
    assert gui["top_level_at_end"] == gui["top_level_after_redo"]  # Background and the LayerFusion group
    assert gui["layer_docker_rows"] == 2


def test_docker_is_visible_with_generate_inside_the_window(gui):
    x, y, w, h, button_visible, dock_visible = gui["generate_button"]
    wx, wy, ww, wh = gui["window"]
    assert dock_visible and button_visible
    assert w > 40 and h > 10  # not squeezed to nothing
    assert wx <= x and x + w <= wx + ww and wy <= y and y + h <= wy + wh
    # ... and inside the docker's first view (no scrolling), at the size Krita gives a new docker
    vx, vy, vw, vh = gui["docker_view"]
    assert vx <= x and x + w <= vx + vw and vy <= y and y + h <= vy + vh, (gui["generate_button"], gui["docker_view"])


def test_committed_screenshot_is_a_real_krita_window():
    """docs/screenshot.png is this test's screenshot (artifacts/krita_gui.png), copied by hand."""
    data = (REPO / "docs" / "screenshot.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1600, 1000)  # the Xvfb screen the GUI test runs on


def test_screenshot_written(gui):
    shot = Path(gui["screenshot"])
    assert gui["screenshot_saved"] and shot.stat().st_size > 10000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
