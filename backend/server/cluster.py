"""A studio's job runner: a pool of Ray actors, one per GPU, each holding a loaded engine.

The API server keeps everything a client sees (the job book, the fair queue, the results folder);
one dispatcher thread per actor takes the next job from the fair queue, streams it to its actor and
relays progress, and writes the images the actor sends back. So the HTTP API, events, cancel and
history are the single-process server's own.

Faults: an actor that dies mid-job (its process killed, a GPU fault) fails that job with a plain
reason, or queues it again once when it had not reported a step yet; Ray restarts the actor
(``max_restarts``), which loads its model again and then takes jobs again.

Only ``serve --cluster`` imports this module, and only it imports Ray.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

# A cluster started with a token (Ray's default) wants it from its clients too; Ray reads the mode
# once, when it is imported, so it is set before that.
if "RAY_AUTH_MODE" not in os.environ and (
        os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").exists()):
    os.environ["RAY_AUTH_MODE"] = "token"

import ray
from PIL import Image
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from backend.models.options import LoadOptions
from backend.server.cluster_worker import EngineWorker
from backend.server.config import ClusterOptions
from backend.server.execution import failed
from backend.server.jobs import Job, JobBook, Outcome, ended, interrupted
from backend.server.runner import JobRunner
from backend.server.store import ResultStore
from shared.protocol import ErrorInfo, JobState, ServerState

log = logging.getLogger(__name__)

NAMESPACE = "layerfusion"
POLL_S = 0.05  # how often a dispatcher looks at its job's cancel flag while waiting for the stream
RAY_SHUTDOWN_S = 60.0  # a bound on killing the actors and stopping a local Ray (seconds, a hang guard)
READY_WAIT_S = 5.0  # one wait for an actor's answer; repeated until it answers or the server stops
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Slot:
    """One actor and what the API server knows of it."""

    index: int
    actor: Any = None
    pid: Optional[int] = None
    device: str = ""
    error: Optional[str] = None  # its model could not load: it takes no jobs
    current: Optional[Job] = None

    @property
    def name(self) -> str:
        return "worker-%d" % self.index

    def label(self) -> str:
        return "%s (pid %s, %s)" % (self.name, self.pid, self.device)


class WorkerLost(Exception):
    """The actor running a job died (its process ended, its node went away)."""

    def __init__(self, why: str, stepped: bool) -> None:
        super().__init__(why)
        self.stepped = stepped  # it had reported a step: the job had started denoising


class ClusterRunner(JobRunner):
    def __init__(self, options: ClusterOptions, loading: LoadOptions, store: ResultStore, book: JobBook,
                 previews: bool = True) -> None:
        super().__init__(store, book, previews)
        self.options = options
        self.loading = loading
        self.slots: List[Slot] = []
        self._stopping = threading.Event()
        self._started_ray = False
        self._threads: List[threading.Thread] = []
        self._owner = threading.Thread(target=self._own_ray, name="layerfusion-ray", daemon=True)

    # -- what the service calls --------------------------------------------------------------
    def start(self) -> None:
        self._owner.start()  # joining Ray and starting actors takes seconds: health answers meanwhile

    def running(self) -> int:
        return sum(1 for slot in self.slots if slot.current is not None)

    def workers(self) -> int:
        return sum(1 for slot in self.slots if slot.pid is not None and slot.error is None)

    def device_description(self) -> str:
        devices = sorted({slot.device for slot in self.slots if slot.device})
        return "Ray cluster, %d workers: %s" % (len(self.slots), ", ".join(devices) or "starting")

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.queue.close()
        for slot in self.slots:
            if slot.current is not None:
                slot.current.cancel.set()  # forwarded to its actor by the dispatcher
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        # Ray's own shutdown gets its time: a process that exits while it runs is aborted by Ray.
        self._owner.join(max(0.0, deadline - time.monotonic()) + RAY_SHUTDOWN_S)

    # -- the owner thread: Ray's lifetime ----------------------------------------------------
    def _own_ray(self) -> None:
        """Starts (or joins) Ray and the actors, then waits for the server to stop and ends them.

        One thread does both and lives as long as the server: Ray's local processes are started with
        a parent-death signal, which Linux sends when the *thread* that started them ends.
        """
        try:
            self._join_ray()
            self._start_actors()
        except Exception as err:  # Ray would not start or join: the server says so instead of loading
            log.exception("the Ray cluster could not be used")
            self.book.post(self.book.set_health, ServerState.error, "the Ray cluster could not be used: %s" % err)
        else:
            for slot in self.slots:
                thread = threading.Thread(target=self._dispatch, args=(slot,), name=slot.name, daemon=True)
                self._threads.append(thread)
                thread.start()
        self._stopping.wait()
        for thread in self._threads:
            thread.join()  # stop() bounds this wait by joining them first
        for slot in self.slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except (RayError, ValueError):
                pass
        if self._started_ray:
            ray.shutdown()
        log.info("the Ray workers are stopped")

    def _start_actors(self) -> None:
        count, gpus = self._worker_count()
        remote = ray.remote(EngineWorker).options(
            max_concurrency=2,  # run + cancel
            max_restarts=-1,  # Ray starts a dead worker again, for as long as the server runs
            max_task_retries=0,  # a job is retried by the dispatcher (once, before its first step)
            num_gpus=gpus,
            num_cpus=self.options.torch_threads or 1,
        )
        for index in range(count):
            self.slots.append(Slot(index, remote.remote(self.loading, self.options.torch_threads)))

    def _join_ray(self) -> None:
        if ray.is_initialized():
            return
        # The workers import this checkout: a node must hold it at the same path (docs/STUDIO.md).
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}}
        if self.options.torch_threads:
            runtime_env["env_vars"]["OMP_NUM_THREADS"] = str(self.options.torch_threads)
        # "local": a Ray of our own, even where another runs on this machine (or RAY_ADDRESS names one).
        ray.init(address=self.options.address or "local", namespace=NAMESPACE, runtime_env=runtime_env,
                 log_to_driver=False, configure_logging=False)
        self._started_ray = self.options.address is None

    def _worker_count(self) -> Tuple[int, int]:
        """How many actors, and the GPUs each asks for: one per GPU, unless told a number."""
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = self.options.workers or max(1, gpus)
        return count, 1 if gpus else 0

    def _wait_ready(self, slot: Slot) -> bool:
        """Blocks until the slot's actor answers (after a start or restart); False when stopping."""
        while not self._stopping.is_set():
            try:
                info = ray.get(slot.actor.ready.remote(), timeout=READY_WAIT_S)
            except GetTimeoutError:
                continue  # still loading its model
            except RayError as err:  # dead, restarting, or its start failed
                log.warning("%s is not up yet: %s", slot.name, _first_line(err))
                self._stopping.wait(1.0)
                continue
            slot.pid, slot.device, slot.error = info["pid"], info["device"], info["error"]
            self._report_health()
            return True
        return False

    def _report_health(self) -> None:
        if any(slot.pid is not None and slot.error is None for slot in self.slots):
            self.book.post(self.book.set_health, ServerState.ready, None)
        elif self.slots and all(slot.error for slot in self.slots):
            self.book.post(self.book.set_health, ServerState.error, self.slots[0].error)

    # -- dispatching -------------------------------------------------------------------------
    def _dispatch(self, slot: Slot) -> None:
        if not self._wait_ready(slot):
            return
        while True:
            if slot.error is not None and any(other.error is None for other in self.slots):
                return  # its model did not load; the other workers take the jobs
            job = self.queue.take()
            if job is None:
                return
            slot.current = job
            try:
                if not self._run(slot, job):
                    if not self._wait_ready(slot):  # Ray restarts the actor; wait till it is up
                        return
            finally:
                slot.current = None

    def _run(self, slot: Slot, job: Job) -> bool:
        """Runs one job on the slot's actor; False when the actor died under it."""
        if job.cancel.is_set() or job.request is None:
            self.finish(job, ended(job, JobState.cancelled), {})
            return True
        if slot.error is not None:
            self.finish(job, failed(job.params, ErrorInfo(code="model_error", message=slot.error)), {})
            return True
        early = self.begin(job, slot.label())
        if early is not None:
            self.finish(job, early, {})
            return True
        params = {**job.params, "worker": slot.label()}
        try:
            outcome, images = self._stream(slot, job, params)
        except WorkerLost as err:
            self._lost(slot, job, params, err)
            return False
        if outcome.state == JobState.cancelled and self._stopping.is_set():
            outcome = interrupted(job)
        self.finish(job, outcome, images)
        return True

    def _stream(self, slot: Slot, job: Job, params: Dict[str, Any]) -> Tuple[Outcome, Dict[str, Image.Image]]:
        stream = slot.actor.run.remote(job.id, job.request, params, self.previews)
        cancel_sent = stepped = False
        while True:
            if job.cancel.is_set() and not cancel_sent:
                slot.actor.cancel.remote(job.id)
                cancel_sent = True
            ready, _ = ray.wait([stream], timeout=POLL_S)
            if not ready:
                continue
            try:
                item = ray.get(next(stream))
            except StopIteration:
                raise WorkerLost("it ended the job without a result", stepped) from None
            except RayActorError as err:
                raise WorkerLost(_first_line(err), stepped) from None
            if item[0] == "step":
                _, step, total, preview, phase = item
                stepped = True
                self.book.post(self.book.progress, job, step, total, preview, phase)
            else:
                return item[1], item[2]

    def _lost(self, slot: Slot, job: Job, params: Dict[str, Any], lost: WorkerLost) -> None:
        why = str(lost)
        log.warning("%s died while running job %s: %s", slot.name, job.id, why)
        slot.pid = None
        if not lost.stepped and not job.retried and not job.cancel.is_set() and not self._stopping.is_set():
            job.retried = True  # it had not started denoising: nothing is lost by running it again
            self.book.post(self.book.requeued, job)
            self.queue.put_front(job)
            return
        message = ("%s stopped while running this job (%s); the other workers go on, and it is being "
                   "restarted" % (slot.name, why))
        self.finish(job, failed(params, ErrorInfo(code="worker_lost", message=message)), {})


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
