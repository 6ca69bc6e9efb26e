"""The docker's Fast toggle, offscreen: offered only when the server's health names a fast preset, Steps
following it, kept in the settings, and sent as ``"speed": "fast"`` in the job bodies.

The server here is a few lines of http.server on loopback: it answers GET /v1/health with the health
under test and records the bodies POSTed to /v1/jobs (answering 503), so the real HealthMonitor,
controller and body code run unchanged.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

import pytest

from layerfusion import settings as store
from layerfusion.canvas_jobs import Window, add_background_body, add_foreground_body, harmonize_body
from layerfusion.docker import Panel
from layerfusion.qt import QImage, QSettings
from layerfusion.settings import Settings
from layerfusion.targets import ReblendSource, Target
from layerfusion.wire import parse_response, protocol

from tests.plugin.test_docker import H, RecordingDocuments, W, make

PRESET = {"family": "lightning", "source": "sdxl_lightning_4step_lora.safetensors", "sampler": "euler_trailing",
          "guidance": 0.0, "min_steps": 2, "max_steps": 8, "default_steps": 4}


def health_json(fast: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    data: Dict[str, Any] = {"state": "ready", "version": "test", "device": "cpu (float32)", "model": "tiny"}
    if fast is not None:
        data["fast"] = fast
    return data


def health(fast: Optional[Dict[str, Any]] = None) -> Any:
    """A Health the way the HealthMonitor makes one from the server's answer."""
    return parse_response(protocol.Health, health_json(fast))


def test_fast_is_offered_only_with_the_servers_preset(qapp):
    panel = Panel()
    assert panel.fast.text() == "Fast" and not panel.fast.isEnabled()  # no server answered yet
    assert "--fast-lora NAME" in panel.fast.toolTip()
    panel.show_health(health(PRESET))
    assert panel.fast.isEnabled()
    tip = panel.fast.toolTip()
    assert "lightning" in tip and "4 steps" in tip and "2 to 8" in tip and "no guidance" in tip
    panel.show_health(health())  # a server without a preset (or an older one, without the field)
    assert not panel.fast.isEnabled()
    assert "no fast preset" in panel.fast.toolTip() and "serve --fast-lora NAME" in panel.fast.toolTip()
    panel.deleteLater()


def test_steps_follow_the_toggle_and_survive_a_round_trip(qapp):
    panel = Panel()
    panel.apply(Settings(steps=30))
    panel.show_health(health(PRESET))
    assert (panel.steps.value(), panel.steps.maximum()) == (30, protocol.MAX_STEPS)
    panel.fast.click()
    assert panel.fast.isChecked()
    assert (panel.steps.value(), panel.steps.minimum(), panel.steps.maximum()) == (4, 2, 8)
    panel.steps.setValue(6)
    values = panel.values()
    assert (values.fast, values.steps, values.fast_steps) == (True, 30, 6)
    assert values.speed_fields() == {"speed": protocol.Speed.fast, "steps": 6}

    again = Panel()  # values() -> apply() keeps both kinds of steps
    again.show_health(health(PRESET))
    again.apply(values)
    assert again.fast.isChecked() and again.steps.value() == 6
    again.fast.click()
    assert not again.fast.isChecked()
    assert (again.steps.value(), again.steps.minimum(), again.steps.maximum()) == (30, 1, protocol.MAX_STEPS)
    assert again.values().speed_fields() == {"speed": protocol.Speed.quality, "steps": 30}
    again.fast.click()  # switching on again starts at the preset's distilled steps
    assert again.steps.value() == 4

    panel.show_health(health())  # the server has no preset: Fast goes off, the quality steps come back
    assert not panel.fast.isChecked() and panel.steps.value() == 30 and panel.steps.maximum() == protocol.MAX_STEPS
    panel.deleteLater()
    again.deleteLater()


def test_an_unanswered_server_keeps_the_choice(qapp):
    panel = Panel()
    panel.apply(Settings(fast=True, steps=30, fast_steps=5))
    panel.show_health(None)  # offline: whether it has a preset is not known
    assert panel.fast.isChecked() and not panel.fast.isEnabled()
    assert (panel.values().fast, panel.values().fast_steps) == (True, 5)
    panel.show_health(health(PRESET))
    assert panel.fast.isEnabled() and panel.steps.value() == 5 and panel.steps.maximum() == 8
    panel.deleteLater()


def test_fast_settings_persist(tmp_path):
    path = str(tmp_path / "layerfusion.ini")
    store.save(QSettings(path, QSettings.Format.IniFormat), Settings(fast=True, steps=30, fast_steps=6))
    loaded = store.load(QSettings(path, QSettings.Format.IniFormat))  # ini files hand back strings
    assert (loaded.fast, loaded.steps, loaded.fast_steps) == (True, 30, 6)
    assert store.load(QSettings(str(tmp_path / "empty.ini"), QSettings.Format.IniFormat)).fast is False


def png_b64(qapp, width: int, height: int, alpha: bool) -> str:
    import base64

    from layerfusion.pixels import encode_png

    image = QImage(width, height, QImage.Format.Format_ARGB32 if alpha else QImage.Format.Format_RGB32)
    image.fill(0x80336699)
    return base64.b64encode(encode_png(image)).decode("ascii")


def test_canvas_job_bodies_carry_the_speed(qapp):
    fast = Settings(foreground_prompt="a lamp", background_prompt="a desk", fast=True, steps=30, fast_steps=4)
    window = Window(0, 0, 64, 64, 64, 64)
    bodies = [add_foreground_body(fast, window, png_b64(qapp, 64, 64, False)),
              add_background_body(fast, png_b64(qapp, 64, 64, True), "lamp"),
              harmonize_body(fast, [(png_b64(qapp, 64, 64, True), "lamp")], png_b64(qapp, 64, 64, False))]
    for body in bodies:
        assert (body["speed"], body["steps"]) == ("fast", 4), body["kind"]
    quality = add_background_body(Settings(background_prompt="a desk", steps=30), png_b64(qapp, 64, 64, True))
    assert quality.get("speed", "quality") == "quality" and quality["steps"] == 30


class Recorder(BaseHTTPRequestHandler):
    health: Dict[str, Any] = {}
    posted: List[Dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == protocol.API_PREFIX + "/health":
            self._answer(200, self.health)
        else:
            self._answer(404, {"error": {"code": "not_found", "message": "not here"}})

    def do_POST(self) -> None:
        data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == protocol.API_PREFIX + "/jobs":
            self.posted.append(data)
        self._answer(503, {"error": {"code": "busy", "message": "recorded, not run"}})


@pytest.fixture
def recorder():
    handler = type("Handler", (Recorder,), {"health": health_json(PRESET), "posted": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


class ReblendDocuments(RecordingDocuments):
    def reblend_source(self) -> ReblendSource:
        params = {"foreground_prompt": "a glass", "background_prompt": "a table", "steps": 4, "speed": "fast"}
        pixels = bytes(W * H * 4)
        return ReblendSource("doc", "group-1", Target("doc", 5, 7, W, H, 128, 64), pixels, pixels, params)


def test_generate_and_reblend_send_the_speed(qapp, spin, recorder):
    handler, url = recorder
    panel, controller, _, _ = make(qapp, url, docs=ReblendDocuments(), steps=30)
    spin(lambda: panel.fast.isEnabled(), 30)  # the real monitor read the preset from GET /v1/health
    assert "lightning" in panel.fast.toolTip()
    panel.fast.click()
    controller.generate()
    spin(lambda: len(handler.posted) == 1 and not controller.runs, 30)
    assert (handler.posted[0]["speed"], handler.posted[0]["steps"]) == ("fast", 4)
    assert handler.posted[0]["kind"] == "generate"
    assert controller.reblend()
    spin(lambda: len(handler.posted) == 2 and not controller.runs, 30)
    assert (handler.posted[1]["kind"], handler.posted[1]["speed"], handler.posted[1]["steps"]) == ("reblend", "fast", 4)

    panel.fast.click()  # off: quality again, and a group made fast re-blends at the docker's steps
    controller.generate()
    spin(lambda: len(handler.posted) == 3 and not controller.runs, 30)
    assert handler.posted[2].get("speed", "quality") == "quality" and handler.posted[2]["steps"] == 30
    assert controller.reblend()
    spin(lambda: len(handler.posted) == 4 and not controller.runs, 30)
    assert handler.posted[3].get("speed", "quality") == "quality" and handler.posted[3]["steps"] == 30
    controller.shutdown()
