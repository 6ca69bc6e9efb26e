"""Whether the server answers, is ready, and lets this plugin in: what the docker's connection line shows.

Health is open to everyone; a server started with --token also needs the token for everything else,
so for such a server the token is tried once on an endpoint that needs it.
"""
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from .client import NEEDS_TOKEN, TOKEN_REFUSED, Api, HttpResult
from .qt import QObject, QTimer, pyqtSignal
from .wire import ProtocolError, parse_response, protocol


@dataclass
class ConnectionState:
    kind: str  # "connected", "loading", "offline" or "error"
    detail: str
    health: Optional[Any] = None  # protocol.Health when the server answered

    @property
    def text(self) -> str:
        label = {"connected": "Connected", "loading": "Loading model", "offline": "Offline", "error": "Server error"}
        return "%s: %s" % (label.get(self.kind, self.kind), self.detail) if self.detail else label[self.kind]


class HealthMonitor(QObject):
    """Polls GET /v1/health and reports connected / loading / offline (with the reason) on change."""

    changed = pyqtSignal(object)  # ConnectionState

    def __init__(self, api: Api, interval_ms: int = 2000, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.api = api
        self.state = ConnectionState("offline", "not checked yet")
        self._busy = False
        self._accepted: Optional[Tuple[str, str]] = None  # (server, token) a token-guarded server let in
        api.refused.connect(self._token_refused)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)

    def start(self) -> None:
        self._timer.start()
        self.poll()

    def stop(self) -> None:
        self._timer.stop()

    def poll(self) -> None:
        if self._busy:
            return
        self._busy = True
        self.api.get(protocol.API_PREFIX + "/health", self._answer, timeout_ms=5000)

    def _answer(self, result: HttpResult) -> None:
        self._busy = False
        new = self._read(result)
        if new.kind == "connected" and new.health is not None and new.health.auth:
            new = self._token_state(new)
            if new is None:
                return  # asked the server whether it takes the token; _token_answer reports
        self._report(new)

    def _token_refused(self) -> None:
        """Any request's 401 (a job's, say) withdraws the token's acceptance: health is asked again."""
        self._accepted = None
        self.poll()

    def _token_state(self, connected: ConnectionState) -> Optional[ConnectionState]:
        """Health is open to all; a server started with --token is only usable with it. Without one the
        artist is told where to enter it; a new one is tried once on an endpoint that needs it."""
        if not self.api.token:
            return ConnectionState("error", NEEDS_TOKEN, connected.health)
        if self._accepted == (self.api.base_url, self.api.token):
            return connected
        self._busy = True
        asked = (self.api.base_url, self.api.token)
        self.api.get(protocol.API_PREFIX + "/models", lambda result: self._token_answer(result, connected, asked),
                     timeout_ms=5000)
        return None

    def _token_answer(self, result: HttpResult, connected: ConnectionState, asked: Tuple[str, str]) -> None:
        self._busy = False
        if asked != (self.api.base_url, self.api.token):
            self.poll()  # the artist changed server or token meanwhile: this answer is about the old ones
        elif result.status == 401:
            self._report(ConnectionState("error", TOKEN_REFUSED, connected.health))
        elif not result.ok:
            self._report(ConnectionState("offline", result.error))
        else:
            self._accepted = asked
            self._report(connected)

    def _read(self, result: HttpResult) -> ConnectionState:
        if not result.ok:
            return ConnectionState("offline", result.error)
        try:
            health = parse_response(protocol.Health, result.json())
        except (ValueError, ProtocolError) as err:
            return ConnectionState("error", "not a LayerFusion server (%s)" % err)
        state = health.state.value
        if state == "ready":
            return ConnectionState("connected", "%s on %s" % (health.model, health.device), health)
        if state == "loading":
            return ConnectionState("loading", health.model, health)
        return ConnectionState("error", health.error or "the model failed to load", health)

    def _report(self, new: ConnectionState) -> None:
        if (new.kind, new.detail) != (self.state.kind, self.state.detail):
            self.state = new
            self.changed.emit(new)
        else:
            self.state = new
