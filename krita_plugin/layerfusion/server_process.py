"""The "Start local server" button: runs ``python -m backend serve`` from the install's server.json.

install.py writes ``server.json`` ({"python": ..., "repo": ...}) beside this module. Only the process
started here is ever stopped here (by the docker's Stop button, without waiting, and when Krita quits);
a server started elsewhere is left alone.
"""
import json
import os
from dataclasses import dataclass
from typing import List, Optional
from urllib.parse import urlparse

from .qt import QObject, QProcess, QTimer, pyqtSignal

KILL_AFTER_MS = 5000  # a server that ignores SIGTERM this long is killed
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.json")


@dataclass
class ServerConfig:
    python: str
    repo: str
    model: str = ""  # e.g. "tiny" or a checkpoint path; the server's default when empty


def read_config(path: str = CONFIG) -> Optional[ServerConfig]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return ServerConfig(str(data["python"]), str(data["repo"]), str(data.get("model", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def serve_arguments(server_url: str, model: str = "") -> List[str]:
    parsed = urlparse(server_url)
    args = ["-m", "backend", "serve"]
    if parsed.hostname:
        args += ["--host", parsed.hostname]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if model:
        args += ["--model", model]
    return args


class LocalServer(QObject):
    message = pyqtSignal(str)  # plain-words news for the docker
    running_changed = pyqtSignal(bool)  # whether the process started here runs (the docker's Start/Stop)

    def __init__(self, config_path: str = CONFIG, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.config_path = config_path
        self.process: Optional[QProcess] = None
        self._stopping = False

    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def start(self, server_url: str) -> bool:
        if self.running():
            self.message.emit("The local server is already starting or running.")
            return False
        config = read_config(self.config_path)
        if config is None:
            self.message.emit("No local server is configured: run install.py, or start the server yourself.")
            return False
        if not os.path.exists(config.python):
            self.message.emit("The configured Python is missing: %s" % config.python)
            return False
        process = QProcess(self)
        process.setWorkingDirectory(config.repo)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.finished.connect(self._ended)
        process.errorOccurred.connect(lambda _e: self.message.emit("The local server failed: %s" % process.errorString()))
        self.process = process
        self._stopping = False
        process.start(config.python, serve_arguments(server_url, config.model))
        self.message.emit("Starting the local server (the model loads for a while)…")
        self.running_changed.emit(True)
        return True

    def _ended(self, code: int, _status: object) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if self._stopping:
            self.message.emit("The local server was stopped.")
        else:
            tail = bytes(process.readAll()).decode("utf-8", errors="replace").strip().splitlines()[-3:]
            self.message.emit("The local server stopped (exit %d). %s" % (code, " ".join(tail)))
        process.deleteLater()
        self.running_changed.emit(False)

    def request_stop(self) -> None:
        """Ask the server started here to quit; the UI thread does not wait (``running_changed`` tells)."""
        process = self.process
        if process is None or not self.running():
            return
        self._stopping = True
        process.terminate()
        QTimer.singleShot(KILL_AFTER_MS, lambda: self.process is process and process.kill())

    def stop(self) -> None:
        """Stop the server started here and wait for it: for Krita quitting, when no docker listens."""
        process, self.process = self.process, None
        if process is None or process.state() == QProcess.ProcessState.NotRunning:
            return
        process.finished.disconnect()
        process.terminate()
        if not process.waitForFinished(5000):
            process.kill()
            process.waitForFinished(2000)
