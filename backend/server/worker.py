"""The one worker thread: it owns the Engine, loads the model, and runs jobs in arrival order.

The event loop never runs model code; it hands jobs over through ``enqueue`` and reads their news
from the JobBook. Cancel is cooperative: ``Engine.run`` polls the job's cancel flag between steps.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
import uuid
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

from PIL import Image

from backend.pipeline.engine import Engine, JobCancelled, StepUpdate
from backend.pipeline.faults import is_out_of_memory, out_of_memory_message, release_memory
from backend.server.jobs import Job, JobBook, Outcome, ended, interrupted
from backend.server.store import ResultStore, storage_error
from shared.fields import ProtocolError
from shared.protocol import ErrorInfo, JobState, ServerState

log = logging.getLogger(__name__)

def encode_preview(image: Image.Image) -> str:
    """The engine's small preview as base64 PNG for the event stream (a few kB a step)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class Worker:
    def __init__(self, engine: Engine, store: ResultStore, book: JobBook, previews: bool = True) -> None:
        self.engine = engine
        self.store = store
        self.book = book
        self.previews = previews
        self._pending: Deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._current: Optional[Job] = None
        self._thread = threading.Thread(target=self._main, name="layerfusion-worker", daemon=True)

    # -- loop side ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def enqueue(self, job: Job) -> None:
        with self._cond:
            self._pending.append(job)
            self._cond.notify()

    def withdraw(self, job: Job) -> bool:
        """Takes a job out of the queue; False when the worker already took it (or it never was)."""
        with self._cond:
            try:
                self._pending.remove(job)
            except ValueError:
                return False
            return True

    def position(self, job: Job) -> Optional[int]:
        with self._cond:
            try:
                return self._pending.index(job)
            except ValueError:
                return None

    def waiting_jobs(self) -> List[Job]:
        with self._cond:
            return list(self._pending)

    def waiting(self) -> int:
        with self._cond:
            return len(self._pending)

    def busy(self) -> bool:
        return self._current is not None

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            current = self._current
            self._cond.notify_all()
        if current is not None:
            current.cancel.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the worker did not stop within %.0f s; leaving it to exit with the process", timeout)

    # -- worker thread -----------------------------------------------------------------------
    def _main(self) -> None:
        load_error = self._load()
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._pending.popleft()
                self._current = job
            try:
                images: Dict[str, Image.Image] = {}
                if load_error is not None:
                    outcome = self._failed(job, ErrorInfo(code="model_error", message=load_error))
                else:
                    outcome, images = self._run(job)
                outcome = self._keep(job, outcome, images)
            except Exception:
                # Never let one job take the worker down: the next jobs must still run.
                error_id = uuid.uuid4().hex[:12]
                log.exception("error %s while finishing job %s", error_id, job.id)
                outcome = self._failed(
                    job, ErrorInfo(code="internal", message="internal error %s" % error_id)
                )
            finally:
                with self._cond:
                    self._current = None
            self.book.post(self.book.finish, job, outcome)

    def _load(self) -> Optional[str]:
        from backend.models.loading import ModelNotAvailable

        started = time.perf_counter()
        model = getattr(self.engine, "model", "?")
        try:
            self.engine.load()
        except ModelNotAvailable as err:
            # Expected (files missing, no such device, offline): one line that says why, no traceback.
            message = "the model could not be loaded: %s" % _short(err)
            log.error("the model %r could not be loaded: %s", model, _short(err))
            self.book.post(self.book.set_health, ServerState.error, message)
            return message
        except Exception as err:
            log.exception("the model %r could not be loaded", model)
            message = "the model could not be loaded: %s: %s" % (type(err).__name__, _short(err))
            self.book.post(self.book.set_health, ServerState.error, message)
            return message
        log.info("model loaded in %.1f s", time.perf_counter() - started)
        self.book.post(self.book.set_health, ServerState.ready, None)
        return None

    def _run(self, job: Job) -> Tuple[Outcome, Dict[str, Image.Image]]:
        """Runs the job: how it ended, and the images to keep when it is done."""
        if job.cancel.is_set() or job.request is None:
            return ended(job, JobState.cancelled), {}
        self.book.post(self.book.started, job)
        try:
            for name, payload in job.request.uploads().items():
                self.store.write_input(job.id, name, base64.b64decode(payload))
        except OSError as err:
            return self._storage_failed(job, err), {}

        def on_step(update: StepUpdate) -> None:
            preview = encode_preview(update.preview) if update.preview is not None else None
            self.book.post(self.book.progress, job, update.step, update.total, preview, update.phase)

        try:
            result = self.engine.run(
                job.request, on_step=on_step, cancelled=job.cancel.is_set, preview=self.previews
            )
        except JobCancelled:
            return (interrupted(job) if self._stopping else ended(job, JobState.cancelled)), {}
        except ProtocolError as err:
            return self._failed(job, ErrorInfo(code=err.code, message=err.message, field=err.field)), {}
        except Exception as err:
            if is_out_of_memory(err):
                release_memory()
                log.warning("job %s ran out of memory: %s", job.id, _short(err))
                width, height = job.request.size
                message = out_of_memory_message(self.engine.device_description, width, height)
                return self._failed(job, ErrorInfo(code="out_of_memory", message=message)), {}
            error_id = uuid.uuid4().hex[:12]
            log.exception("error %s: job %s failed", error_id, job.id)
            message = "%s: %s (error id %s)" % (type(err).__name__, _short(err), error_id)
            return self._failed(job, ErrorInfo(code="job_failed", message=message)), {}
        params = dict(job.params)
        params.update(result.params)
        return Outcome(state=JobState.done, finished=time.time(), params=params), result.images

    def _keep(self, job: Job, outcome: Outcome, images: Dict[str, Image.Image]) -> Outcome:
        """Puts the job on disk as it ended, PNGs first, before anyone hears of it. A write that
        fails leaves none of the job's results behind and fails the job with the folder's reason."""
        try:
            if images:
                outcome.images = self.store.write_images(job.id, images)
            self.store.write_record(job.id, job.record(outcome))
        except OSError as err:
            self.store.remove_images(job.id)
            outcome = self._storage_failed(job, err)
            try:
                self.store.write_record(job.id, job.record(outcome))
            except OSError:
                pass  # the record written at submission stays; a restart reports the job interrupted
        return outcome

    def _storage_failed(self, job: Job, err: OSError) -> Outcome:
        failure = storage_error(err, self.store.root)
        log.error("job %s could not be saved: %s [%s]", job.id, failure.message, err)
        return self._failed(job, ErrorInfo(code=failure.code, message=failure.message))

    def _failed(self, job: Job, error: ErrorInfo) -> Outcome:
        return Outcome(state=JobState.failed, finished=time.time(), params=job.params, error=error)


def _short(err: BaseException, limit: int = 4000) -> str:
    """The error's whole text on one line (a reason that says where to look must not lose its end), cut
    only past ``limit`` characters, at a word boundary, with an ellipsis."""
    text = " ".join(str(err).split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > 0 else limit] + " …"
