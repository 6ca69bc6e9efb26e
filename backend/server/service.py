"""The job service the HTTP handlers call: submit, look up, list, cancel, health, restore from disk."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, List, Optional

from backend import __version__
from backend.pipeline.engine import Engine, resolve_seed
from backend.server.jobs import (
    Job,
    JobBook,
    ModelUnavailable,
    QueueFull,
    ended,
    interrupted,
    new_job_id,
)
from backend.server.runner import JobRunner
from backend.server.store import ResultStore, storage_error
from backend.server.worker import Worker
from shared.protocol import (
    Health,
    JobKind,
    JobRequest,
    JobState,
    JobStatus,
    Phase,
    PriorMode,
    ServerState,
    request_params,
)

log = logging.getLogger(__name__)



def first_phase(request: JobRequest) -> Phase:
    """What a queued job will report first: a generation or an added object starts with the restart
    prior pass (until its first step says otherwise)."""
    options = getattr(request, "options", None)
    restart = options is not None and options.prior_mode is PriorMode.restart
    return Phase.prior if restart and request.kind in (JobKind.generate, JobKind.add_foreground) else Phase.denoise

class JobService:
    def __init__(
        self,
        engine: Engine,
        store: ResultStore,
        loop: asyncio.AbstractEventLoop,
        *,
        max_queue: int,
        max_queued_upload_bytes: int,
        token_required: bool,
        previews: bool = True,
        runner: Optional[Callable[[JobBook], JobRunner]] = None,
    ) -> None:
        """``engine`` checks requests on the API server; ``runner`` builds what runs the jobs (by
        default one worker thread that runs them on ``engine`` itself)."""
        self.engine = engine
        self.store = store
        self.max_queue = max_queue
        self.max_queued_upload_bytes = max_queued_upload_bytes
        self.token_required = token_required
        self.book = JobBook(loop, discard=store.delete)
        self.worker = (runner(self.book) if runner is not None
                       else Worker(engine, store, self.book, previews=previews))

    def start(self) -> None:
        self.restore()
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    def restore(self) -> None:
        """Loads earlier jobs from the output folder so their results stay reachable by id."""
        count = 0
        for record in self.store.read_records():
            try:
                job = Job.from_record(record)
            except (KeyError, TypeError, ValueError) as err:
                log.warning("skipping job record %s: %s", record.get("id"), err)
                continue
            if not job.state.final:
                outcome = interrupted(job)
                self.store.write_record(job.id, job.record(outcome))
                self.book.finish(job, outcome)
            self.book.add(job)
            count += 1
        if count:
            log.info("restored %d earlier jobs from %s", count, self.store.root)

    # -- requests ----------------------------------------------------------------------------
    def submit(self, request: JobRequest, client: str = "") -> Job:
        if self.book.health == ServerState.error:
            raise ModelUnavailable("model_unavailable", self.book.load_error or "the model is not available")
        if self.worker.waiting() >= self.max_queue:
            raise QueueFull(
                "queue_full",
                "the queue is full (%d jobs waiting); try again when a job has finished" % self.max_queue,
            )
        upload = upload_bytes(request)
        if upload:
            held = sum(upload_bytes(job.request) for job in self.worker.waiting_jobs() if job.request)
            if held and held + upload > self.max_queued_upload_bytes:
                raise QueueFull(
                    "queue_full",
                    "the queued jobs already hold %d MB of images; try again when one has run"
                    % (held // (1 << 20)),
                )
        # The seed is fixed now, so the record on disk says how to reproduce the job from the start.
        request.seed = resolve_seed(request.seed)
        job = Job(
            id=new_job_id(),
            kind=JobKind(request.kind),
            params=request_params(request),
            created=time.time(),
            request=request,
            total=request.steps,
            phase=first_phase(request),
            client=client,
        )
        try:
            self.store.write_record(job.id, job.record())
        except OSError as err:
            self.store.delete(job.id)
            raise storage_error(err, self.store.root) from None
        self.book.add(job)
        self.worker.enqueue(job)
        return job

    def get(self, job_id: str) -> Optional[Job]:
        return self.book.jobs.get(job_id)

    def status(self, job: Job) -> JobStatus:
        position = self.worker.position(job) if job.state == JobState.queued else None
        return job.status(position)

    def recent(self, limit: int) -> List[JobStatus]:
        return [self.status(job) for job in self.book.recent(limit)]

    def cancel(self, job: Job) -> JobStatus:
        if job.state.final:
            return self.status(job)
        job.cancel.set()
        if self.worker.withdraw(job):
            # Still waiting: it never reaches the engine. Record it, then tell the listeners.
            outcome = ended(job, JobState.cancelled)
            try:
                self.store.write_record(job.id, job.record(outcome))
            except OSError as err:
                log.warning("job %s: could not record its cancel: %s", job.id, err)
            self.book.finish(job, outcome)
        # A running job stops at the engine's next step; its listeners hear 'cancelled' then.
        return self.status(job)

    def delete(self, job: Job) -> None:
        """Forgets a job and removes its files; one still queued or running is cancelled first."""
        self.book.forget(job)
        if job.state.final:
            self.store.delete(job.id)
            return
        job.deleted = True
        self.cancel(job)  # a queued job ends here (and goes); a running one at its next step

    def health(self) -> Health:
        return Health(
            state=self.book.health,
            version=__version__,
            device=self.worker.device_description(),
            model=self.engine.model,
            queue_length=self.worker.waiting() + self.worker.running(),
            workers=self.worker.workers(),
            error=self.book.load_error if self.book.health == ServerState.error else None,
            auth=self.token_required,
            fast=self.engine.fast,
        )


def upload_bytes(request: JobRequest) -> int:
    """Memory a queued request holds in uploaded images (base64 text)."""
    return sum(len(text) for text in request.uploads().values())



