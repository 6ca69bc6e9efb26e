"""The one worker thread of a home server: it owns the Engine, loads the model, and runs jobs in turn.

The event loop never runs model code; it hands jobs over through ``enqueue`` and reads their news
from the JobBook. Cancel is cooperative: ``Engine.run`` polls the job's cancel flag between steps.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from backend.pipeline.engine import Engine
from backend.server.execution import execute, failed, load_engine
from backend.server.jobs import Job, JobBook, ended, interrupted
from backend.server.runner import JobRunner
from backend.server.store import ResultStore
from shared.protocol import ErrorInfo, JobState, ServerState

log = logging.getLogger(__name__)


class Worker(JobRunner):
    def __init__(self, engine: Engine, store: ResultStore, book: JobBook, previews: bool = True) -> None:
        super().__init__(store, book, previews)
        self.engine = engine
        self._stopping = False
        self._loaded = False
        self._current: Optional[Job] = None
        self._thread = threading.Thread(target=self._main, name="layerfusion-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def running(self) -> int:
        return 1 if self._current is not None else 0

    def workers(self) -> int:
        return 1 if self._loaded else 0

    def device_description(self) -> str:
        return self.engine.device_description

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self.queue.close()
        current = self._current
        if current is not None:
            current.cancel.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the worker did not stop within %.0f s; leaving it to exit with the process", timeout)

    # -- worker thread -----------------------------------------------------------------------
    def _main(self) -> None:
        load_error = load_engine(self.engine)
        self._loaded = load_error is None
        self.book.post(self.book.set_health, ServerState.error if load_error else ServerState.ready, load_error)
        while True:
            job = self.queue.take()
            if job is None:  # closed: the server is stopping
                return
            self._current = job
            try:
                self._run(job, load_error)
            finally:
                self._current = None

    def _run(self, job: Job, load_error: Optional[str]) -> None:
        if job.cancel.is_set() or job.request is None:
            self.finish(job, ended(job, JobState.cancelled), {})
            return
        if load_error is not None:
            self.finish(job, failed(job.params, ErrorInfo(code="model_error", message=load_error)), {})
            return
        early = self.begin(job)
        if early is not None:
            self.finish(job, early, {})
            return

        def report(step: int, total: int, preview: Optional[str], phase: str) -> None:
            self.book.post(self.book.progress, job, step, total, preview, phase)

        outcome, images = execute(self.engine, job.id, job.request, job.params, report=report,
                                  cancelled=job.cancel.is_set, previews=self.previews)
        if outcome.state == JobState.cancelled and self._stopping:
            outcome = interrupted(job)  # the server stopped it, not the artist
        self.finish(job, outcome, images)
