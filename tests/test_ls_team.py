"""Label Studio for a team: who annotated what, the policy that picks one box when several people
box the same task, conflicts with links, and `wb status` counts.

The first test feeds `apply_tasks` task dicts shaped like the server's (no server); the second
runs against the suite's real Label Studio with two accounts made by `wb ls users add`, each
annotating through the API with its own token.
"""
from __future__ import annotations

import json
import shutil

import httpx
import pytest
from sqlalchemy import select

from annotations.convert import PixelBox, rectangle_result
from annotations.feedback import ACCEPTED, DISPUTED, AnnotationState, feedback_text
from annotations.pull import annotator_name, apply_tasks
from annotations.review import Policy, current_policy
from db.models import Annotation, Image
from db.models.labels import LsProject, LsTask
from tests.conftest import Cli, load_db


def _images(ws, n):
    with ws.db.session() as s:
        return list(s.scalars(select(Image).where(Image.status == "ok", Image.duplicate_of_id.is_(None))
                              .order_by(Image.id)))[:n]


def _ann(i, im, box, user, updated):
    return {"id": i, "completed_by": user, "created_username": f" someone{user}@x.org, {user}", "was_cancelled": False,
            "result": [rectangle_result(box, "chest", im.width, im.height)], "updated_at": updated}


def _statuses(ws, image_id):
    with ws.db.session() as s:
        return {a.ls_annotation_id: (a.status, a.annotator) for a in
                s.scalars(select(Annotation).where(Annotation.image_id == image_id))}


def test_annotator_name_comes_from_completed_by():
    users = {2: "ann@lab.org"}
    assert annotator_name({"completed_by": 2, "created_username": " other@x.org, 2"}, users) == "ann@lab.org"
    assert annotator_name({"completed_by": 5, "created_username": "Ann Lee ann.lee@lab.org, 5"}, users) == "ann.lee@lab.org"
    assert annotator_name({"completed_by": {"id": 7, "email": "bo@lab.org"}}) == "bo@lab.org"
    assert annotator_name({"completed_by": 9}) == "user 9"
    assert annotator_name({}) is None


@pytest.mark.backends
def test_pull_names_annotators_and_applies_the_policy(cli, ws, imported_sample_db):
    load_db(ws, imported_sample_db)
    a, b = _images(ws, 2)
    wide, narrow = PixelBox(10, 10, a.width - 10, a.height - 10), PixelBox(10, 10, a.width / 2, a.height - 10)
    users = {2: "ann@lab.org", 3: "bo@lab.org"}
    tasks = [{"id": 50, "data": {"wb_image_id": a.id}, "updated_at": "2026-01-01T12:00:00.000000Z",
              "annotations": [_ann(501, a, wide, 2, "2026-01-01T10:00:00.000000Z"),
                              _ann(502, a, narrow, 3, "2026-01-01T11:00:00.000000Z")]},
             {"id": 51, "data": {"wb_image_id": b.id}, "updated_at": "2026-01-01T12:00:00.000000Z",
              "annotations": [_ann(503, b, PixelBox(5, 5, b.width - 5, b.height - 5), 2, "2026-01-01T10:00:00.000000Z")]}]
    with ws.db.session() as s:
        row = LsProject(server_url="http://ls.test", project_id=8, title="t", document_root="/", storages={})
        s.add(row)
        s.flush()
        s.add_all([LsTask(ls_project_id=row.id, image_id=a.id, ls_task_id=50),
                   LsTask(ls_project_id=row.id, image_id=b.id, ls_task_id=51)])
        first = apply_tasks(s, row, tasks, users=users)
    assert first.by_status == {"valid": 2, "superseded": 1}
    assert _statuses(ws, a.id) == {501: ("superseded", "ann@lab.org"), 502: ("valid", "bo@lab.org")}
    with ws.db.session() as s:
        row = s.scalars(select(LsProject)).one()
        assert apply_tasks(s, row, tasks, users=users).unchanged == 3  # pulling again changes nothing
        assert current_policy(s) == Policy("newest", 0.7)
        consensus = apply_tasks(s, row, tasks, users=users, policy=Policy("consensus", 0.7))
    assert (consensus.updated, consensus.by_status) == (2, {"disputed": 2})
    conflicts = cli.json("annotations", "conflicts")
    (pair,) = conflicts["conflicts"]
    assert (pair["ls_task_id"], pair["link"], pair["kept"]) == (50, "http://ls.test/projects/8/data?task=50", None)
    assert (pair["a"]["annotator"], pair["b"]["annotator"], pair["source"]) == ("ann@lab.org", "bo@lab.org", "label_studio")


def test_feedback_tells_annotators_of_a_disputed_task():
    disputed = [AnnotationState(1, "a", "disputed", "x"), AnnotationState(2, "b", "disputed", "x")]
    assert feedback_text(disputed, None) == DISPUTED
    settled = [AnnotationState(1, "a", "valid", None), AnnotationState(2, "b", "superseded", "policy")]
    assert feedback_text(settled, DISPUTED) == ACCEPTED
    assert feedback_text(settled, None) == ""


def _login_token(url: str, email: str, password: str) -> str:
    """The annotator's own API token, as they would copy it from Account & Settings."""
    with httpx.Client(base_url=url) as browser:
        browser.get("/user/login/")
        done = browser.post("/user/login/", data={"csrfmiddlewaretoken": browser.cookies["csrftoken"], "email": email,
                                                   "password": password}, headers={"Referer": f"{url}/user/login/"})
        assert done.status_code == 302
        return str(browser.get("/api/current-user/token").json()["token"])


@pytest.mark.backends
@pytest.mark.labelstudio
@pytest.mark.slow
def test_two_annotators_on_the_real_server(cli, ws, imported_sample_db, ls_env, tmp_path, monkeypatch):
    from label_studio_sdk import LabelStudio

    from workbench.workspace import Workspace

    load_db(ws, imported_sample_db)
    tag = ws.root.parent.name[-10:].lower()
    made = [cli.json("ls", "users", "add", f"{who}-{tag}@lab.org") for who in ("ann", "bo")]
    ann, bo = (LabelStudio(base_url=ls_env["url"], api_key=_login_token(ls_env["url"], m["email"], m["password"]))
               for m in made)
    disputed_im, agreed_im, alone_im = _images(ws, 3)
    cli.json("ls", "push", "--images", f"{disputed_im.id},{agreed_im.id},{alone_im.id}")
    with ws.db.session() as s:
        task = {t.image_id: t.ls_task_id for t in s.scalars(select(LsTask))}

    def box(im, x0, x1):
        return [rectangle_result(PixelBox(im.width * x0, im.height * 0.1, im.width * x1, im.height * 0.9), "chest",
                                 im.width, im.height)]

    ann_disputed = ann.annotations.create(id=task[disputed_im.id], result=box(disputed_im, 0.1, 0.9))
    bo_disputed = bo.annotations.create(id=task[disputed_im.id], result=box(disputed_im, 0.1, 0.5))  # IoU 0.5
    ann.annotations.create(id=task[agreed_im.id], result=box(agreed_im, 0.1, 0.9))
    bo.annotations.create(id=task[agreed_im.id], result=box(agreed_im, 0.12, 0.9))  # IoU 0.975
    ann.annotations.create(id=task[alone_im.id], result=box(alone_im, 0.2, 0.8))

    out = cli.json("ls", "pull")
    assert out["by_status"] == {"valid": 3, "superseded": 2} and out["conflict_tasks"] == 1
    emails = [m["email"] for m in made]
    # newest (the default): Bo annotated each shared task after Ann
    assert _statuses(ws, disputed_im.id) == {ann_disputed.id: ("superseded", emails[0]), bo_disputed.id: ("valid", emails[1])}
    assert {s for s, _ in _statuses(ws, agreed_im.id).values()} == {"valid", "superseded"}
    conflicts = cli.json("annotations", "conflicts")
    (pair,) = conflicts["conflicts"]
    assert (pair["ls_task_id"], pair["kept"], pair["reason"]) == (task[disputed_im.id], bo_disputed.id, "IoU 0.50 < 0.70")
    assert pair["link"] == f"{ls_env['url']}/projects/{out['project_id']}/data?task={task[disputed_im.id]}"
    assert (pair["a"]["annotator"], pair["b"]["annotator"]) == tuple(emails)
    text = cli.run("annotations", "conflicts").stdout
    assert f"by {emails[0]} vs {bo_disputed.id} by {emails[1]}: IoU 0.50 < 0.70; kept annotation {bo_disputed.id}" in text
    status = cli.json("status")["annotations"]
    assert (status["valid"], status["superseded"], status["conflicts"]["tasks"], status["conflicts"]["pairs"]) == (3, 2, 1, 1)
    assert "annotators disagree on 1 task(s) (1 pair(s); policy newest" in cli.run("status").stdout
    assert cli.json("ls", "status")["annotations"]["superseded"] == 2
    shown = cli.run("ls", "status").stdout  # the suite's server keeps its data in SQLite: no line about it
    assert shown.startswith(f"Label Studio {ls_env['url']}: running\n  project: ") and "superseded 2" in shown

    # The team switches to consensus: the disputed task has no box until they agree, and they are told.
    changed = cli.json("annotations", "policy", "consensus")
    # disputed task: both disputed; agreed task: the tie on IoU goes to the lower id (Ann's): both change
    assert (changed["tasks"], changed["annotations_changed"]) == (2, 4)
    assert {s for s, _ in _statuses(ws, disputed_im.id).values()} == {"disputed"}
    told = cli.json("ls", "pull")
    assert told["feedback_written"] == 1
    sdk = LabelStudio(base_url=ls_env["url"], api_key=ls_env["token"])
    assert sdk.tasks.get(id=task[disputed_im.id]).data["wb_feedback"] == DISPUTED
    ann.annotations.update(id=ann_disputed.id, result=box(disputed_im, 0.1, 0.52))  # Ann moves towards Bo
    settled = cli.json("ls", "pull")
    assert settled["updated"] == 2 and settled["conflict_tasks"] == 0 and settled["feedback_written"] == 1
    assert sorted(s for s, _ in _statuses(ws, disputed_im.id).values()) == ["superseded", "valid"]
    assert sdk.tasks.get(id=task[disputed_im.id]).data["wb_feedback"] == ACCEPTED
    assert cli.json("ls", "pull")["updated"] == 0

    # Label Studio's own JSON export, imported into a colleague's workspace, gives the same boxes.
    project = out["project_id"]
    export = httpx.get(f"{ls_env['url']}/api/projects/{project}/export", params={"exportType": "JSON"},
                       headers={"Authorization": f"Token {ls_env['token']}"}, timeout=60)
    assert export.status_code == 200
    (tmp_path / "export.json").write_text(export.text)
    with ws.db.session() as s:
        pulled = {(a.image_id, a.ls_annotation_id): (a.status, a.x_min, a.y_min, a.x_max, a.y_max)
                  for a in s.scalars(select(Annotation))}
    other = tmp_path / "colleague"
    other.mkdir()
    shutil.copyfile(imported_sample_db, other / "wb.db")
    monkeypatch.setenv("WB_WORKSPACE", str(other))
    monkeypatch.delenv("WB_DB", raising=False)  # the colleague's own SQLite file, whatever this test's backend
    colleague = Cli()
    colleague.json("annotations", "policy", "consensus")
    got = colleague.json("annotations", "import", str(tmp_path / "export.json"))
    assert (got["format"], got["boxes"], got["rejected"], got["unmatched"]) == ("label-studio", 5, 0, 0)
    theirs = Workspace.from_options()
    with theirs.db.session() as s:
        imported = {(a.image_id, a.ls_annotation_id): (a.status, a.x_min, a.y_min, a.x_max, a.y_max)
                    for a in s.scalars(select(Annotation))}
    assert sorted(imported) == sorted(pulled)
    for key, (status, *box) in pulled.items():
        assert imported[key][0] == status and max(abs(x - y) for x, y in zip(imported[key][1:], box, strict=True)) < 1e-6
    theirs.db.dispose()
    assert json.loads(export.text)[0]["annotations"][0]["completed_by"] in {m["id"] for m in made}
