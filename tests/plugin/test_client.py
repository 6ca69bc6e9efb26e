"""The plugin's HTTP client against a real backend with the tiny model (and against no server)."""
from __future__ import annotations

from layerfusion.client import Api, JobRun
from layerfusion.connection import HealthMonitor
from layerfusion.pixels import decode_png, has_partial_alpha
from layerfusion.sse import SseParser
from layerfusion.wire import protocol, serialized, validated

from tests.plugin.launch import unused_port


def generate_body(**extra):
    request = protocol.GenerateRequest(
        foreground_prompt="a wine glass", background_prompt="a wooden table", width=128, height=128,
        steps=2, seed=7)
    body = validated(request)
    body.update(extra)
    return body


def run_job(api, body, spin, on_start=None):
    run = JobRun(api, serialized(body))
    seen = {"progress": [], "states": [], "outcome": None, "previews": []}
    run.progress.connect(lambda step, total, phase: seen["progress"].append((step, total, phase)))
    run.preview.connect(seen["previews"].append)
    run.state_changed.connect(seen["states"].append)
    run.finished.connect(lambda outcome: seen.__setitem__("outcome", outcome))
    run.start()
    if on_start is not None:
        on_start(run)
    spin(lambda: seen["outcome"] is not None)
    return seen


def test_sse_parser_reassembles_split_events():
    parser = SseParser()
    stream = b': keep-alive\r\nevent: progress\ndata: {"a":\ndata: 1}\n\nevent: status\ndata: {"s": "\xc3\xa9"}\n\n'
    events = []
    for i in range(len(stream)):  # one byte at a time: the worst split there is
        events += parser.feed(stream[i : i + 1])
    assert [(e.event, e.data) for e in events] == [("progress", '{"a":\n1}'), ("status", '{"s": "é"}')]


def test_health_reports_connected(qapp, live_backend, spin):
    monitor = HealthMonitor(Api(live_backend.url), interval_ms=100000)
    monitor.start()
    spin(lambda: monitor.state.kind != "offline" or "not checked" not in monitor.state.detail)
    assert monitor.state.kind == "connected", monitor.state
    assert "tiny" in monitor.state.text


def test_health_reports_offline_with_reason(qapp, spin):
    with unused_port() as port:
        monitor = HealthMonitor(Api("http://127.0.0.1:%d" % port), interval_ms=100000)
        changes = []
        monitor.changed.connect(changes.append)
        monitor.start()
        spin(lambda: bool(changes))
    assert changes[-1].kind == "offline"
    assert "nothing is listening" in changes[-1].text


def test_generate_streams_progress_and_fetches_images(qapp, live_backend, spin):
    seen = run_job(Api(live_backend.url), generate_body(steps=5), spin)
    outcome = seen["outcome"]
    assert outcome.state == "done", outcome.error
    assert seen["progress"], "no progress events arrived"
    step, total, phase = seen["progress"][-1]
    assert step == total and total >= 2 and phase == "denoise"
    # the restart prior pass first, then the denoising steps (decoding follows step == total)
    phases = [p for _s, _t, p in seen["progress"]]
    assert "prior" in phases and phases == sorted(phases, key=["prior", "denoise"].index)
    assert seen["previews"] and all(decode_png(png).width() > 0 for png in seen["previews"])
    assert "running" in seen["states"]
    assert set(outcome.images) == {"foreground", "background", "blend"}
    fg = decode_png(outcome.images["foreground"])
    assert (fg.width(), fg.height()) == (128, 128) and fg.hasAlphaChannel()
    assert has_partial_alpha(fg)
    assert outcome.params["seed"] == 7


def test_cancel_stops_a_running_job(qapp, live_backend, spin):
    api = Api(live_backend.url)
    body = generate_body(steps=200, width=256, height=256)
    progress = []

    def cancel_after_first_step(run):
        run.progress.connect(lambda step, total, phase: (progress.append(step), run.cancel()))

    seen = run_job(api, body, spin, on_start=cancel_after_first_step)
    outcome = seen["outcome"]
    assert outcome.state == "cancelled"
    assert outcome.images == {}
    assert max(progress) < 200


def test_cancel_before_the_server_answered(qapp, live_backend, spin):
    # 200 steps: the job is still queued or running when the cancel follows the server's answer.
    seen = run_job(Api(live_backend.url), generate_body(steps=200), spin, on_start=lambda run: run.cancel())
    assert seen["outcome"].state == "cancelled"


def test_server_refusal_is_reported_in_words(qapp, live_backend, spin):
    seen = run_job(Api(live_backend.url), generate_body(steps=0), spin)
    outcome = seen["outcome"]
    assert outcome.state == "failed"
    assert "steps" in outcome.error and "Traceback" not in outcome.error


def test_too_large_for_the_model_is_reported(qapp, live_backend, spin):
    seen = run_job(Api(live_backend.url), generate_body(width=2048, height=2048), spin)
    assert seen["outcome"].state == "failed"
    assert "too large" in seen["outcome"].error


def test_offline_server_fails_the_job_in_words(qapp, spin):
    with unused_port() as port:
        seen = run_job(Api("http://127.0.0.1:%d" % port), generate_body(), spin)
    assert seen["outcome"].state == "failed"
    assert "nothing is listening" in seen["outcome"].error
