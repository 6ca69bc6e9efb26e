"""Everything the server is started with; built by ``python -m backend serve`` or by tests."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from backend.models.options import LoadOptions
from shared.protocol import DEFAULT_HOST, DEFAULT_PORT, MAX_UPLOAD_BYTES


def default_output_dir() -> Path:
    """Where results go unless told otherwise: LAYERFUSION_OUTPUT, else a folder in the home dir."""
    env = os.environ.get("LAYERFUSION_OUTPUT")
    return Path(env) if env else Path.home() / "LayerFusion" / "outputs"


class ConfigError(ValueError):
    """The server must not start with this configuration."""


@dataclass
class ClusterOptions:
    """Run the jobs on a pool of Ray workers (``serve --cluster``) instead of this process's thread."""

    # A running Ray cluster to join ("HOST:PORT", or "auto"); None starts a Ray on this machine alone.
    address: Optional[str] = None
    # Workers to start; None = one per GPU the cluster has (one, on a cluster without GPUs).
    workers: Optional[int] = None
    # torch threads in each worker; None leaves torch's default (every core of its node).
    torch_threads: Optional[int] = None

    def validate(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError("--cluster-workers must be at least 1")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError("--torch-threads must be at least 1")
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--cluster needs Ray, which is not installed: python3 install.py --cluster")


@dataclass
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # The model and how to load it (the same options as the command line's model flags).
    loading: LoadOptions = field(default_factory=lambda: LoadOptions(model="sdxl"))
    output_dir: Path = Path("outputs")
    token: Optional[str] = None
    # Jobs waiting (not counting the running one) before POST /v1/jobs answers 429.
    max_queue: int = 32
    # Uploaded PNG text (base64) that waiting re-blend jobs may hold in memory together; past it,
    # another re-blend is answered 429 until the queue drains (one is always let in).
    max_queued_upload_bytes: int = 4 * MAX_UPLOAD_BYTES
    # Ask the engine for a small preview image with every step, sent on the event stream.
    previews: bool = True
    # None: one worker thread in this process (the default); else a Ray pool (cluster.py).
    cluster: Optional[ClusterOptions] = None

    def validate(self) -> None:
        if self.cluster is not None:
            self.cluster.validate()
        if not 0 <= self.port <= 65535:
            raise ConfigError("port %d is outside 0..65535" % self.port)
        if self.max_queue < 1:
            raise ConfigError("max_queue must be at least 1")
        if self.token is not None and not self.token.strip():
            raise ConfigError("the token must not be empty")
        from backend.models import distilled  # torch-free

        try:
            distilled.configured(self.loading.fast_lora, self.loading.fast_family)
        except distilled.DistilledError as err:
            raise ConfigError(str(err)) from None
        if not is_loopback(self.host) and not self.token:
            # Anyone on the network could otherwise drive the GPU and read every result.
            raise ConfigError(
                "refusing to listen on %r without a token: pass --token (or listen on 127.0.0.1)" % self.host
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything
