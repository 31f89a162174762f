"""The one module that talks to Label Studio through label_studio_sdk.

`LabelStudioClient` wraps the SDK calls wb needs and turns its failures into
annotations.errors (wrong token, server down, project gone, rejected config). Tasks and
annotations come back as plain dicts. The token lives only in the SDK client object: it is
never logged, stored, or part of `repr`. The SDK (about a second to import) is loaded when the
first client is made, so commands that never talk to a server do not pay for it.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import httpx

from annotations.errors import AuthRejected, LabelConfigError, LabelStudioError, ProjectGone, ServerUnreachable

if TYPE_CHECKING:
    from label_studio_sdk.core.api_error import ApiError

LS_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # the only format the updated_at filter accepts
PAGE_SIZE = 1000


def parse_ls_time(text: str) -> datetime:
    """A server timestamp ('...Z' or '+00:00') -> naive UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def format_ls_time(moment: datetime) -> str:
    return moment.strftime(LS_TIME_FORMAT)


def updated_after_query(cursor: str, overlap_s: float) -> str:
    """The `query` for tasks.list: tasks whose updated_at is after cursor - overlap."""
    since = format_ls_time(parse_ls_time(cursor) - timedelta(seconds=overlap_s))
    item = {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": since}
    return json.dumps({"filters": {"conjunction": "and", "items": [item]}})


def annotated_query() -> str:
    """The `query` for tasks.list: tasks with an annotation or a skip (only_annotated is ignored)."""
    items = [
        {"filter": f"filter:tasks:{name}", "operator": "greater", "type": "Number", "value": 0}
        for name in ("total_annotations", "cancelled_annotations")
    ]
    return json.dumps({"filters": {"conjunction": "or", "items": items}})


def _api_error() -> type[ApiError]:
    """The SDK's HTTP error class (imported on first use: see the module docstring)."""
    from label_studio_sdk.core.api_error import ApiError

    return ApiError


class LabelStudioClient:
    """One server, one token. Methods raise annotations.errors, never SDK or httpx errors."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0):
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        # Plain http (the local server): skip loading the CA bundle, ~40 ms per client.
        http = httpx.Client(timeout=timeout, verify=False) if self.url.startswith("http://") else None
        self._sdk = LabelStudio(base_url=self.url, api_key=token, timeout=timeout, httpx_client=http)

    def __repr__(self) -> str:  # never show the token
        return f"LabelStudioClient({self.url!r})"

    @contextmanager
    def _calling(self, what: str, *, project: int | None = None) -> Iterator[None]:
        api_error = _api_error()
        try:
            yield
        except api_error as exc:
            code = exc.status_code
            if code in (401, 403):
                raise AuthRejected(
                    f"Label Studio at {self.url} refused the API token ({code})",
                    "check WB_LS_TOKEN, or run `wb ls token` to see the token of the server wb started",
                ) from None
            if code == 404 and project is not None:
                raise ProjectGone(
                    f"Label Studio project {project} no longer exists on {self.url}",
                    "run `wb ls push --new-project` to create a new one (annotations already pulled are kept)",
                ) from None
            detail = _detail(exc.body)
            raise LabelStudioError(f"Label Studio refused to {what} (HTTP {code}): {detail}", status_code=code) from None
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise ServerUnreachable(
                f"Label Studio at {self.url} is not answering ({type(exc).__name__})",
                "start it with `wb ls serve --detach`, or point WB_LS_URL at a running server; then run the command again",
            ) from None

    def check(self) -> str:
        """The logged-in user's name; proves the server answers and accepts the token."""
        with self._calling("identify the user"):
            user = self._sdk.users.whoami()
        return getattr(user, "email", None) or getattr(user, "username", None) or str(user.id)

    def version(self) -> str:
        with self._calling("report its version"):
            return str(self._sdk.versions.get().release)

    def get_project(self, project: int) -> dict[str, Any]:
        """{'id', 'title', 'label_config', 'task_number', 'labels': {control: [labels]}}."""
        with self._calling("get the project", project=project):
            p = self._sdk.projects.get(id=project)
        parsed = p.parsed_label_config or {}
        labels = {name: list(ctrl.get("labels") or []) for name, ctrl in parsed.items()}
        return {"id": p.id, "title": p.title, "label_config": p.label_config, "task_number": p.task_number or 0,
                "labels": labels}

    def create_project(self, title: str, label_config: str) -> int:
        try:
            with self._calling("create the project"):
                return _id(self._sdk.projects.create(title=title, label_config=label_config).id, "project")
        except LabelStudioError as exc:
            if type(exc) is LabelStudioError:
                raise LabelConfigError(
                    f"Label Studio rejected the label config: {exc.message}",
                    "fix annotations/label_config.xml (or the file given with --label-config) and push again",
                ) from None
            raise

    def set_model_version(self, project: int, model_version: str) -> None:
        with self._calling("set the model version", project=project):
            self._sdk.projects.update(id=project, model_version=model_version)

    def create_local_storage(self, project: int, path: str, title: str) -> int:
        with self._calling("add a local-files storage", project=project):
            return _id(self._sdk.import_storage.local.create(
                project=project, path=path, title=title, use_blob_urls=True
            ).id, "storage")

    def import_tasks(self, project: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        """Create tasks in one call; returns their ids in the order given.

        Posts pre-encoded JSON through the SDK's own HTTP client (same auth, base URL and
        retries): the generated `projects.import_tasks` runs a generic encoder over every field,
        which costs about a quarter of the call for a few thousand tasks.
        """
        if not tasks:
            return []
        body = json.dumps(list(tasks)).encode()
        with self._calling("import tasks", project=project):
            response = self._sdk._client_wrapper.httpx_client.request(
                f"api/projects/{project}/import", method="POST", params={"return_task_ids": "true"},
                content=body, headers={"Content-Type": "application/json"},
            )
            if not 200 <= response.status_code < 300:
                raise _api_error()(status_code=response.status_code, headers=dict(response.headers), body=_json_or_text(response))
        ids = list(response.json().get("task_ids") or [])
        if len(ids) != len(tasks):
            raise LabelStudioError(f"Label Studio created {len(ids)} tasks for {len(tasks)} sent")
        return ids

    def import_predictions(self, project: int, predictions: Sequence[dict[str, Any]]) -> int:
        if not predictions:
            return 0
        with self._calling("import predictions", project=project):
            # The SDK types `request` as its PredictionRequest models; it sends plain dicts as they are.
            response = self._sdk.projects.import_predictions(id=project, request=cast(Any, list(predictions)))
        return int(getattr(response, "created", 0) or 0)

    def get_task_data(self, task: int) -> dict[str, Any] | None:
        """A task's `data`, or None when the task no longer exists."""
        try:
            with self._calling("get the task"):
                return dict(self._sdk.tasks.get(id=str(task)).data or {})
        except LabelStudioError as exc:
            if exc.status_code == 404:
                return None
            raise

    def update_task_data(self, task: int, data: dict[str, Any]) -> None:
        """Replace a task's `data` (the whole dict: Label Studio does not merge it)."""
        with self._calling("update the task"):
            self._sdk.tasks.update(id=str(task), data=data)

    def list_users(self) -> list[dict[str, Any]]:
        """The organisation's users: [{'id', 'email'}]."""
        with self._calling("list users"):
            users = self._sdk.users.list()
        return [{"id": u.id, "email": u.email} for u in users]

    def sign_up(self, email: str, password: str) -> None:
        """Create an account with a password through the organisation's invite link.

        Label Studio's users API makes accounts without a password (nobody could log in), so
        this does what a person with the invite link does: GET the sign-up form (its CSRF
        cookie), POST e-mail and password. Admin rights (the token) are needed for the link.
        """
        with self._calling("give the invite link"):
            response = self._sdk._client_wrapper.httpx_client.request("api/invite", method="GET")
            if not 200 <= response.status_code < 300:
                raise _api_error()(status_code=response.status_code, headers=dict(response.headers),
                                   body=_json_or_text(response))
        invite = response.json()["token"]
        with self._calling("sign up the user"), httpx.Client(base_url=self.url, timeout=60.0,
                                                            follow_redirects=False) as browser:
            form = browser.get("/user/signup/", params={"token": invite})
            csrf = browser.cookies.get("csrftoken")
            if form.status_code != 200 or not csrf:
                raise _api_error()(status_code=form.status_code, headers=dict(form.headers), body="no sign-up form")
            done = browser.post("/user/signup/", params={"token": invite},
                                data={"csrfmiddlewaretoken": csrf, "email": email, "password": password},
                                headers={"Referer": f"{self.url}/user/signup/?token={invite}"})
            if done.status_code != 302:  # the form comes back (200) with its errors
                raise LabelStudioError(f"Label Studio did not create {email}: {_form_errors(done.text)}")

    def iter_tasks(self, project: int, *, query: str | None = None, full: bool = True) -> Iterator[list[dict[str, Any]]]:
        """Pages of tasks as plain dicts (with annotations and predictions when full).

        Read as JSON through the SDK's HTTP client: the generated `tasks.list` builds a typed
        object per task, which wb would only turn back into dicts. Pages are fetched by number
        up to the reported total (the SDK pager asks for one page past the end: a 404).
        """
        page = 1
        while True:
            params = {"project": project, "page": page, "page_size": PAGE_SIZE, "query": query,
                      "fields": "all" if full else None}
            with self._calling("list tasks", project=project):
                response = self._sdk._client_wrapper.httpx_client.request(
                    "api/tasks/", method="GET", params={k: v for k, v in params.items() if v is not None}
                )
                if not 200 <= response.status_code < 300:
                    raise _api_error()(status_code=response.status_code, headers=dict(response.headers),
                                   body=_json_or_text(response))
            body = response.json()
            items = body.get("tasks") or []
            if items:
                yield items
            if not items or page * PAGE_SIZE >= (body.get("total") or 0):
                return
            page += 1


def _id(value: int | None, what: str) -> int:
    if value is None:
        raise LabelStudioError(f"Label Studio created a {what} without an id")
    return value


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:300]


def _form_errors(page: str) -> str:
    """The error lines of a Django form page (its `errorlist` items), for one line of message."""
    import html
    import re

    found = [html.unescape(m).strip() for m in re.findall(r'class="errorlist[^"]*">\s*<li>(.*?)</li>', page, re.S)]
    return "; ".join(found)[:300] or "the sign-up form was refused"


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        errors = body.get("validation_errors")
        if errors:
            return "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in errors.items())
        return str(body.get("detail") or body)[:300]
    return str(body)[:300]
