"""The aiohttp application: middlewares, routes, and the job service's start and stop."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Callable, Optional

from aiohttp import web

from backend.pipeline.engine import Engine
from backend.server.auth import make_auth_middleware
from backend.server.config import ServerConfig
from backend.server.errors import error_middleware
from backend.server.jobs import JobBook
from backend.server.routes import CONFIG, SERVICE, add_routes
from backend.server.runner import JobRunner
from backend.server.service import JobService
from backend.server.store import ResultStore
from shared.protocol import MAX_UPLOAD_BYTES

log = logging.getLogger(__name__)


def cluster_runner(config: ServerConfig, store: ResultStore) -> Optional[Callable[[JobBook], JobRunner]]:
    """What runs the jobs on a cluster; None for the single-process server, which imports no Ray."""
    cluster = config.cluster
    if cluster is None:
        return None
    from backend.server.cluster import ClusterRunner

    return lambda book: ClusterRunner(cluster, config.loading, store, book, previews=config.previews)


def create_app(config: ServerConfig, engine: Optional[Engine] = None) -> web.Application:
    """The server for ``config``. ``engine`` defaults to one built from the config's model and device;
    it is loaded in the worker thread once the app starts, so the server answers health at once."""
    config.validate()
    if engine is None:
        engine = Engine(config.loading)
    # The error middleware is outermost, so auth refusals come out as JSON too.
    app = web.Application(
        middlewares=[error_middleware, make_auth_middleware(config.token)],
        client_max_size=MAX_UPLOAD_BYTES,
    )
    app[CONFIG] = config
    add_routes(app)

    async def service_context(app: web.Application) -> AsyncIterator[None]:
        store = ResultStore(config.output_dir)
        service = JobService(
            engine,
            store,
            asyncio.get_running_loop(),
            max_queue=config.max_queue,
            max_queued_upload_bytes=config.max_queued_upload_bytes,
            token_required=bool(config.token),
            previews=config.previews,
            runner=cluster_runner(config, store),
        )
        app[SERVICE] = service
        service.start()
        yield
        # Stopping joins the worker thread; keep the loop free meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, service.stop)

    app.cleanup_ctx.append(service_context)

    async def end_streams(app: web.Application) -> None:
        # Runs before aiohttp waits for open requests: event streams of jobs that will not finish
        # now would otherwise hold the shutdown for its whole timeout.
        app[SERVICE].book.close_streams()

    app.on_shutdown.append(end_streams)
    return app
