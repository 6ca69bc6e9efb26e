"""Reading weight files (``.safetensors``, and PyTorch ``.ckpt`` pickles) with errors an artist can act on.

The safetensors library reports a truncated or corrupt file with terse messages ("invalid header",
"incomplete metadata"). Every file we load is first checked here: the 8-byte header length, the JSON
header, and that every tensor's byte range lies inside the file, so a half-finished download is named
as such before any tensor is read.

``.ckpt`` / ``.pt`` / ``.pth`` files (and any file that is a PyTorch zip archive) are read with
``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code. A top-level
``state_dict`` entry (Lightning / A1111 checkpoints) is unwrapped and non-tensor entries are dropped, so
the rest of the loader sees the same name -> tensor mapping as from a safetensors file.
"""
from __future__ import annotations

import functools
import json
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

# A real header is a few hundred kilobytes at most (SDXL: ~2,500 tensors); anything far larger is garbage.
MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}


# Suffixes of PyTorch pickles; one with another suffix (not .safetensors) is recognised by its zip signature.
TORCH_SUFFIXES = (".ckpt", ".pt", ".pth")
ZIP_MAGIC = b"PK\x03\x04"
_TORCH_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}


class WeightFileError(ValueError):
    """A weight file that cannot be used; the message names the file and the first problem."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(magic)) == magic


def is_torch_file(path: str | Path) -> bool:
    """A PyTorch pickle (by suffix, or by the zip signature ``torch.save`` writes). A file named
    ``.safetensors`` is always read as one: its name is a promise we hold it to."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return True
    return suffix != ".safetensors" and path.is_file() and _starts_with(path, ZIP_MAGIC)


def load_torch_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a PyTorch pickle, without running any code it may contain."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"{path}: no such file")
    # mmap: shapes are known without reading gigabytes; only the zip format (torch >= 1.6) supports it.
    mmap = _starts_with(path, ZIP_MAGIC)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[-1][:200]
        raise WeightFileError(
            f"{path}: refused: this checkpoint contains Python objects other than tensors, and loading it would "
            f"run code from the file ({first}); use a .safetensors version of the model instead") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise WeightFileError(
            f"{path}: not a readable PyTorch checkpoint, or truncated ({str(err).splitlines()[0][:200]}); "
            "if it was downloaded, download it again") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # Lightning / A1111 training checkpoints wrap the weights
    if not isinstance(loaded, dict):
        raise WeightFileError(f"{path}: not a checkpoint (holds a {type(loaded).__name__}, not named tensors)")
    # Training checkpoints also carry counters (global_step, epoch); only the tensors are weights.
    return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _torch_header(path: Path) -> dict[str, TensorInfo]:
    stat = path.stat()
    return dict(_cached_torch_header(str(path.resolve()), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=16)
def _cached_torch_header(path: str, mtime_ns: int, size: int) -> dict[str, TensorInfo]:
    """Shapes only, cached by path, time and size: loading asks for the header several times, and a
    pre-1.6 (non-zip) pickle cannot be memory-mapped, so each ask would read the whole file."""
    return {k: TensorInfo(_TORCH_DTYPES.get(v.dtype, str(v.dtype)), tuple(v.shape))
            for k, v in load_torch_file(path).items()}


def read_header(path: str | Path) -> dict[str, TensorInfo]:
    """Names, dtypes and shapes of the tensors in ``path``, after checking the file is complete."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"{path}: no such file")
    if is_torch_file(path):
        return _torch_header(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise WeightFileError(f"{path}: not a safetensors file ({size} bytes, too short for a header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            hint = "; it is a PyTorch checkpoint: name it .ckpt" if prefix.startswith(ZIP_MAGIC) else ""
            raise WeightFileError(f"{path}: not a safetensors file or truncated (header claims {header_len} "
                                  f"bytes, file has {size}){hint}")
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightFileError(f"{path}: corrupt safetensors header ({err})") from None
    if not isinstance(header, dict):
        raise WeightFileError(f"{path}: corrupt safetensors header (not a JSON object)")
    data_len = size - 8 - header_len
    tensors: dict[str, TensorInfo] = {}
    end_max = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], tuple(int(s) for s in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise WeightFileError(f"{path}: corrupt safetensors header entry for '{name}'") from None
        info = TensorInfo(dtype, shape)
        if dtype not in DTYPE_BYTES or end - start != info.numel * DTYPE_BYTES[dtype]:
            raise WeightFileError(f"{path}: corrupt safetensors header entry for '{name}'")
        if end > data_len:
            raise WeightFileError(
                f"{path}: truncated (tensor '{name}' ends at byte {end}, the file holds {data_len} data bytes);"
                " the download was probably interrupted — download it again")
        end_max = max(end_max, end)
        tensors[name] = info
    if end_max != data_len:
        raise WeightFileError(f"{path}: corrupt safetensors file ({data_len - end_max} stray bytes after the tensors)")
    return tensors


def load_tensors(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of a checked file."""
    from safetensors.torch import load_file

    if is_torch_file(path):
        tensors = load_torch_file(path)
        return {k: v.to(device) for k, v in tensors.items()} if device != "cpu" else tensors
    read_header(path)
    try:
        return load_file(str(path), device=device)
    except Exception as err:  # the library's own error types vary by version
        raise WeightFileError(f"{path}: cannot read tensors ({err})") from None


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write atomically, so an interrupted write never leaves a file that looks complete."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(partial), metadata=metadata)
    partial.replace(path)


def check_names_and_shapes(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]],
                           source: str) -> None:
    """Refuse ``found`` unless it has exactly the ``expected`` names and shapes; name the first mismatch."""
    for name, shape in found.items():
        if name not in expected:
            raise WeightFileError(f"{source}: unexpected tensor '{name}' (not in the expected layout)")
        if tuple(shape) != tuple(expected[name]):
            raise WeightFileError(
                f"{source}: tensor '{name}' has shape {list(shape)}, expected {list(expected[name])}")
    for name in expected:
        if name not in found:
            raise WeightFileError(f"{source}: missing tensor '{name}' ({len(expected) - len(found)} missing)")
