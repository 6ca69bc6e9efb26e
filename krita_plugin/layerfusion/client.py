"""Talking to the LayerFusion server with Qt's asynchronous network classes, on the UI thread's loop.

Nothing here blocks: every request returns at once and reports through a callback or a signal, so
Krita keeps painting while a job runs. Errors become plain sentences for the docker.
"""
import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from .qt import (
    CONNECTION_REFUSED,
    HTTP_STATUS,
    NETWORK_ERROR_NONE,
    OPERATION_CANCELED,
    QByteArray,
    QNetworkAccessManager,
    QNetworkRequest,
    QObject,
    QTimer,
    QUrl,
    pyqtSignal,
)
from .sse import SseParser
from .wire import Body, ProtocolError, parse_response, protocol

SHORT_TIMEOUT_MS = 10000  # health, job status, cancel: loopback answers in milliseconds
IMAGE_TIMEOUT_MS = 120000
POLL_INTERVAL_MS = 500  # only when the event stream is unavailable
# This Krita session's name on a shared (studio) server, which queues every client's jobs fairly.
CLIENT_ID = "krita-" + uuid.uuid4().hex[:16]


@dataclass
class HttpResult:
    ok: bool
    status: int
    body: bytes
    error: str = ""  # plain words, set when not ok

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class JobOutcome:
    job_id: str
    kind: str
    state: str  # "done", "failed" or "cancelled"
    params: Dict[str, Any] = field(default_factory=dict)
    images: Dict[str, bytes] = field(default_factory=dict)  # PNG bytes by name
    error: str = ""


# A server started with --token, in the artist's words: where the token goes.
NEEDS_TOKEN = "this server needs a token: enter it under Server"
TOKEN_REFUSED = "the server refused the token: check it under Server"


def _server_message(status: int, body: bytes) -> str:
    try:
        info = json.loads(body.decode("utf-8"))["error"]
        if status == 401:
            return NEEDS_TOKEN if info.get("code") == "missing_token" else TOKEN_REFUSED
        message = str(info.get("message") or info.get("code"))
        if info.get("field"):
            message += " (field '%s')" % info["field"]
        return message
    except (ValueError, KeyError, TypeError, AttributeError):
        return "the server answered HTTP %d" % status


class Api(QObject):
    """One QNetworkAccessManager and the base URL; requests report to callbacks with an HttpResult."""

    refused = pyqtSignal()  # a request was answered 401: the token is missing, or no longer the server's

    def __init__(self, base_url: str, token: str = "", parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.nam = QNetworkAccessManager(self)
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._deadlines: Dict[int, Tuple[Any, float]] = {}
        self._timed_out: Dict[int, bool] = {}
        self._sweeper = QTimer(self)
        self._sweeper.setInterval(250)
        self._sweeper.timeout.connect(self._sweep)

    def request(self, path: str) -> QNetworkRequest:
        req = QNetworkRequest(QUrl(self.base_url + path))
        req.setRawHeader(b"Accept", b"application/json")
        req.setRawHeader(protocol.CLIENT_HEADER.encode("ascii"), CLIENT_ID.encode("ascii"))
        if self.token:
            req.setRawHeader(b"Authorization", ("Bearer " + self.token).encode("utf-8"))
        return req

    def get(self, path: str, done: Callable[[HttpResult], None], timeout_ms: int = SHORT_TIMEOUT_MS) -> Any:
        return self._watch(self.nam.get(self.request(path)), done, timeout_ms)

    def post_json(self, path: str, body: Dict[str, Any], done: Callable[[HttpResult], None]) -> Any:
        return self.post(path, json.dumps(body).encode("utf-8"), done)

    def post(self, path: str, data: bytes, done: Callable[[HttpResult], None]) -> Any:
        """POST JSON already serialized (``wire.Body``)."""
        req = self.request(path)
        req.setHeader(QNetworkRequest.KnownHeaders.ContentTypeHeader, "application/json")
        return self._watch(self.nam.post(req, QByteArray(data)), done, IMAGE_TIMEOUT_MS)

    def _watch(self, reply: Any, done: Callable[[HttpResult], None], timeout_ms: int) -> Any:
        # One sweeping timer owned by the Api rather than a QTimer per reply: a Python slot on a
        # timer parented to a reply crashed Krita 5.1's Python (3.11, Debian PyQt 5.15.9) when it
        # fired. Also avoids setTransferTimeout, which needs Qt 5.15 (older Krita builds ship 5.12).
        self._deadlines[id(reply)] = (reply, time.monotonic() + timeout_ms / 1000.0)
        if not self._sweeper.isActive():
            self._sweeper.start()

        def finished() -> None:
            self._deadlines.pop(id(reply), None)
            timed_out = self._timed_out.pop(id(reply), False)
            done(self.result_of(reply, timed_out))
            reply.deleteLater()

        reply.finished.connect(finished)
        return reply

    def _sweep(self) -> None:
        now = time.monotonic()
        for key, (reply, deadline) in list(self._deadlines.items()):
            if now >= deadline:
                self._deadlines.pop(key, None)
                self._timed_out[key] = True
                reply.abort()  # emits finished, which reports the timeout
        if not self._deadlines:
            self._sweeper.stop()

    def result_of(self, reply: Any, timed_out: bool = False) -> HttpResult:
        status = reply.attribute(HTTP_STATUS) or 0
        body = bytes(reply.readAll())
        err = reply.error()
        if timed_out:
            return HttpResult(False, status, body, "no answer from %s in time" % self.base_url)
        if status == 401:
            self.refused.emit()
        if status and status >= 400:
            return HttpResult(False, status, body, _server_message(status, body))
        if err != NETWORK_ERROR_NONE:
            if err == CONNECTION_REFUSED:
                text = "nothing is listening at %s" % self.base_url
            elif err == OPERATION_CANCELED:
                text = "request stopped"
            else:
                text = "%s (%s)" % (reply.errorString(), self.base_url)
            return HttpResult(False, status, body, text)
        return HttpResult(True, status, body)


class JobRun(QObject):
    """One job from POST to its images: progress arrives as Server-Sent Events, images as PNG bytes."""

    progress = pyqtSignal(int, int, str)  # step, total, phase ("prior" or "denoise"; decoding once step = total)
    preview = pyqtSignal(bytes)  # a small PNG of what the job is making, with a step's progress
    state_changed = pyqtSignal(str)  # queued, running, ...
    finished = pyqtSignal(object)  # JobOutcome, exactly once

    def __init__(self, api: Api, body: Body, parent: Optional[QObject] = None,
                 maps: Sequence[str] = ()) -> None:
        super().__init__(parent)
        self.api = api
        self.body = body
        self.maps = tuple(maps)  # which of protocol.MAP_NAMES to fetch besides the layers
        self.kind = body.kind
        self.job_id = ""
        self.done = False
        self._cancel_wanted = False
        self._stream: Any = None
        self._parser = SseParser()
        self._failures = 0
        self._images: Dict[str, bytes] = {}
        self._wanted: Dict[str, str] = {}
        self._params: Dict[str, Any] = {}

    def start(self) -> None:
        self.state_changed.emit("submitting")
        self.api.post(protocol.API_PREFIX + "/jobs", self.body.json, self._created)

    def attach(self, job_id: str) -> None:
        """Follow an existing job (e.g. one from the history) instead of posting a new one."""
        self.job_id = job_id
        self._poll()

    def cancel(self) -> None:
        """Ask the server to stop the job; the outcome still arrives through ``finished``."""
        if self.done or self._cancel_wanted:
            return
        self._cancel_wanted = True
        if self.job_id:
            self.api.post_json(protocol.cancel_path(self.job_id), {}, self._cancel_answer)
        # else: sent as soon as POST returns the id

    def _cancel_answer(self, result: HttpResult) -> None:
        if not result.ok and result.status != 404 and not self.done:
            self._finish(JobOutcome(self.job_id, self.kind, "failed", error="could not cancel: " + result.error))

    def _created(self, result: HttpResult) -> None:
        if not result.ok:
            self._finish(JobOutcome("", self.kind, "failed", error=result.error))
            return
        try:
            created = parse_response(protocol.JobCreated, result.json())
        except (ValueError, ProtocolError) as err:
            self._finish(JobOutcome("", self.kind, "failed", error="unexpected answer: %s" % err))
            return
        self.job_id = created.id
        self.state_changed.emit(created.state.value)
        if self._cancel_wanted:
            self.api.post_json(protocol.cancel_path(self.job_id), {}, self._cancel_answer)
        self._open_stream()

    def _open_stream(self) -> None:
        req = self.api.request(protocol.job_path(self.job_id) + "/events")
        req.setRawHeader(b"Accept", b"text/event-stream")
        self._parser = SseParser()
        self._stream = self.api.nam.get(req)
        self._stream.readyRead.connect(self._stream_data)
        self._stream.finished.connect(self._stream_ended)

    def _stream_data(self) -> None:
        reply = self._stream
        if reply is None:
            return
        status = reply.attribute(HTTP_STATUS) or 0
        if status >= 400:
            return  # the body is an error message; handled when the stream ends
        for event in self._parser.feed(bytes(reply.readAll())):
            self._event(event.event, event.data)

    def _event(self, name: str, data: str) -> None:
        if self.done:
            return
        try:
            payload = json.loads(data)
            if name == protocol.EVENT_PROGRESS:
                step = parse_response(protocol.ProgressEvent, payload)
                self.progress.emit(step.step, step.total, step.phase.value)
                if step.preview_png:
                    self.preview.emit(base64.b64decode(step.preview_png))
            elif name == protocol.EVENT_STATUS:
                self._status(parse_response(protocol.JobStatus, payload))
        except (ValueError, ProtocolError):
            pass  # a malformed event is skipped; the final status is re-read if the stream ends early

    def _stream_ended(self) -> None:
        reply, self._stream = self._stream, None
        if reply is not None:
            reply.deleteLater()
        if not self.done and not self._images_pending():
            # The stream broke or the server has no events endpoint: fall back to polling the status.
            QTimer.singleShot(POLL_INTERVAL_MS, self._poll)

    def _images_pending(self) -> bool:
        return bool(self._wanted)

    def _poll(self) -> None:
        if not self.done:
            self.api.get(protocol.job_path(self.job_id), self._polled)

    def _polled(self, result: HttpResult) -> None:
        if self.done:
            return
        if not result.ok:
            self._failures += 1
            if self._failures >= 5 or result.status == 404:
                self._finish(JobOutcome(self.job_id, self.kind, "failed", error="lost the job: " + result.error))
                return
        else:
            self._failures = 0
            try:
                status = parse_response(protocol.JobStatus, result.json())
            except (ValueError, ProtocolError) as err:
                self._finish(JobOutcome(self.job_id, self.kind, "failed", error="unexpected answer: %s" % err))
                return
            self._status(status)
            if status.state.final:
                return
        QTimer.singleShot(POLL_INTERVAL_MS, self._poll)

    def _status(self, status: Any) -> None:
        if self._images_pending() or self.done:
            return
        self.state_changed.emit(status.state.value)
        if status.progress.total:
            self.progress.emit(status.progress.step, status.progress.total, status.progress.phase.value)
        if not status.state.final:
            return
        if status.state.value == "done":
            self._fetch_images(status)
        elif status.state.value == "cancelled":
            self._finish(JobOutcome(self.job_id, self.kind, "cancelled", status.params, error="cancelled"))
        else:
            message = status.error.message if status.error else "the job failed"
            self._finish(JobOutcome(self.job_id, self.kind, "failed", status.params, error=message))

    def _fetch_images(self, status: Any) -> None:
        self._params = status.params
        # The layers, and of the method's maps only those asked for: the rest stay on the server.
        names = set(protocol.LAYER_NAMES) | set(self.maps)
        self._wanted = {n: url for n, url in (status.images or {}).items() if n in names}
        if not self._wanted:
            self._finish(JobOutcome(self.job_id, self.kind, "failed", status.params, error="the job made no images"))
            return
        for name, url in list(self._wanted.items()):
            self.api.get(self._path_of(url), lambda r, n=name: self._image(n, r), timeout_ms=IMAGE_TIMEOUT_MS)

    def _path_of(self, url: str) -> str:
        # The server gives URL paths; accept absolute URLs on our own server too.
        if url.startswith(self.api.base_url):
            return url[len(self.api.base_url) :]
        return url

    def _image(self, name: str, result: HttpResult) -> None:
        if self.done:
            return
        if not result.ok:
            self._finish(JobOutcome(self.job_id, self.kind, "failed", self._params, error="%s.png: %s" % (name, result.error)))
            return
        self._images[name] = result.body
        if len(self._images) == len(self._wanted):
            self._finish(JobOutcome(self.job_id, self.kind, "done", self._params, dict(self._images)))

    def _finish(self, outcome: JobOutcome) -> None:
        if self.done:
            return
        self.done = True
        if self._stream is not None:
            self._stream.abort()
        if outcome.state == "failed" and self._cancel_wanted and not outcome.images:
            outcome.state, outcome.error = "cancelled", "cancelled"
        self.finished.emit(outcome)
