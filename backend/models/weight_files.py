"""Reading ``.safetensors`` weight files with errors an artist can act on.

The safetensors library reports a truncated or corrupt file with terse messages ("invalid header",
"incomplete metadata"). Every file we load is first checked here: the 8-byte header length, the JSON
header, and that every tensor's byte range lies inside the file, so a half-finished download is named
as such before any tensor is read.
"""
from __future__ import annotations

import json
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


def read_header(path: str | Path) -> dict[str, TensorInfo]:
    """Names, dtypes and shapes of the tensors in ``path``, after checking the file is complete."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"{path}: no such file")
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise WeightFileError(f"{path}: not a safetensors file ({size} bytes, too short for a header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            raise WeightFileError(
                f"{path}: not a safetensors file or truncated (header claims {header_len} bytes, file has {size})")
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
