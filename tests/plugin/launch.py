"""Start a real LayerFusion backend (tiny model) on a free loopback port for the plugin tests."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"listening on (http://[0-9.]+:\d+)")


@dataclass
class Backend:
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_backend(workdir: Path, python: str = sys.executable, timeout: float = 120.0) -> Backend:
    log = workdir / "backend.log"
    out = open(log, "w")
    process = subprocess.Popen(
        [python, "-m", "backend", "serve", "--model", "tiny", "--port", "0", "--output-dir", str(workdir / "results")],
        cwd=str(REPO), stdout=subprocess.PIPE, stderr=out, text=True, env=dict(os.environ),
    )
    deadline = time.monotonic() + timeout
    url = None
    assert process.stdout is not None
    while url is None:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the backend exited before listening; see %s" % log)
        match = READY.search(line)
        if match:
            url = match.group(1)
    backend = Backend(url, process, log)
    while time.monotonic() < deadline:  # a guard against hanging, not a timing assertion
        try:
            with urllib.request.urlopen(url + "/v1/health", timeout=5) as answer:
                if json.load(answer)["state"] == "ready":
                    return backend
        except OSError:
            pass
        time.sleep(0.2)
    backend.stop()
    raise RuntimeError("the backend did not become ready; see %s" % log)


def free_port() -> int:
    """A port free just now; anything may take it next (see ``unused_port`` and ``reserved_port``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def unused_port() -> Iterator[int]:
    """A loopback port nothing listens on while the block runs: connecting to it is refused.

    The socket stays bound and never listens, so no other process (another test's ``--port 0`` server,
    say) can be given the port in the meantime.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextmanager
def reserved_port() -> Iterator[int]:
    """A loopback port for a server the test starts itself, held for it while the block runs.

    Bound with SO_REUSEADDR and never listening: the server (aiohttp binds with SO_REUSEADDR) can still
    bind and listen there, while the kernel hands the port to no one else between now and then.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
