"""Starting the real backend (``python -m backend serve``) as a subprocess on loopback, for tests.

Used by the server tests, the plugin tests and the benchmarks. The server prints its bound address on
stdout (``--port 0`` picks a free port), then loads the model in the background; ``start`` waits until
health says ``ready`` (or ``error``, then it raises with the log).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
_READY = re.compile(r"listening on (http://\S+)")


class BackendFailed(RuntimeError):
    """The backend exited, never became ready, or its model failed to load."""


@dataclass
class BackendProcess:
    output_dir: Path
    token: Optional[str] = None
    model: str = "tiny"
    host: str = "127.0.0.1"
    extra_args: Sequence[str] = ()
    url: str = ""
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="backend-log-")))
    process: Optional["subprocess.Popen[bytes]"] = None

    def command(self) -> List[str]:
        args = [
            sys.executable,
            "-m",
            "backend",
            "serve",
            "--host",
            self.host,
            "--port",
            "0",
            "--model",
            self.model,
            "--output-dir",
            str(self.output_dir),
        ]
        if self.token:
            args += ["--token", self.token]
        return args + list(self.extra_args)

    def start(self, timeout: float = 900.0, allow_error: bool = False) -> "BackendProcess":
        """Starts the server and waits for health 'ready' ('error' too when ``allow_error``).

        ``timeout`` only guards against a hang: importing torch and building the model on a loaded
        2-core machine takes minutes.
        """
        self.output_dir = Path(self.output_dir)
        stdout = open(self.log_dir / "stdout.txt", "wb")
        stderr = open(self.log_dir / "stderr.txt", "wb")
        self.process = subprocess.Popen(
            self.command(), cwd=REPO, stdout=stdout, stderr=stderr, env=dict(os.environ)
        )
        stdout.close()
        stderr.close()
        deadline = time.monotonic() + timeout
        while not self.url:
            match = _READY.search((self.log_dir / "stdout.txt").read_text("utf-8", "replace"))
            if match:
                self.url = match.group(1)
            else:
                self._check_alive(deadline, "bind its port")
                time.sleep(0.05)
        while True:
            state = self.health().get("state")
            if state == "ready":
                return self
            if state == "error":
                if allow_error:
                    return self
                self.stop()
                raise BackendFailed("the model failed to load: %s\n%s" % (self.health_error, self.log_tail()))
            self._check_alive(deadline, "load its model")
            time.sleep(0.1)

    @property
    def health_error(self) -> str:
        return str(self._last_health.get("error", ""))

    def health(self) -> Dict[str, Any]:
        try:
            # Generous: a slow answer on a loaded machine is retried anyway, until start's deadline.
            with urllib.request.urlopen(self.url + "/v1/health", timeout=60) as response:
                self._last_health: Dict[str, Any] = json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            self._last_health = {}
        return self._last_health

    def headers(self) -> Dict[str, str]:
        return {"Authorization": "Bearer " + self.token} if self.token else {}

    def stop(self, timeout: float = 180.0) -> int:
        """SIGTERM (a clean shutdown), then SIGKILL if it hangs; returns the exit code.

        ``timeout`` is long: a clean shutdown of a busy server on a loaded machine must not be taken
        for a hang (tests assert exit code 0, which the SIGKILL fallback would not give).
        """
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        self.url = ""
        return code

    def log_tail(self, chars: int = 4000) -> str:
        out = []
        for name in ("stdout.txt", "stderr.txt"):
            path = self.log_dir / name
            if path.exists():
                out.append("--- %s ---\n%s" % (name, path.read_text("utf-8", "replace")[-chars:]))
        return "\n".join(out)

    def _check_alive(self, deadline: float, what: str) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise BackendFailed(
                "the backend exited (%d) before it could %s\n%s"
                % (self.process.returncode, what, self.log_tail())
            )
        if time.monotonic() > deadline:
            self.stop()
            raise BackendFailed("the backend did not %s in time\n%s" % (what, self.log_tail()))

    def __enter__(self) -> "BackendProcess":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_backend(args: Sequence[str], timeout: float = 600.0) -> "subprocess.CompletedProcess[str]":
    """``python -m backend ARGS`` to completion, for commands that should refuse and exit."""
    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )
