"""Links into Label Studio for what wb stores (no server call: `wb status` lists them offline).

A project row names its server by URL, or by `managed:<data dir>` for the server `wb ls serve`
runs from `<workspace>/ls/`; that one's URL is where it runs, else where it ran last.
"""
from __future__ import annotations

from pathlib import Path

from annotations.server import known_url

MANAGED_PREFIX = "managed:"


def server_url(server_key: str) -> str | None:
    """The base URL a project row's `server_url` key stands for (None: wb's server never ran)."""
    if server_key.startswith(MANAGED_PREFIX):
        return known_url(Path(server_key[len(MANAGED_PREFIX):]).parent)
    return server_key.rstrip("/")


def task_url(base_url: str, project_id: int, task_id: int) -> str:
    """The labelling view of one task (the data manager opens it beside the task list)."""
    return f"{base_url}/projects/{project_id}/data?task={task_id}"
