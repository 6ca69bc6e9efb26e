"""``python -m backend serve``: run the HTTP server until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Optional

from aiohttp import web

from backend.cli.model_options import add_model_arguments, load_options
from backend.server.config import ClusterOptions, ConfigError, ServerConfig, default_output_dir
from shared.protocol import DEFAULT_HOST, DEFAULT_PORT

log = logging.getLogger(__name__)

# Printed on stdout once the socket is bound; launchers (tests, the plugin) read the port from it.
READY_LINE = "LayerFusion backend listening on http://%s:%d"


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = subparsers.add_parser("serve", help="run the HTTP server the Krita plugin talks to")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port; 0 = any free one (default %(default)s)"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="results folder (default %s)" % default_output_dir()
    )
    parser.add_argument(
        "--token", default=None, help="require 'Authorization: Bearer TOKEN' (needed off loopback)"
    )
    parser.add_argument(
        "--max-queue", type=int, default=32, help="jobs that may wait before 429 (default %(default)s)"
    )
    parser.add_argument("--no-previews", action="store_true", help="send no preview images with progress")
    studio = parser.add_argument_group("studio (Ray cluster; install with: python3 install.py --cluster)")
    studio.add_argument("--cluster", action="store_true",
                        help="run jobs on a pool of Ray workers, one per GPU, each with the model loaded")
    studio.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                        help="join this Ray cluster (started with 'ray start --head'); implies --cluster; "
                             "without it --cluster starts a Ray on this machine alone")
    studio.add_argument("--cluster-workers", type=int, default=None, metavar="N",
                        help="workers to start (default: one per GPU in the cluster, one where it has none)")
    studio.add_argument("--torch-threads", type=int, default=None, metavar="N",
                        help="torch threads in each worker (default: torch's own choice)")
    add_model_arguments(parser, default_model="sdxl")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = ServerConfig(
        host=args.host,
        port=args.port,
        loading=load_options(args),
        output_dir=args.output_dir or default_output_dir(),
        token=args.token,
        max_queue=args.max_queue,
        previews=not args.no_previews,
        cluster=cluster_options(args),
    )
    try:
        config.validate()
    except ConfigError as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config))
    except KeyboardInterrupt:
        pass
    if config.cluster is not None:
        # Ray is shut down and every result written by now; Ray's C++ threads can still abort the
        # interpreter's own finalization (SIGABRT at exit, now and then), so a studio server ends here.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def cluster_options(args: argparse.Namespace) -> Optional[ClusterOptions]:
    if not (args.cluster or args.ray_address):
        return None
    return ClusterOptions(address=args.ray_address, workers=args.cluster_workers, torch_threads=args.torch_threads)


async def _serve(config: ServerConfig) -> None:
    from backend.server.app import create_app  # imports torch; keep `--help` fast

    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else config.port
    host = "[%s]" % config.host if ":" in config.host else config.host  # IPv6 literals need brackets
    print(READY_LINE % (host, port), flush=True)
    log.info("results go to %s; model %s loads in the background", config.output_dir, config.loading.model)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: Ctrl+C arrives as KeyboardInterrupt instead
            pass
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
