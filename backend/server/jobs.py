"""Job records and the queue as the event loop sees them; the worker thread reports into it.

All job records are read and changed on the event loop's thread only: the worker thread posts its
news (started, a step, finished) with ``loop.call_soon_threadsafe``. That keeps status answers free
of locks. The one thing the worker reads directly is a job's cancel flag (a threading.Event).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from shared.fields import ProtocolError, to_json
from shared.protocol import (
    EVENT_PROGRESS,
    EVENT_STATUS,
    ErrorInfo,
    JobKind,
    JobRequest,
    JobState,
    JobStatus,
    Phase,
    Progress,
    ProgressEvent,
    ServerState,
    image_path,
)

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
# A subscriber this far behind gets no more progress events (status events are never dropped).
MAX_EVENT_BACKLOG = 64

Event = Tuple[str, Dict[str, Any], bool]  # (SSE event name, JSON data, ends the stream)


class QueueFull(ProtocolError):
    """POST /v1/jobs while max_queue jobs are already waiting: answered 429."""

    status = 429


class ModelUnavailable(ProtocolError):
    """POST /v1/jobs while the model failed to load: answered 503."""

    status = 503


@dataclass
class Outcome:
    """How a job ended, computed by the worker and applied on the loop."""

    state: JobState
    finished: float
    params: Dict[str, Any]
    images: List[str] = field(default_factory=list)
    error: Optional[ErrorInfo] = None


@dataclass
class Job:
    id: str
    kind: JobKind
    params: Dict[str, Any]
    created: float
    request: Optional[JobRequest] = None  # None for jobs restored from disk
    state: JobState = JobState.queued
    step: int = 0
    total: int = 0
    phase: Phase = Phase.denoise
    error: Optional[ErrorInfo] = None
    images: List[str] = field(default_factory=list)
    started: Optional[float] = None
    finished: Optional[float] = None
    client: str = ""  # whose job it is, for fair queueing (CLIENT_HEADER, else the peer's address)
    retried: bool = False  # its cluster worker died before its first step and it was queued again
    # DELETE came while it ran: its folder goes as soon as the worker lets go of it.
    deleted: bool = False
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    subscribers: List["asyncio.Queue[Event]"] = field(default_factory=list, repr=False)

    def status(self, queue_position: Optional[int] = None) -> JobStatus:
        return JobStatus(
            id=self.id,
            kind=self.kind,
            state=self.state,
            progress=Progress(step=self.step, total=self.total, phase=self.phase),
            params=self.params,
            error=self.error,
            images={name: image_path(self.id, name) for name in self.images} if self.images else None,
            queue_position=queue_position if self.state == JobState.queued else None,
            created=self.created,
            started=self.started,
            finished=self.finished,
        )

    def record(self, outcome: Optional[Outcome] = None) -> Dict[str, Any]:
        """The job.json contents: the job as it is, or as it will be once ``outcome`` is applied."""
        state = outcome.state if outcome else self.state
        error = outcome.error if outcome else self.error
        record: Dict[str, Any] = {
            "format": RECORD_FORMAT,
            "id": self.id,
            "kind": self.kind.value,
            "state": state.value,
            "params": outcome.params if outcome else self.params,
            "images": list(outcome.images if outcome else self.images),
            "progress": {"step": self.step, "total": self.total},
            "created": self.created,
            "started": self.started,
            "finished": outcome.finished if outcome else self.finished,
        }
        if error is not None:
            record["error"] = to_json(error)
        return record

    @classmethod
    def from_record(cls, record: Dict[str, Any]) -> "Job":
        error = record.get("error")
        progress = record.get("progress") or {}
        return cls(
            id=record["id"],
            kind=JobKind(record["kind"]),
            params=dict(record.get("params") or {}),
            created=float(record.get("created") or 0.0),
            state=JobState(record["state"]),
            step=int(progress.get("step", 0)),
            total=int(progress.get("total", 0)),
            error=ErrorInfo(**error) if isinstance(error, dict) else None,
            images=[str(n) for n in record.get("images") or []],
            started=record.get("started"),
            finished=record.get("finished"),
        )


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobBook:
    """Every job the server knows, the health state, and the event fan-out: loop thread only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, discard: Callable[[str], None]) -> None:
        self.loop = loop
        self.discard = discard  # removes a deleted job's files
        self.jobs: Dict[str, Job] = {}
        self.health = ServerState.loading
        self.load_error: Optional[str] = None

    # -- called from the worker thread -------------------------------------------------------
    def post(self, callback: Any, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: the server is shutting down and nobody is listening

    # -- applied on the loop -----------------------------------------------------------------
    def add(self, job: Job) -> None:
        self.jobs[job.id] = job

    def forget(self, job: Job) -> None:
        self.jobs.pop(job.id, None)

    def set_health(self, state: ServerState, error: Optional[str] = None) -> None:
        self.health = state
        self.load_error = error

    def started(self, job: Job, when: float, worker: Optional[str] = None) -> None:
        if job.state.final:
            return
        job.state = JobState.running
        job.started = when
        if worker is not None:  # a cluster says which worker runs it: where to look when it fails
            job.params = {**job.params, "worker": worker}
        self.publish_status(job)

    def requeued(self, job: Job) -> None:
        """Back in the queue (its cluster worker died before its first step)."""
        if job.state.final:
            return
        job.state, job.started, job.step = JobState.queued, None, 0
        self.publish_status(job)

    def progress(self, job: Job, step: int, total: int, preview_png: Optional[str], phase: str = "denoise") -> None:
        job.step, job.total, job.phase = step, total, Phase(phase)
        event = to_json(ProgressEvent(id=job.id, step=step, total=total, preview_png=preview_png, phase=job.phase))
        for queue in job.subscribers:
            if queue.qsize() < MAX_EVENT_BACKLOG:
                queue.put_nowait((EVENT_PROGRESS, event, False))

    def finish(self, job: Job, outcome: Outcome) -> None:
        job.state = outcome.state
        job.finished = outcome.finished
        job.params = outcome.params
        job.images = list(outcome.images)
        job.error = outcome.error
        if outcome.state == JobState.done and job.total:
            job.step = job.total
        job.request = None  # the uploads are on disk now; free the memory
        self.publish_status(job)
        if job.deleted:
            self.discard(job.id)

    def publish_status(self, job: Job, queue_position: Optional[int] = None) -> None:
        event = to_json(job.status(queue_position))
        for queue in job.subscribers:
            queue.put_nowait((EVENT_STATUS, event, job.state.final))

    def subscribe(self, job: Job) -> "asyncio.Queue[Event]":
        queue: "asyncio.Queue[Event]" = asyncio.Queue()
        job.subscribers.append(queue)
        return queue

    def unsubscribe(self, job: Job, queue: "asyncio.Queue[Event]") -> None:
        if queue in job.subscribers:
            job.subscribers.remove(queue)

    def close_streams(self) -> None:
        """Ends every open event stream (server shutdown): an empty event name means 'stop here'."""
        for job in self.jobs.values():
            for queue in job.subscribers:
                queue.put_nowait(("", {}, True))

    def recent(self, limit: int) -> List[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)[:limit]


def ended(job: Job, state: JobState) -> Outcome:
    """A job that stopped without results (cancelled): its params stay, nothing else."""
    return Outcome(state=state, finished=time.time(), params=job.params)


def interrupted(job: Job) -> Outcome:
    """A job the server stopped before it finished (now, or in an earlier process): it failed, and
    says why; the artist did not cancel it."""
    return Outcome(
        state=JobState.failed,
        finished=time.time(),
        params=job.params,
        images=[],
        error=ErrorInfo(code="interrupted", message="the server stopped before this job finished"),
    )
