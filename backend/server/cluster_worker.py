"""The Ray actor a cluster runs one of per GPU: it loads the engine once and runs one job at a time.

A job's progress comes back as a stream (a Ray generator method): ("step", step, total, preview,
phase) items, then one ("end", outcome, images). The engine runs on its own thread so the stream can
be fed from the engine's step callback; ``cancel`` arrives on a second actor thread and sets the flag
the engine polls between steps.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Dict, Iterator, Optional, Tuple

from backend.models.options import LoadOptions
from backend.pipeline.engine import Engine
from backend.server.execution import execute, failed, load_engine
from shared.protocol import ErrorInfo, JobRequest

Item = Tuple[Any, ...]
_END = "end"


class EngineWorker:
    """Decorated with ``ray.remote`` by cluster.py (so this module imports no Ray itself)."""

    def __init__(self, options: LoadOptions, torch_threads: Optional[int] = None) -> None:
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self.engine = Engine(options)
        self.load_error = load_engine(self.engine)
        self._flags: Dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def ready(self) -> Dict[str, Any]:
        """How this worker stands: its load error (None when loaded), device and process id."""
        return {"error": self.load_error, "device": self.engine.device_description, "pid": os.getpid()}

    def cancel(self, job_id: str) -> None:
        self._flag(job_id).set()

    def run(self, job_id: str, request: JobRequest, params: Dict[str, Any], previews: bool) -> Iterator[Item]:
        flag = self._flag(job_id)
        try:
            if self.load_error is not None:
                yield (_END, failed(params, ErrorInfo(code="model_error", message=self.load_error)), {})
                return
            items: "queue.Queue[Item]" = queue.Queue()

            def report(step: int, total: int, preview: Optional[str], phase: str) -> None:
                items.put(("step", step, total, preview, phase))

            def work() -> None:
                outcome, images = execute(self.engine, job_id, request, params, report=report,
                                          cancelled=flag.is_set, previews=previews)
                items.put((_END, outcome, images))

            threading.Thread(target=work, name="layerfusion-job", daemon=True).start()
            while True:
                item = items.get()
                yield item
                if item[0] == _END:
                    return
        finally:
            with self._lock:
                self._flags.pop(job_id, None)

    def _flag(self, job_id: str) -> threading.Event:
        with self._lock:
            return self._flags.setdefault(job_id, threading.Event())
