"""What the job service hands its jobs to: the fair queue and the workers that take from it.

Two kinds stand on this: ``worker.Worker`` (one thread owning the server's engine, the default) and
``cluster.ClusterRunner`` (a pool of Ray workers, one per GPU). Both start a job and keep its results
the same way, here, on the API server: the results folder is this machine's.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from typing import Dict, List, Optional

from PIL import Image

from backend.server.execution import failed
from backend.server.fair_queue import FairQueue
from backend.server.jobs import Job, JobBook, Outcome
from backend.server.store import ResultStore, storage_error
from shared.protocol import ErrorInfo

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, store: ResultStore, book: JobBook, previews: bool = True) -> None:
        self.store = store
        self.book = book
        self.previews = previews
        self.queue: FairQueue[Job] = FairQueue()

    # -- what the service calls, on the loop ------------------------------------------------
    def start(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def running(self) -> int:
        """Jobs a worker is running now."""
        raise NotImplementedError

    def workers(self) -> int:
        """Workers that have loaded their model and take jobs."""
        raise NotImplementedError

    def device_description(self) -> str:
        raise NotImplementedError

    def enqueue(self, job: Job) -> None:
        self.queue.put(job)

    def withdraw(self, job: Job) -> bool:
        return self.queue.withdraw(job)

    def position(self, job: Job) -> Optional[int]:
        return self.queue.position(job)

    def waiting_jobs(self) -> List[Job]:
        return self.queue.jobs()

    def waiting(self) -> int:
        return len(self.queue)

    # -- shared by the worker threads --------------------------------------------------------
    def begin(self, job: Job, worker: Optional[str] = None) -> Optional[Outcome]:
        """Marks the job running and puts its uploads on disk; an outcome when it cannot run."""
        self.book.post(self.book.started, job, time.time(), worker)
        assert job.request is not None
        try:
            for name, payload in job.request.uploads().items():
                self.store.write_input(job.id, name, base64.b64decode(payload))
        except OSError as err:
            return self.storage_failed(job, err)
        return None

    def finish(self, job: Job, outcome: Outcome, images: Dict[str, Image.Image]) -> None:
        """Puts the job on disk as it ended, PNGs first, then tells everyone listening."""
        try:
            outcome = self.keep(job, outcome, images)
        except Exception:
            # Never let one job take a worker down: the next jobs must still run.
            error_id = uuid.uuid4().hex[:12]
            log.exception("error %s while finishing job %s", error_id, job.id)
            outcome = failed(job.params, ErrorInfo(code="internal", message="internal error %s" % error_id))
        self.book.post(self.book.finish, job, outcome)

    def keep(self, job: Job, outcome: Outcome, images: Dict[str, Image.Image]) -> Outcome:
        """A write that fails leaves none of the job's results behind and fails the job with the
        folder's reason."""
        try:
            if images:
                outcome.images = self.store.write_images(job.id, images)
            self.store.write_record(job.id, job.record(outcome))
        except OSError as err:
            self.store.remove_images(job.id)
            outcome = self.storage_failed(job, err)
            try:
                self.store.write_record(job.id, job.record(outcome))
            except OSError:
                pass  # the record written at submission stays; a restart reports the job interrupted
        return outcome

    def storage_failed(self, job: Job, err: OSError) -> Outcome:
        failure = storage_error(err, self.store.root)
        log.error("job %s could not be saved: %s [%s]", job.id, failure.message, err)
        return failed(job.params, ErrorInfo(code=failure.code, message=failure.message))
