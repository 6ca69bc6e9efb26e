"""The repository root and loopback ports for the plugin tests (the backend itself: tests.support.backend_process)."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]


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
