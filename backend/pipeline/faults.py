"""Run failures with a plain cause and a remedy the artist can act on: running out of memory.

Everything else a run can raise is a bug or an environment fault; the server logs it with an id.
"""

from __future__ import annotations

import gc

import torch

# CPU allocations (c10's DefaultCPUAllocator) and the MPS backend report memory as a RuntimeError.
_OOM_TEXTS = ("out of memory", "not enough memory", "can't allocate memory")

OUT_OF_MEMORY_ADVICE = (
    "try a smaller size (select a smaller area), start the backend with --cpu-offload, --vae-tiling "
    "or --attention-slicing (or --dtype fp16), or close other programs that use the GPU"
)


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and any(text in str(err).lower() for text in _OOM_TEXTS)


def out_of_memory_message(device: str, width: int, height: int) -> str:
    return "%s ran out of memory at %dx%d: %s." % (device or "the device", width, height, OUT_OF_MEMORY_ADVICE)


def release_memory() -> None:
    """Hands cached blocks back after a failed run, so the next job starts from a clean allocator."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()
