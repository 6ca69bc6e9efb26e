"""The "Start local server" button's process handling, with a real backend process."""
from __future__ import annotations

import json
import sys

from layerfusion.client import Api, HealthMonitor
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


def test_starts_and_stops_only_its_own_server(qapp, tmp_path, spin, layerfusion_cache):
    config = tmp_path / "server.json"
    config.write_text(json.dumps({"python": sys.executable, "repo": str(REPO), "model": "tiny"}))
    # The port stays reserved for this server: no other process can take it before the server binds,
    # nor after it stopped (so "offline" below is this server gone, not someone else's answer).
    with reserved_port() as port:
        url = "http://127.0.0.1:%d" % port
        server = LocalServer(str(config))
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
