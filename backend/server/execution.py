"""One job on one engine, wherever that engine lives: the server's worker thread or a cluster worker.

Loading the model and running a job both end in a plain outcome (never an exception): a model that
cannot load says why in one line, a job that fails says why with an error id for the log.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Callable, Dict, Optional, Tuple

from PIL import Image

from backend.pipeline.engine import Engine, StepUpdate
from backend.pipeline.faults import is_out_of_memory, out_of_memory_message, release_memory
from backend.pipeline.inputs import encode_png
from backend.pipeline.progress import GenerationCancelled
from backend.server.jobs import Outcome
from shared.fields import ProtocolError
from shared.protocol import ErrorInfo, JobRequest, JobState

log = logging.getLogger(__name__)

# What a job reports each step: step, total, the preview PNG as base64 (or None), the phase.
StepReport = Callable[[int, int, Optional[str], str], None]


def encode_preview(image: Image.Image) -> str:
    """The engine's small preview as base64 PNG for the event stream (a few kB a step)."""
    return encode_png(image, compress_level=1)


def load_engine(engine: Engine) -> Optional[str]:
    """Loads the engine's model; the reason it could not, in one line, or None when it is loaded."""
    from backend.models.catalog import ModelNotAvailable

    started = time.perf_counter()
    model = getattr(engine, "model", "?")
    try:
        engine.load()
    except ModelNotAvailable as err:
        # Expected (files missing, no such device, offline): one line that says why, no traceback.
        log.error("the model %r could not be loaded: %s", model, short(err))
        return "the model could not be loaded: %s" % short(err)
    except Exception as err:
        log.exception("the model %r could not be loaded", model)
        return "the model could not be loaded: %s: %s" % (type(err).__name__, short(err))
    log.info("model loaded in %.1f s", time.perf_counter() - started)
    return None


def failed(params: Dict, error: ErrorInfo) -> Outcome:
    return Outcome(state=JobState.failed, finished=time.time(), params=params, error=error)


def execute(
    engine: Engine,
    job_id: str,
    request: JobRequest,
    params: Dict,
    *,
    report: StepReport,
    cancelled: Callable[[], bool],
    previews: bool,
) -> Tuple[Outcome, Dict[str, Image.Image]]:
    """Runs the request: how it ended (cancelled when ``cancelled`` turned true between two steps),
    and the images to keep when it is done."""

    def on_step(update: StepUpdate) -> None:
        preview = encode_preview(update.preview) if update.preview is not None else None
        report(update.step, update.total, preview, update.phase)

    try:
        result = engine.run(request, on_step=on_step, cancelled=cancelled, preview=previews)
    except GenerationCancelled:
        return Outcome(state=JobState.cancelled, finished=time.time(), params=params), {}
    except ProtocolError as err:
        return failed(params, ErrorInfo(code=err.code, message=err.message, field=err.field)), {}
    except Exception as err:
        if is_out_of_memory(err):
            release_memory()
            log.warning("job %s ran out of memory: %s", job_id, short(err))
            width, height = request.size
            message = out_of_memory_message(engine.device_description, width, height)
            return failed(params, ErrorInfo(code="out_of_memory", message=message)), {}
        error_id = uuid.uuid4().hex[:12]
        log.exception("error %s: job %s failed", error_id, job_id)
        message = "%s: %s (error id %s)" % (type(err).__name__, short(err), error_id)
        return failed(params, ErrorInfo(code="job_failed", message=message)), {}
    merged = dict(params)
    merged.update(result.params)
    return Outcome(state=JobState.done, finished=time.time(), params=merged), result.images


def short(err: BaseException, limit: int = 4000) -> str:
    """The error's whole text on one line (a reason that says where to look must not lose its end), cut
    only past ``limit`` characters, at a word boundary, with an ellipsis."""
    text = " ".join(str(err).split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > 0 else limit] + " …"
