"""Runs INSIDE real Krita (kritarunner): re-blend while dragging, against a backend with a fast preset.

With Auto re-blend and Fast on, the scenario drags the group's Foreground in small moves (each one
waited for until the watcher has seen it) and reports what the watcher and the controller did: how
many live re-blends went out, what became of each job, how many Blend layers were put in, and where
the landed Blend was made for. The server's one worker is held by a long job at chosen moments, so a
live re-blend waits behind it: the drag starts no other meanwhile, and the settle re-blend certainly
cancels a stale one rather than merely outrunning it. Then the same with the document closed mid-drag.
test_krita_live.py holds the assertions.
"""
import json
import time
import urllib.request

from scenario_report import report


def spin(condition, limit=900.0, watch=None):  # a hang guard only: a loaded machine runs jobs slowly
    from PyQt5.QtWidgets import QApplication

    app = QApplication.instance()
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting inside Krita")
        app.processEvents()
        if watch is not None:
            watch()
        time.sleep(0.005)


def call(url, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + "/v1" + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def hold_the_worker(url):
    """A long quality job on the server's one worker; returns its id once it runs."""
    job = call(url, "/jobs", {"kind": "generate", "foreground_prompt": "a rock", "background_prompt": "sand",
                              "width": 64, "height": 64, "steps": 200, "seed": 1})["id"]
    spin(lambda: call(url, "/jobs/" + job)["state"] == "running")
    return job


def run(cfg, facts):
    from krita import Krita

    from layerfusion.auto_reblend import AutoReblend
    from layerfusion.controller import Controller
    from layerfusion.docker import Panel
    from layerfusion.layers import find_group, member, read_records
    from layerfusion.reblend import KritaSide, blend_layers, blended_box, read_source
    from layerfusion.settings import Settings

    url, W, H = cfg["url"], cfg["width"], cfg["height"]
    app = Krita.instance()
    doc = app.createDocument(W, H, "lf-live", "RGBA", "U8", "", 300.0)
    side = KritaSide(doc)
    panel = Panel()
    settings = Settings(server_url=url, foreground_prompt="a wine glass", background_prompt="a wooden table",
                        seed=5, random_seed=False, target_pixels=128 * 128, strength=0.6, fast=True,
                        auto_reblend=True, live_interval_ms=cfg["interval_ms"])
    controller = Controller(panel, side, settings)
    finished = []
    controller.job_finished.connect(finished.append)
    spin(lambda: panel.fast.isEnabled())  # the monitor read the server's fast preset from its health
    facts["live_box_enabled"] = panel.live_interval.isEnabled()

    controller.generate()
    spin(lambda: len(finished) == 1)
    facts["generate"] = [finished[0].state, finished[0].params.get("speed"), finished[0].params.get("steps")]
    group = find_group(doc)
    key = group.uniqueId().toString()
    fg = member(doc, group, "foreground")

    auto = AutoReblend(controller, side)
    auto.set_enabled(True)
    spin(lambda: auto.seen(key) is not None)  # the watcher knows where the foreground lies
    tops = set()  # every distinct top Blend layer seen between two event rounds: one per insertion

    def see_top():
        blends = blend_layers(doc, group) if side.is_open(doc) else []
        if blends:
            tops.add(blends[-1].uniqueId().toString())

    see_top()
    first_top = set(tops)

    def step(dx):
        pos = fg.position()
        fg.move(pos.x() + dx, pos.y())
        doc.waitForDone()
        b = fg.bounds()
        spin(lambda: auto.seen(key) == (b.x(), b.y(), b.width(), b.height()), watch=see_top)

    def drag_until(condition, dx=1):
        moves = 0
        while not condition():
            step(dx)
            moves += 1
        return moves

    def submitted(other_than=None):
        run = controller.reblend_runs.get(key)
        return run is not None and run.job_id != "" and run.job_id != other_than

    def landed_box():
        return blended_box(read_records(doc)[key], blend_layers(doc, group)[-1])

    interval_s = cfg["interval_ms"] / 1000.0
    blocker = hold_the_worker(url)
    before = len(finished)
    drag_until(lambda: auto.live_started == 1)
    spin(submitted, watch=see_top)
    live_1 = controller.reblend_runs[key].job_id
    # One live re-blend at a time: while the first waits behind the long job, three more intervals of
    # dragging start none.
    dragged_from = time.monotonic()
    drag_until(lambda: time.monotonic() - dragged_from > 3 * interval_s)
    facts["started_while_in_flight"] = auto.live_started
    call(url, "/jobs/%s/cancel" % blocker, {})
    # The first runs and lands while the drag goes on; the next goes out only after it.
    drag_until(lambda: auto.live_started == 2)
    see_top()
    facts["first_in_when_second_went"] = [call(url, "/jobs/" + live_1)["state"], len(tops - first_top)]
    facts["first_landed_box"] = landed_box()  # its Blend went in mid-drag
    spin(lambda: submitted(live_1), watch=see_top)
    live_2 = controller.reblend_runs[key].job_id
    # The worker held again (after the second live one ran), a third goes out and waits; one more move
    # and the foreground stops: the settle re-blend cancels that stale third one and lands for the final
    # placement.
    blocker = hold_the_worker(url)
    drag_until(lambda: auto.live_started == 3)
    spin(lambda: submitted(live_2), watch=see_top)
    live_3 = controller.reblend_runs[key].job_id
    step(1)  # the third is still on its way: this move starts none
    spin(lambda: not auto.settling and submitted(live_3), watch=see_top)
    asked = auto.live_started + auto.settle_started
    facts["started"] = [auto.live_started, auto.settle_started]
    call(url, "/jobs/%s/cancel" % blocker, {})
    spin(lambda: len(finished) == before + asked and not controller.reblend_busy(key), watch=see_top)
    facts["outcomes"] = [o.state for o in finished[before:]]
    facts["stale_cancelled_on_server"] = call(url, "/jobs/" + live_3)["state"]
    facts["inserted_tops"] = len(tops - first_top)
    facts["blend_count"] = len(blend_layers(doc, group))
    facts["landed_box"] = landed_box()
    facts["final_box"] = read_source(doc, group).foreground_box
    facts["landed_params"] = [finished[-1].params.get("speed"), finished[-1].params.get("steps")]
    facts["latency"] = panel.latency.text()
    facts["message"] = panel.message.text()

    panel.live_interval.setValue(cfg["interval_ms"])
    # The settle re-blend is skipped when the drag's last live re-blend was for the final placement.
    tops.clear()
    see_top()
    first_top = set(tops)
    before, started, settles = len(finished), auto.live_started, auto.settle_started
    drag_until(lambda: auto.live_started == started + 1)
    spin(lambda: len(finished) == before + 1 and not controller.reblend_busy(key) and not auto.settling,
         watch=see_top)
    facts["no_settle_duplicate"] = [[o.state for o in finished[before:]], auto.settle_started - settles]
    facts["no_settle_inserted"] = len(tops - first_top)

    # The document closed mid-drag: the watcher cancels the queued live re-blend, nothing is put in.
    blocker = hold_the_worker(url)
    before, started = len(finished), auto.live_started
    drag_until(lambda: auto.live_started == started + 1)
    spin(submitted)
    closing = controller.reblend_runs[key].job_id
    count_docs = len(app.documents())
    doc.setBatchmode(True)
    doc.setModified(False)
    doc.close()
    spin(lambda: len(finished) == before + 1)
    call(url, "/jobs/%s/cancel" % blocker, {})
    facts["closed_outcome"] = [finished[-1].job_id == closing, finished[-1].state]
    facts["closed_message"] = panel.message.text()
    facts["closed_server_state"] = call(url, "/jobs/" + closing)["state"]
    facts["documents_after_close"] = [count_docs, len(app.documents())]
    auto.set_enabled(False)
    controller.shutdown()
    panel.deleteLater()
    spin(lambda: True)


def __main__(args):
    report(run)
