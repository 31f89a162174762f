"""The annotator's side against the suite's real Label Studio: wb's verdict reaches the task,
rejections are listed with links, old projects keep working, accounts, predicting for a push,
and `wb ls status` while the server is down.

Annotator actions go through label_studio_sdk, as the UI makes them (tests/test_ls_browser.py
does the same through a real browser).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from annotations.convert import PixelBox, rectangle_result
from annotations.feedback import ACCEPTED
from db.models import Annotation, Image, Prediction, Run
from db.models.labels import CHEST_CLASSES, LsProject, LsTask
from tests.conftest import add_csv_boxes

LEGACY_CONFIG = Path(__file__).with_name("legacy_label_config.xml")


def _images(ws, n: int) -> list[Image]:
    """n readable first copies, alternating NORMAL and PNEUMONIA."""
    with ws.db.session() as s:
        ok = list(s.scalars(select(Image).where(Image.status == "ok", Image.duplicate_of_id.is_(None)).order_by(Image.id)))
    normal = [im for im in ok if im.label == "NORMAL"]
    sick = [im for im in ok if im.label == "PNEUMONIA"]
    return [x for pair in zip(normal, sick, strict=False) for x in pair][:n]


def _tasks(ws) -> dict[int, int]:
    with ws.db.session() as s:
        return {t.image_id: t.ls_task_id for t in s.scalars(select(LsTask).join(LsProject).where(LsProject.gone.is_(False)))}


def _box(im: Image, label: str = "chest", shrink: float = 0.1) -> dict:
    box = PixelBox(im.width * shrink, im.height * shrink, im.width * (1 - shrink), im.height * (1 - shrink))
    return rectangle_result(box, label, im.width, im.height, result_id=f"r{shrink}")


@pytest.fixture
def sample_ws(ws, imported_sample_db, ls_env):
    ws.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(imported_sample_db, ws.root / "wb.db")
    return ws


@pytest.mark.labelstudio
@pytest.mark.slow
def test_rejections_are_written_into_the_task_and_listed_with_links(cli, sample_ws, ls_env):
    from label_studio_sdk import LabelStudio

    sdk = LabelStudio(base_url=ls_env["url"], api_key=ls_env["token"])
    normal, sick, other = _images(sample_ws, 3)
    cli.json("ls", "push", "--images", f"{normal.id},{sick.id},{other.id}")
    task = _tasks(sample_ws)
    two = sdk.annotations.create(id=task[normal.id], result=[_box(normal, shrink=0.1), _box(normal, shrink=0.2)])
    wrong = sdk.annotations.create(id=task[sick.id], result=[_box(sick, label="normal chest")])  # an old-style label
    sdk.annotations.create(id=task[other.id], result=[_box(other)])

    out = cli.json("ls", "pull")
    assert out["by_status"] == {"rejected": 2, "valid": 1}
    assert (out["feedback_written"], out["rejected_total"]) == (2, 2)
    said = {t: sdk.tasks.get(id=t).data["wb_feedback"] for t in task.values()}
    assert said[task[normal.id]] == ("wb rejected this annotation: expected exactly one chest box, found 2. "
                                     "Fix the box, then press Update.")
    assert "'normal chest' disagrees with the image label PNEUMONIA" in said[task[sick.id]]
    assert said[task[other.id]] == ""
    project = out["project_id"]
    listed = cli.json("ls", "rejected")
    assert {r["ls_task_id"]: r["link"] for r in listed} == {
        t: f"{ls_env['url']}/projects/{project}/data?task={t}" for t in (task[normal.id], task[sick.id])}
    assert all(r["reason"] and r["image"].count("/") == 1 for r in listed)
    text = cli.run("ls", "rejected").stdout
    assert f"{ls_env['url']}/projects/{project}/data?task={task[normal.id]}" in text and "found 2" in text
    status = cli.json("status")["annotations"]["rejected_list"]
    assert sorted(r["link"] for r in status) == sorted(r["link"] for r in listed)
    page = httpx.get(listed[0]["link"], follow_redirects=False)
    assert page.status_code in (200, 302)  # the server knows the route (302: to the login page)

    # The annotator fixes one: the next pull accepts it and the task says so; nothing else is rewritten.
    sdk.annotations.update(id=two.id, result=[_box(normal, shrink=0.15)])
    fixed = cli.json("ls", "pull")
    assert (fixed["updated"], fixed["feedback_written"], fixed["rejected_total"]) == (1, 1, 1)
    assert sdk.tasks.get(id=task[normal.id]).data["wb_feedback"] == ACCEPTED
    assert "disagrees" in sdk.tasks.get(id=task[sick.id]).data["wb_feedback"]
    again = cli.json("ls", "pull")  # the feedback writes moved updated_at: read again, nothing to write
    assert (again["created"], again["updated"], again["feedback_written"]) == (0, 0, 0)
    with sample_ws.db.session() as s:
        assert s.scalar(select(func.count()).select_from(LsTask).where(LsTask.feedback.is_not(None),
                                                                       LsTask.feedback != "")) == 2
    assert wrong.id in {r["ls_annotation_id"] for r in cli.json("ls", "rejected")}


@pytest.mark.labelstudio
@pytest.mark.slow
def test_a_project_with_the_old_class_labels_keeps_working(cli, sample_ws, ls_env):
    from label_studio_sdk import LabelStudio

    sdk = LabelStudio(base_url=ls_env["url"], api_key=ls_env["token"])
    normal, sick = _images(sample_ws, 2)
    with sample_ws.db.session() as s:  # a detector that got the class wrong on both
        run = Run(kind="detector", name="wrong class", status="done")
        s.add(run)
        s.flush()
        for im, guess in ((normal, "PNEUMONIA"), (sick, "NORMAL")):
            s.add(Prediction(run_id=run.id, image_id=im.id, label=guess, score=0.9, x_min=5, y_min=5,
                             x_max=im.width - 5, y_max=im.height - 5))
        run_id = run.id
    res = cli.run("ls", "push", "--images", f"{normal.id},{sick.id}", "--label-config", LEGACY_CONFIG,
                  "--predictions", run_id)
    assert "Note: project" in res.output and "--new-project" in res.output
    out = cli.json("ls", "push", "--images", f"{normal.id},{sick.id}")
    assert out["box_labels"] == "legacy" and out["note"]
    task = _tasks(sample_ws)
    for im in (normal, sick):  # pre-annotations carry the image label's class, not the detector's guess
        pred = sdk.tasks.get(id=task[im.id]).predictions[0]
        result = (pred if isinstance(pred, dict) else pred.model_dump())["result"][0]
        assert result["value"]["rectanglelabels"] == [CHEST_CLASSES[im.label]]
    sdk.annotations.create(id=task[normal.id], result=[_box(normal, label="normal chest")])
    sdk.annotations.create(id=task[sick.id], result=[_box(sick, label="normal chest")])
    pulled = cli.json("ls", "pull")
    assert pulled["by_status"] == {"valid": 1, "rejected": 1}
    with sample_ws.db.session() as s:
        rows = {a.image_id: a for a in s.scalars(select(Annotation))}
    assert (rows[normal.id].status, rows[normal.id].box_label) == ("valid", "normal chest")
    assert "disagrees with the image label PNEUMONIA" in rows[sick.id].reason
    # the reason is in the task data (a column in the old project's task list)
    assert "disagrees" in sdk.tasks.get(id=task[sick.id]).data["wb_feedback"]


@pytest.mark.labelstudio
@pytest.mark.slow
def test_users_add_makes_an_account_that_can_log_in(cli, sample_ws, ls_env):
    email = f"ann-{sample_ws.root.parent.name[-12:].lower()}@lab.org"
    made = cli.json("ls", "users", "add", email)
    assert made["email"] == email and len(made["password"]) >= 12
    assert email in {u["email"] for u in cli.json("ls", "users", "list")}
    with httpx.Client(base_url=ls_env["url"]) as browser:
        browser.get("/user/login/")
        answer = browser.post("/user/login/", data={"csrfmiddlewaretoken": browser.cookies["csrftoken"], "email": email,
                                                    "password": made["password"]},
                              headers={"Referer": f"{ls_env['url']}/user/login/"})
        assert answer.status_code == 302 and browser.get("/api/current-user/whoami").json()["email"] == email
    res = cli.run("ls", "users", "add", email, code=1)
    assert f"already has a user {email}" in res.output and "Traceback" not in res.output
    assert "not an e-mail" in cli.run("ls", "users", "add", "nobody", code=1).output


@pytest.mark.labelstudio
@pytest.mark.slow
def test_push_predicts_the_images_a_detector_has_not_seen(cli, ws, imported_sample_db, ls_env):
    import torch

    from workbench.configs import make_config
    from workbench.training import train_detector

    torch.set_num_threads(1)
    ws.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(imported_sample_db, ws.root / "wb.db")
    add_csv_boxes(ws.root / "wb.db")
    det = train_detector(ws, make_config("detector", backbone="mobilenet_v2", epochs=1, image_size=64, limit=4,
                                         batch_size=2, weights="none", device="cpu", seed=0), progress=False)
    picked = [im.id for im in _images(ws, 4)]
    with ws.db.session() as s:
        assert s.scalar(select(func.count(Prediction.id)).where(Prediction.run_id == det.run_id)) == 0
    out = cli.json("ls", "push", "--images", ",".join(map(str, picked)), "--predictions", det.run_id,
                   "--include-annotated")
    with ws.db.session() as s:
        rows = list(s.scalars(select(Prediction).where(Prediction.run_id == det.run_id)))
    assert out["predicted"] == 4 and sorted(p.image_id for p in rows) == sorted(picked)
    assert {p.extra["part"] for p in rows} == {"ls-push"}
    assert out["predictions"] == sum(p.x_min is not None for p in rows) > 0
    again = cli.json("ls", "push", "--images", ",".join(map(str, picked)), "--predictions", det.run_id,
                     "--include-annotated")
    assert (again["predicted"], again["created"], again["predictions"]) == (0, 0, 0)
    # a run that cannot predict names the way out in one line
    with ws.db.session() as s:
        suggest = Run(kind="suggest", name="s", status="done", config={"detector_run": det.run_id})
        s.add(suggest)
        s.flush()
        suggest_id = suggest.id
    res = cli.run("ls", "push", "--images", ",".join(map(str, picked)), "--predictions", suggest_id,
                  "--include-annotated", code=1)
    assert "has no predictions for 4 of these 4 images" in res.output and f"--predictions {det.run_id}" in res.output


def test_ls_status_reports_the_db_while_the_server_is_down(cli, ws, imported_sample_db, monkeypatch):
    """After `wb ls stop` the state file is gone; the project, counts and last pull still show."""
    from annotations.server import LAST_PORT_FILE, free_port
    from db.models import utcnow

    for var in ("WB_LS_URL", "WB_LS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    ws.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(imported_sample_db, ws.root / "wb.db")
    folder = ws.folder("ls")
    port = free_port()
    (folder / LAST_PORT_FILE).write_text(str(port))
    with ws.db.session() as s:
        ids = list(s.scalars(select(Image.id).order_by(Image.id)))[:3]
        row = LsProject(server_url=f"managed:{folder / 'data'}", project_id=4, title="t", document_root="/",
                        storages={}, last_pull_at=utcnow())
        s.add(row)
        s.flush()
        for n, i in enumerate(ids):
            s.add(LsTask(ls_project_id=row.id, image_id=i, ls_task_id=40 + n))
        s.add_all([Annotation(image_id=ids[0], ls_project_id=row.id, source="label_studio", status="valid",
                              ls_task_id=40, ls_annotation_id=1),
                   Annotation(image_id=ids[1], ls_project_id=row.id, source="label_studio", status="rejected",
                              reason="expected exactly one chest box, found 2", ls_task_id=41, ls_annotation_id=2)])
    info = cli.json("ls", "status")
    assert (info["url"], info["running"], info["project_id"], info["tasks_pushed"]) == (
        f"http://127.0.0.1:{port}", False, 4, 3)
    assert info["annotations"] == {"valid": 1, "rejected": 1, "skipped": 0, "deleted": 0,
                                   "superseded": 0, "disputed": 0} and info["last_pull_at"]
    text = cli.run("ls", "status").stdout
    assert "server is down" in text and "wb ls serve --detach" in text and "project: 4, tasks pushed: 3" in text
    # the rejected one is listed with the link it will have when the server is back on its port
    listed = cli.json("ls", "rejected")
    assert [r["link"] for r in listed] == [f"http://127.0.0.1:{port}/projects/4/data?task=41"]
    assert json.loads(cli.run("status", "--json").stdout)["annotations"]["rejected_list"][0]["link"] == listed[0]["link"]
