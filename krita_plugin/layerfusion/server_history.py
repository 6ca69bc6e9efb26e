"""The history strip's older entries: the server's earlier generations (GET /v1/jobs), with thumbnails.

Everything is asynchronous (client.Api); an older server without the job list leaves the session's
own history alone.
"""
from typing import Any, Callable, Dict, Optional

from .client import Api, HttpResult
from .pixels import thumbnail
from .targets import HistoryEntry, history_label
from .wire import protocol

AddEntry = Callable[..., None]  # Panel.add_history(job_id, label, thumb, newest=...)


def load(api: Api, history: Dict[str, HistoryEntry], limit: int, add: AddEntry) -> None:
    """Ask for the newest ``limit`` jobs; each finished generation not in ``history`` joins it."""
    api.get("%s/jobs?limit=%d" % (protocol.API_PREFIX, limit), lambda result: _listed(api, history, add, result))


def _listed(api: Api, history: Dict[str, HistoryEntry], add: AddEntry, result: HttpResult) -> None:
    if not result.ok:
        return
    try:
        data = result.json()
    except ValueError:
        return
    jobs = data.get("jobs", []) if isinstance(data, dict) else data
    for job in jobs if isinstance(jobs, list) else []:  # newest first
        if isinstance(job, dict) and job.get("state") == "done" and job.get("kind") == "generate":
            params = job.get("params") or {}
            if job.get("id") and job["id"] not in history:
                entry = HistoryEntry(job["id"], history_label(params), params)
                history[entry.job_id] = entry
                _fetch_thumb(api, entry, job, add)


def _fetch_thumb(api: Api, entry: HistoryEntry, job: Dict[str, Any], add: AddEntry) -> None:
    images = job.get("images") or {}
    url = images.get("blend") or images.get("foreground")
    if not url:
        add(entry.job_id, entry.label, None, newest=False)
        return

    def got(result: HttpResult) -> None:
        thumb: Optional[Any] = None
        if result.ok:
            try:
                thumb = thumbnail(result.body)
            except ValueError:
                thumb = None
        add(entry.job_id, entry.label, thumb, newest=False)

    api.get(url, got)
