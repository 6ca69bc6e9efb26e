"""The docker panel and its controller, offscreen, against a real tiny backend.

Krita itself is not here: the document side is a small recorder written for these tests (the real
one, layers.py, is tested inside Krita in tests/krita/).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List

from layerfusion.controller import Controller, ReblendSource, Target, UserError
from layerfusion.docker import Panel
from layerfusion.settings import Settings

from tests.plugin.launch import unused_port

W, H = 100, 60  # the canvas rectangle; the model works at a 64-multiple size and results come back


@dataclass
class RecordingDocuments:
    open_docs: set = field(default_factory=lambda: {"doc"})
    inserted: List[Dict[str, Any]] = field(default_factory=list)
    replaced: List[bytes] = field(default_factory=list)
    has_document: bool = True

    def generation_target(self, target_pixels: int) -> Target:
        if not self.has_document:
            raise UserError("Open or create a document first.")
        return Target("doc", 5, 7, W, H, 128, 64)

    def is_open(self, doc: Any) -> bool:
        return doc in self.open_docs

    def insert(self, target, layers, params, job_id):
        self.inserted.append({"layers": layers, "params": params, "job_id": job_id})
        return job_id

    def insert_steps(self, target, layers, params, job_id):
        yield  # the controller gives the event loop a turn here, as between Krita's layers
        return self.insert(target, layers, params, job_id)

    def reblend_source(self) -> ReblendSource:
        last = self.inserted[-1]
        return ReblendSource("doc", "group-1", Target("doc", 5, 7, W, H, 128, 64),
                             last["layers"]["foreground"], last["layers"]["background"], last["params"])

    def replace_steps(self, source, blend, params):
        yield  # the controller gives the event loop a turn here, as between Krita's calls
        self.replaced.append(blend)


def make(qapp, url: str, docs=None, **settings):
    panel = Panel()
    saved: List[Settings] = []
    base = dict(server_url=url, foreground_prompt="a wine glass", background_prompt="a table",
                steps=2, seed=11, random_seed=False, target_pixels=128 * 64)
    base.update(settings)
    values = Settings(**base)
    docs = docs or RecordingDocuments()
    controller = Controller(panel, docs, values, saved.append)
    return panel, controller, docs, saved


def finished_jobs(controller):
    done: List[Any] = []
    controller.job_finished.connect(done.append)
    return done


def test_connection_state_is_shown(qapp, live_backend, spin):
    panel, controller, _, _ = make(qapp, live_backend.url)
    spin(lambda: panel.connection.property("state") == "connected")
    assert "tiny" in panel.connection.text()
    assert not panel.server_button.isEnabled()
    controller.shutdown()


def test_offline_server_is_shown_with_reason(qapp, spin):
    with unused_port() as port:
        panel, controller, _, _ = make(qapp, "http://127.0.0.1:%d" % port)
        spin(lambda: "nothing is listening" in panel.connection.text())
    assert panel.connection.property("state") == "offline"
    assert panel.server_button.isEnabled()
    controller.shutdown()


def test_generate_inserts_scaled_layers_and_records_history(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url)
    done = finished_jobs(controller)
    steps_seen: List[int] = []
    panel.progress.valueChanged.connect(steps_seen.append)
    panel.generate.click()
    assert panel.cancel.isEnabled()
    spin(lambda: bool(done))
    assert done[0].state == "done", panel.message.text()
    [insert] = docs.inserted
    assert set(insert["layers"]) == {"foreground", "background", "blend"}
    for data in insert["layers"].values():
        assert len(data) == W * H * 4  # scaled back from 128x64 to the canvas rectangle
    alphas = set(insert["layers"]["foreground"][3::4])
    assert len(alphas) > 2, "the foreground has no partial alpha"
    assert insert["params"]["seed"] == 11
    assert max(steps_seen) >= 2
    assert "Inserted" in panel.message.text() and not panel.message.property("error")
    assert not panel.cancel.isEnabled()
    job_id = insert["job_id"]
    spin(lambda: panel.history.count() >= 1 and panel.history.item(0).data(0x0100) == job_id)
    assert not panel.history.item(0).icon().isNull()
    controller.shutdown()


def test_blend_none_inserts_two_layers(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url, blend="none")
    done = finished_jobs(controller)
    panel.generate.click()
    spin(lambda: bool(done))
    assert set(docs.inserted[0]["layers"]) == {"foreground", "background"}
    controller.shutdown()


def test_missing_prompt_and_missing_document_are_explained(qapp, live_backend):
    panel, controller, docs, _ = make(qapp, live_backend.url)
    panel.foreground.setPlainText("  ")
    assert controller.generate() is None
    assert "foreground prompt" in panel.message.text() and panel.message.property("error")
    panel.foreground.setPlainText("a glass")
    docs.has_document = False
    assert controller.generate() is None
    assert "Open or create a document" in panel.message.text()
    controller.shutdown()


def test_cancel_button_stops_the_job(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url, steps=200)
    done = finished_jobs(controller)
    panel.progress.valueChanged.connect(lambda v: v >= 1 and panel.cancel.isEnabled() and panel.cancel.click())
    panel.generate.click()
    spin(lambda: bool(done))
    assert done[0].state == "cancelled"
    assert "cancelled" in panel.message.text()
    assert docs.inserted == []
    assert not panel.cancel.isEnabled()
    controller.shutdown()


def test_closed_document_gets_nothing(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url)
    done = finished_jobs(controller)
    panel.generate.click()
    docs.open_docs.clear()  # the artist closed the document while the job ran
    spin(lambda: bool(done))
    spin(lambda: "closed" in panel.message.text())
    assert docs.inserted == []
    controller.shutdown()


def test_server_refusal_shown_in_plain_words(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url)
    docs.generation_target = lambda px: Target("doc", 0, 0, 4000, 4000, 2048, 2048)  # past the tiny limit
    done = finished_jobs(controller)
    panel.generate.click()
    spin(lambda: bool(done))
    assert panel.message.property("error")
    assert "Generation failed" in panel.message.text() and "too large" in panel.message.text()
    controller.shutdown()


def test_reblend_and_reinsert_from_history(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url)
    done = finished_jobs(controller)
    panel.generate.click()
    spin(lambda: len(done) == 1)
    assert panel.latency.text() == ""
    panel.reblend.click()
    spin(lambda: len(done) == 2)
    assert done[1].kind == "reblend" and done[1].state == "done", panel.message.text()
    assert re.fullmatch(r"Last re-blend \d+\.\d s", panel.latency.text()), panel.latency.text()
    assert len(docs.replaced) == 1 and len(docs.replaced[0]) == W * H * 4
    spin(lambda: panel.history.count() >= 1)
    panel.reinsert_requested.emit(panel.history.item(0).data(0x0100))
    spin(lambda: len(docs.inserted) == 2)
    assert docs.inserted[1]["job_id"] == docs.inserted[0]["job_id"]
    controller.shutdown()


def test_history_comes_from_the_server(qapp, live_backend, spin):
    first, c1, _, _ = make(qapp, live_backend.url)
    done = finished_jobs(c1)
    first.generate.click()
    spin(lambda: bool(done))
    c1.shutdown()
    panel, controller, docs, _ = make(qapp, live_backend.url)  # a new session: nothing cached locally
    spin(lambda: panel.history.count() >= 1)
    job_id = panel.history.item(0).data(0x0100)
    assert controller.history[job_id].images == {}
    panel.reinsert_requested.emit(job_id)
    spin(lambda: len(docs.inserted) == 1)
    assert set(docs.inserted[0]["layers"]) >= {"foreground", "background"}
    controller.shutdown()


def test_edits_are_saved_and_seed_dice_rolls(qapp, live_backend):
    panel, controller, _, saved = make(qapp, live_backend.url)
    panel.steps.setValue(9)
    assert saved and saved[-1].steps == 9
    before = panel.seed.value()
    panel.dice.click()
    panel.dice.click()
    assert panel.seed.value() != before  # two rolls both landing on the old seed: odds 1 in 2**64
    assert saved[-1].seed == int(panel.seed.value())
    panel.random_seed.setChecked(True)
    assert not panel.seed.isEnabled() and saved[-1].random_seed
    controller.shutdown()


def test_two_documents_with_jobs_in_flight(qapp, live_backend, spin):
    panel, controller, docs, _ = make(qapp, live_backend.url)
    docs.open_docs = {"doc", "other"}
    targets = iter([Target("doc", 0, 0, W, H, 128, 64), Target("other", 0, 0, 64, 64, 64, 64)])
    docs.generation_target = lambda px: next(targets)
    seen_docs = []
    original = docs.insert
    docs.insert = lambda target, layers, params, job_id: (seen_docs.append(target.document),
                                                          original(target, layers, params, job_id))[1]
    done = finished_jobs(controller)
    first, second = controller.generate(), controller.generate()
    assert first is not None and second is not None and len(controller.runs) == 2
    spin(lambda: len(done) == 2)
    assert sorted(seen_docs) == ["doc", "other"]
    sizes = sorted(len(i["layers"]["background"]) for i in docs.inserted)
    assert sizes == [64 * 64 * 4, W * H * 4]
    controller.shutdown()


def test_unexpected_failure_becomes_a_sentence(qapp, live_backend):
    panel, controller, docs, _ = make(qapp, live_backend.url)

    def broken(px):
        raise ZeroDivisionError("division by zero")

    docs.generation_target = broken
    assert controller.generate() is None
    assert panel.message.text() == "Something went wrong: division by zero"
    assert panel.message.property("error")
    controller.shutdown()
