"""Downloads into the Hugging Face cache: resumable, with progress bars, checksums verified.

``huggingface_hub`` resumes a partial download (it keeps ``.incomplete`` files) and draws a tqdm bar
per file. After each file we compare its SHA-256 with the one the hub publishes for LFS files and, for
the LayerDiffuse files, with the values listed in METHOD.md; a mismatch removes nothing but is an error.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from backend.models import catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    repo: str
    filename: str


TARGETS: dict[str, tuple[RemoteFile, ...]] = {
    "sdxl-tokenizers": tuple(RemoteFile(catalog.SDXL_REPO, f) for f in catalog.TOKENIZER_DOWNLOADS),
    "layerdiffuse": tuple(RemoteFile(catalog.LD_ORIGINAL_REPO, f) for f in catalog.LD_ORIGINAL_FILES),
}
TARGETS["sdxl"] = tuple(RemoteFile(catalog.SDXL_REPO, f) for f in catalog.SDXL_DOWNLOADS) + TARGETS["layerdiffuse"]


class ChecksumError(RuntimeError):
    pass


def sha256_of(path: Path, chunk: int = 16 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def published_sha256(item: RemoteFile) -> Optional[str]:
    """The hub's LFS SHA-256 of a file (None for small non-LFS files), else the value METHOD.md lists."""
    from huggingface_hub import HfApi

    listed = catalog.KNOWN_SHA256.get(item.filename) if item.repo == catalog.LD_ORIGINAL_REPO else None
    try:
        infos = HfApi().get_paths_info(item.repo, [item.filename])
    except Exception as err:  # network trouble: fall back to the listed value
        log.warning("cannot ask the hub for the checksum of %s (%s)", item.filename, err)
        return listed
    lfs = getattr(infos[0], "lfs", None) if infos else None
    hub = getattr(lfs, "sha256", None)
    if hub and listed and hub != listed:
        log.warning("%s changed on the hub since the listed checksum; verifying against the hub's", item.filename)
    return hub or listed


def verify(path: Path, expected: Optional[str], item: RemoteFile) -> None:
    if not expected:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(
            f"{item.repo}/{item.filename}: SHA-256 {actual} does not match the published {expected}; delete "
            f"{path} (and its blob) and download again")


def download(target: str, *, verify_checksums: bool = True) -> list[Path]:
    """Fetch ``target`` (sdxl, layerdiffuse or sdxl-tokenizers) into the HF cache; returns the paths."""
    if target not in TARGETS:
        raise ValueError(f"unknown download target '{target}' (one of {', '.join(TARGETS)})")
    if catalog.offline():
        raise catalog.ModelNotAvailable(
            "offline: HF_HUB_OFFLINE is set, so nothing can be downloaded. Unset it on a machine with internet "
            "(or copy the files: `layerfusion models list` shows where they are looked for)")
    from huggingface_hub import hf_hub_download
    paths = []
    for item in TARGETS[target]:
        try:
            path = Path(hf_hub_download(item.repo, item.filename))
        except Exception as err:
            raise catalog.ModelNotAvailable(
                f"cannot download {item.repo}/{item.filename}: {err}. Check the internet connection (a "
                "partial download resumes when you run the command again)") from None
        if verify_checksums and item.filename.endswith(".safetensors"):
            verify(path, published_sha256(item), item)
        log.info("have %s/%s", item.repo, item.filename)
        paths.append(path)
    return paths
