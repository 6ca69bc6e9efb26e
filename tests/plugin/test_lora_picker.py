"""The LoRA picker: its rows, its settings, and what the controller sends with it.

The request bodies are read by a small scripted HTTP server on loopback (``ScriptedServer``): it records
exactly what the plugin's real network code posted and answers what a test tells it to, so the refusal
and missing-key paths run without depending on the backend's LoRA support. One test also runs against
the real backend when that server lists LoRAs.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

import pytest

from layerfusion import settings as store
from layerfusion.controller import ReblendSource, Target
from layerfusion.lora_picker import LoraPicker, lora_infos
from layerfusion.wire import protocol

from tests.plugin.test_docker import H, RecordingDocuments, W, finished_jobs, make

INK = {"name": "styles/ink.safetensors", "base": "tiny", "format": "kohya", "size": 10, "usable": True,
       "reason": ""}
CLAY = {"name": "clay.safetensors", "base": "tiny", "format": "peft", "size": 10, "usable": True, "reason": ""}
SD15 = {"name": "old/sd15.safetensors", "base": "sd1", "format": "kohya", "size": 10, "usable": False,
        "reason": "made for SD 1.5, the server runs tiny"}


class ScriptedServer:
    """Health 'ready', a settable /v1/models answer, and POST /v1/jobs recorded and answered as told."""

    def __init__(self) -> None:
        self.models: Tuple[int, Any] = (200, {"models": [], "loaded": "fake"})
        self.job_answer: Tuple[int, Any] = (422, {"error": {"code": "invalid_lora", "message": "refused"}})
        self.posted: List[Dict[str, Any]] = []
        self.model_gets = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/v1/health":
                    self._send(200, {"state": "ready", "version": "0", "model": "scripted", "device": "cpu"})
                elif path == "/v1/models":
                    owner.model_gets += 1
                    self._send(*owner.models)
                elif path == "/v1/jobs":
                    self._send(200, {"jobs": []})
                else:
                    self._send(404, {"error": {"code": "not_found", "message": "no such path"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                owner.posted.append(json.loads(self.rfile.read(length).decode("utf-8")))
                self._send(*owner.job_answer)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    server = ScriptedServer()
    yield server
    server.close()


def connected(panel, controller, spin, server: Optional[ScriptedServer] = None) -> None:
    spin(lambda: panel.connection.property("state") == "connected")
    spin(lambda: not controller.catalog.busy and (server is None or server.model_gets >= 1))


# ---- the widget alone ----------------------------------------------------------------------------
def test_rows_add_remove_and_limit(qapp):
    picker = LoraPicker()
    changes: List[int] = []
    picker.changed.connect(lambda: changes.append(1))
    picker.add_button.click()
    assert len(picker.rows) == 1 and changes
    row = picker.rows[0]
    assert row.strength.value() == 1.0
    assert (row.strength.minimum(), row.strength.maximum(), row.strength.singleStep()) == (-4.0, 4.0, 0.05)
    for _ in range(protocol.MAX_LORAS + 3):
        picker.add_button.click()
    assert len(picker.rows) == protocol.MAX_LORAS
    assert not picker.add_button.isEnabled()
    assert picker.add_row("one too many") is None
    picker.rows[2].remove.click()
    assert len(picker.rows) == protocol.MAX_LORAS - 1 and picker.add_button.isEnabled()
    assert row in picker.rows  # the clicked row went, not another


def test_values_round_trip_and_blank_rows_are_skipped(qapp):
    picker = LoraPicker()
    wanted = [protocol.LoraChoice("styles/ink.safetensors", 0.75), protocol.LoraChoice("clay.safetensors", -1.5)]
    picker.set_choices(wanted)
    picker.add_row("   ")  # a row the artist added and left empty
    assert picker.choices() == wanted
    picker.set_choices([protocol.LoraChoice("x", 4.0)])
    assert len(picker.rows) == 1 and picker.choices() == [protocol.LoraChoice("x", 4.0)]
    picker.rows[0].strength.setValue(9.0)  # the spin box holds the protocol's range
    assert picker.choices()[0].strength == 4.0


def test_server_list_fills_the_names_and_disables_the_unusable(qapp):
    picker = LoraPicker()
    picker.add_row("typed/by-hand.safetensors", 0.5)
    picker.set_available(lora_infos({"loras": [SD15, INK, CLAY]}))
    combo = picker.rows[0].name
    names = [combo.itemText(i) for i in range(combo.count())]
    assert names == [INK["name"], CLAY["name"], SD15["name"]]  # usable first
    assert picker.usable_names() == [INK["name"], CLAY["name"]]
    bad = combo.model().item(2)
    assert not bad.isEnabled() and bad.toolTip() == SD15["reason"]
    assert combo.model().item(0).isEnabled()
    assert combo.currentText() == "typed/by-hand.safetensors"  # the row keeps its name
    assert "not usable" in picker.status.text()
    picker.add_row()
    assert picker.rows[1].name.count() == 3  # new rows get the list too


def test_model_list_without_loras_or_with_odd_entries():
    assert lora_infos({"models": [], "loaded": "tiny"}) == []
    assert lora_infos(None) == []
    infos = lora_infos({"loras": [INK, {"nonsense": 1}, "x", dict(CLAY, newer_field=3)]})
    assert [i.name for i in infos] == [INK["name"], CLAY["name"]]


# ---- settings --------------------------------------------------------------------------------------
def test_loras_persist_in_settings(qapp, tmp_path, scripted):
    from layerfusion.qt import QSettings

    panel, controller, _, saved = make(qapp, scripted.url)
    panel.loras.add_row("styles/ink.safetensors", 0.65)
    panel.loras.add_row("clay.safetensors", -2.0)
    assert saved and saved[-1].lora_choices() == panel.loras.choices()
    path = str(tmp_path / "lf.ini")
    store.save(QSettings(path, QSettings.Format.IniFormat), saved[-1])
    controller.shutdown()
    loaded = store.load(QSettings(path, QSettings.Format.IniFormat))  # a new Krita session reads the file
    assert loaded.lora_choices() == [protocol.LoraChoice("styles/ink.safetensors", 0.65),
                                     protocol.LoraChoice("clay.safetensors", -2.0)]
    panel, controller, _, _ = make(qapp, scripted.url, loras=loaded.loras)
    assert [(r.name.currentText(), r.strength.value()) for r in panel.loras.rows] == [
        ("styles/ink.safetensors", 0.65), ("clay.safetensors", -2.0)]
    controller.shutdown()


def test_damaged_lora_settings_and_params_fall_back():
    assert store.Settings(loras="{not json").lora_choices() == []
    assert store.Settings().lora_choices() == []
    assert store.parse_loras(None) == []
    params = [{"name": "a", "strength": 9}, {"name": ""}, {"strength": 1}, "b", {"name": "c", "strength": "x"}]
    assert store.parse_loras(params) == [protocol.LoraChoice("a", 4.0), protocol.LoraChoice("c", 1.0)]


# ---- what is sent ----------------------------------------------------------------------------------
def test_generate_sends_the_loras_and_shows_the_servers_refusal(qapp, spin, scripted):
    message = "no LoRA named 'missing.safetensors' (looked in /models/loras)"
    scripted.job_answer = (422, {"error": {"code": "invalid_lora", "message": message, "field": "loras[1].name"}})
    panel, controller, docs, _ = make(qapp, scripted.url)
    panel.loras.set_choices([protocol.LoraChoice("styles/ink.safetensors", 0.8),
                             protocol.LoraChoice("missing.safetensors", 1.0)])
    done = finished_jobs(controller)
    assert controller.generate() is not None
    spin(lambda: bool(done))
    [body] = scripted.posted
    assert body["kind"] == "generate"
    assert body["loras"] == [{"name": "styles/ink.safetensors", "strength": 0.8},
                             {"name": "missing.safetensors", "strength": 1.0}]
    assert done[0].state == "failed"
    assert panel.message.property("error")
    assert message in panel.message.text() and "loras[1].name" in panel.message.text()
    assert docs.inserted == []  # nothing half-inserted
    controller.shutdown()


def test_generate_without_loras_sends_an_empty_list_and_duplicates_are_refused_here(qapp, spin, scripted):
    panel, controller, _, _ = make(qapp, scripted.url)
    done = finished_jobs(controller)
    controller.generate()
    spin(lambda: bool(done))
    panel.loras.set_choices([protocol.LoraChoice("a", 1.0), protocol.LoraChoice("a", 0.5)])
    assert controller.generate() is None  # the protocol's own check, before anything is posted
    assert "listed twice" in panel.message.text() and panel.message.property("error")
    assert not controller.runs
    controller.shutdown()
    assert len(scripted.posted) == 1 and scripted.posted[0]["loras"] == []


class StoredGroupDocuments(RecordingDocuments):
    """A generated group already on the canvas, with the params its job ran with."""

    def __init__(self, params: Dict[str, Any]) -> None:
        super().__init__()
        self.params = params

    def reblend_source(self) -> ReblendSource:
        pixels = bytes([40, 80, 120, 255]) * (W * H)
        return ReblendSource("doc", "group-1", Target("doc", 5, 7, W, H, 128, 64), pixels, pixels, self.params)


@pytest.mark.parametrize("stored, sent", [
    ([{"name": "styles/ink.safetensors", "strength": 0.4}], [{"name": "styles/ink.safetensors", "strength": 0.4}]),
    (None, []),  # a group from before LoRAs: none, whatever the picker holds
])
def test_reblend_uses_the_groups_loras_not_the_pickers(qapp, spin, scripted, stored, sent):
    params: Dict[str, Any] = {"foreground_prompt": "a glass", "background_prompt": "a table", "steps": 3,
                              "guidance": 5.0, "seed": 4}
    if stored is not None:
        params["loras"] = stored
    panel, controller, docs, _ = make(qapp, scripted.url, docs=StoredGroupDocuments(params))
    panel.loras.set_choices([protocol.LoraChoice("clay.safetensors", 2.0)])
    done = finished_jobs(controller)
    assert controller.reblend()
    spin(lambda: bool(done))
    [body] = scripted.posted
    assert body["kind"] == "reblend" and body["loras"] == sent
    assert "Re-blend failed: refused" in panel.message.text()
    assert docs.replaced == []
    controller.shutdown()


# ---- the list from the server ----------------------------------------------------------------------
def test_list_is_fetched_on_connect_and_refresh(qapp, spin, scripted):
    scripted.models = (200, {"models": [], "loaded": "fake", "loras": [INK, SD15]})
    panel, controller, _, _ = make(qapp, scripted.url)
    connected(panel, controller, spin, scripted)
    assert panel.loras.usable_names() == [INK["name"]]
    scripted.models = (200, {"models": [], "loaded": "fake", "loras": [INK, CLAY]})
    panel.loras.refresh_button.click()
    spin(lambda: panel.loras.usable_names() == [INK["name"], CLAY["name"]])
    assert not panel.loras.status.property("error")
    controller.shutdown()


def test_server_without_loras_key_is_fine(qapp, spin, scripted):
    panel, controller, _, _ = make(qapp, scripted.url)  # answers {"models": [], "loaded": "fake"}
    connected(panel, controller, spin, scripted)
    assert panel.loras.available == [] and not panel.loras.status.property("error")
    assert panel.loras.status.text() == "The server lists no LoRAs."
    panel.loras.add_row("typed.safetensors")  # typing a name still works
    assert panel.loras.choices() == [protocol.LoraChoice("typed.safetensors", 1.0)]
    controller.shutdown()


def test_listing_failure_is_one_short_line_in_the_panel(qapp, spin, scripted):
    scripted.models = (500, {"error": {"code": "internal", "message": "the LoRA folder is unreadable"}})
    panel, controller, _, _ = make(qapp, scripted.url)
    connected(panel, controller, spin, scripted)
    assert panel.loras.status.property("error")
    assert panel.loras.status.text() == "Could not list the LoRAs: the LoRA folder is unreadable"
    assert not panel.message.property("error")  # the job line stays the job's
    gets = scripted.model_gets
    panel.loras.refresh_button.click()
    panel.loras.refresh_button.click()  # a second click while the first is out asks nothing more
    spin(lambda: not controller.catalog.busy)
    assert scripted.model_gets == gets + 1
    controller.shutdown()


def test_real_server_lists_loras_and_names_an_unknown_one(qapp, spin, live_backend):
    import urllib.request

    with urllib.request.urlopen(live_backend.url + "/v1/models", timeout=10) as answer:
        if "loras" not in json.load(answer):
            pytest.skip("this backend does not list LoRAs yet")
    panel, controller, docs, _ = make(qapp, live_backend.url)
    connected(panel, controller, spin)
    assert not panel.loras.status.property("error"), panel.loras.status.text()
    panel.loras.set_choices([protocol.LoraChoice("no-such-lora.safetensors", 1.0)])
    done = finished_jobs(controller)
    controller.generate()
    spin(lambda: bool(done))
    assert done[0].state == "failed" and docs.inserted == []
    assert "no-such-lora.safetensors" in panel.message.text() and panel.message.property("error")
    controller.shutdown()
