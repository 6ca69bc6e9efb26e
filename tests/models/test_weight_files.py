"""Corrupt, truncated and mismatched safetensors files are refused with a message naming the problem."""
from __future__ import annotations

import struct

import pytest
import torch
from safetensors.torch import save_file

from backend.models.weight_files import WeightFileError, check_names_and_shapes, load_tensors, read_header


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.safetensors"
    save_file({"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(5)}, str(path))
    return path


def test_good_file_reads(good):
    header = read_header(good)
    assert header["a.weight"].shape == (3, 4) and header["a.weight"].dtype == "F32"
    assert torch.equal(load_tensors(good)["a.weight"], torch.arange(12, dtype=torch.float32).reshape(3, 4))


def test_truncated_file_names_the_tensor(good, tmp_path):
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:-8])
    with pytest.raises(WeightFileError, match=r"truncated .*download"):
        load_tensors(cut)


def test_too_short_and_garbage(tmp_path):
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(WeightFileError, match="too short"):
        read_header(short)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"PK\x03\x04" + b"\x00" * 200)  # e.g. a pickle/zip checkpoint renamed
    with pytest.raises(WeightFileError, match="not a safetensors file or truncated"):
        read_header(garbage)


def test_corrupt_json_header(tmp_path):
    body = b"{not json!}"
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body)
    with pytest.raises(WeightFileError, match="corrupt safetensors header"):
        read_header(path)


def test_header_entry_size_mismatch(tmp_path):
    body = b'{"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}'
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body + b"\x00" * 8)
    with pytest.raises(WeightFileError, match="entry for 'x'"):
        read_header(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightFileError, match="no such file"):
        read_header(tmp_path / "nope.safetensors")


def test_check_names_and_shapes_names_first_mismatch():
    expected = {"a": (2, 3), "b": (4,)}
    check_names_and_shapes(expected, {"a": (2, 3), "b": (4,)}, "f")
    with pytest.raises(WeightFileError, match="unexpected tensor 'c'"):
        check_names_and_shapes(expected, {"a": (2, 3), "b": (4,), "c": (1,)}, "f")
    with pytest.raises(WeightFileError, match=r"'a' has shape \[3, 2\], expected \[2, 3\]"):
        check_names_and_shapes(expected, {"a": (3, 2), "b": (4,)}, "f")
    with pytest.raises(WeightFileError, match="missing tensor 'b'"):
        check_names_and_shapes(expected, {"a": (2, 3)}, "f")
