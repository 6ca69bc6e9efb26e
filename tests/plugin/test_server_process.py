"""The "Start local server" button's process handling, with a real backend process."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Iterator, Tuple

from layerfusion.client import Api
from layerfusion.connection import HealthMonitor
from layerfusion.qt import QProcess
from layerfusion.server_process import LocalServer, read_config, serve_arguments

from tests.plugin.launch import REPO, reserved_port


def test_arguments_follow_the_server_address():
    assert serve_arguments("http://127.0.0.1:9001") == ["-m", "backend", "serve", "--host", "127.0.0.1", "--port", "9001"]


def test_missing_or_broken_config_is_explained(qapp, tmp_path):
    assert read_config(str(tmp_path / "nope.json")) is None
    (tmp_path / "bad.json").write_text("{not json")
    server = LocalServer(str(tmp_path / "bad.json"))
    said = []
    server.message.connect(said.append)
    assert not server.start("http://127.0.0.1:1")
    assert "install.py" in said[-1]


@contextmanager
def own_server(tmp_path) -> Iterator[Tuple[str, LocalServer]]:
    """A LocalServer configured (as install.py would) to serve the tiny model, and its URL.

    The port stays reserved for this server: no other process can take it before the server binds,
    nor after it stopped (so "offline" in a test is this server gone, not someone else's answer)."""
    config = tmp_path / "server.json"
    config.write_text(json.dumps({"python": sys.executable, "repo": str(REPO), "model": "tiny"}))
    with reserved_port() as port:
        yield "http://127.0.0.1:%d" % port, LocalServer(str(config))


def test_starts_and_stops_only_its_own_server(qapp, tmp_path, spin, layerfusion_cache):
    with own_server(tmp_path) as (url, server):
        assert server.start(url)
        monitor = HealthMonitor(Api(url), interval_ms=300)
        try:
            monitor.start()
            spin(lambda: monitor.state.kind == "connected")  # the model loads first: slow when loaded
            process = server.process
            server.stop()
            assert process.state() == QProcess.ProcessState.NotRunning
            assert not server.running()
            monitor.poll()
            spin(lambda: monitor.state.kind == "offline")
        finally:
            monitor.stop()
            server.stop()  # a no-op once stopped; on a failure, no server is left behind


def test_the_docker_stop_button_stops_its_own_server_without_waiting(qapp, tmp_path, spin, layerfusion_cache):
    from layerfusion.docker import Panel

    with own_server(tmp_path) as (url, server):
        panel = Panel()
        # The wiring extension.py does for each docker.
        panel.start_server_clicked.connect(lambda: server.start(url))
        panel.stop_server_clicked.connect(server.request_stop)
        server.running_changed.connect(panel.set_own_server)
        server.message.connect(panel.show_message)
        monitor = HealthMonitor(Api(url), interval_ms=300)
        monitor.changed.connect(lambda state: panel.set_connection(state.kind, state.text))
        try:
            panel.set_connection("offline", "Offline")
            assert panel.server_button.text() == "Start" and panel.server_button.isEnabled()
            panel.server_button.click()
            assert server.running() and panel.server_button.text() == "Stop"
            monitor.start()
            spin(lambda: monitor.state.kind == "connected")
            assert panel.server_button.text() == "Stop" and panel.server_button.isEnabled()
            process = server.process
            panel.server_button.click()  # returns at once: the process is still quitting
            spin(lambda: not server.running())
            assert process.exitStatus() == QProcess.ExitStatus.NormalExit  # SIGTERM handled, not killed
            assert panel.server_button.text() == "Start"
            assert "was stopped" in panel.message.text()
            monitor.poll()
            spin(lambda: monitor.state.kind == "offline")
            assert panel.server_button.isEnabled()
        finally:
            monitor.stop()
            server.stop()
