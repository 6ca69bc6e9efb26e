"""The docker against a real server started with --token (a studio's shared backend): the artist is
told it needs a token and where to enter it, a wrong one is named as refused, and with the right one
typed into the Server section it connects, is saved with the settings, and runs jobs."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.plugin.test_docker import finished_jobs, make
from tests.support.backend_process import BackendProcess

TOKEN = "studio-7f3a"


@pytest.fixture(scope="module")
def guarded() -> Iterator[BackendProcess]:
    backend = BackendProcess(output_dir=Path(tempfile.mkdtemp(prefix="guarded-")), token=TOKEN)
    backend.start()
    try:
        yield backend
    finally:
        backend.stop()


def type_token(panel, text: str) -> None:
    panel.token.setText(text)
    panel.token.editingFinished.emit()  # what leaving the field does


def test_the_token_is_asked_for_checked_and_used(qapp, guarded, spin):
    from layerfusion.qt import QLineEdit

    panel, controller, docs, saved = make(qapp, guarded.url)
    assert panel.token.echoMode() == QLineEdit.EchoMode.Password
    spin(lambda: "needs a token" in panel.connection.text())
    assert panel.connection.property("state") == "error" and "under Server" in panel.connection.text()

    done = finished_jobs(controller)
    panel.generate.click()  # tried anyway: the server's refusal is shown, nothing lands in the document
    spin(lambda: "needs a token" in panel.message.text())
    assert docs.inserted == [] and "under Server" in panel.message.text(), panel.message.text()

    type_token(panel, "not-the-token")
    spin(lambda: "refused the token" in panel.connection.text())
    assert panel.connection.property("state") == "error"

    type_token(panel, TOKEN)
    spin(lambda: panel.connection.property("state") == "connected")
    assert saved and saved[-1].token == TOKEN and panel.values().token == TOKEN
    done.clear()
    panel.generate.click()
    spin(lambda: len(done) == 1)
    assert done[0].state == "done", panel.message.text()
    assert set(docs.inserted[0]["layers"]) == {"foreground", "background", "blend"}

    type_token(panel, "")  # cleared again: back to asking for one
    spin(lambda: "needs a token" in panel.connection.text())



def guarded_at(port: str, token: str) -> BackendProcess:
    extra = ("--port", port) if port else ()
    return BackendProcess(output_dir=Path(tempfile.mkdtemp(prefix="guarded-")), token=token, extra_args=extra).start()


def test_a_server_restarted_with_another_token_is_checked_again(qapp, spin):
    servers = [guarded_at("", "first-token")]
    port = servers[0].url.rsplit(":", 1)[1]
    try:
        panel, controller, docs, _ = make(qapp, servers[0].url, token="first-token")
        spin(lambda: panel.connection.property("state") == "connected")

        # Restarted at the same address with another token while the docker was not looking (no event
        # loop turn in between): the line still says connected, and the first request refused says so.
        assert servers[0].stop() == 0, servers[0].log_tail()
        servers.append(guarded_at(port, "second-token"))
        assert servers[1].url == servers[0].url or servers[1].url.endswith(":" + port)
        done = finished_jobs(controller)
        panel.generate.click()
        spin(lambda: "refused the token" in panel.connection.text())
        spin(lambda: "refused the token" in panel.message.text())
        assert docs.inserted == []

        type_token(panel, "second-token")
        spin(lambda: panel.connection.property("state") == "connected")
        # Restarted again while the docker watches: seen offline; once back, what the docker asks a server
        # it reconnects to (its history, its LoRAs) is refused, and the line says so.
        assert servers[1].stop() == 0, servers[1].log_tail()
        spin(lambda: panel.connection.property("state") == "offline")
        servers.append(guarded_at(port, "third-token"))
        spin(lambda: "refused the token" in panel.connection.text())
        assert not done or done[0].state != "done"
    finally:
        for backend in servers:
            if backend.process is not None and backend.process.poll() is None:
                backend.stop()
