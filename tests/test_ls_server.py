"""Label Studio sync: the whole loop against a real server, and the failure paths.

The `label_studio` fixture (tests/conftest.py) starts one server per test session. Annotator
actions go through label_studio_sdk directly, as the Label Studio UI would make them.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from annotations import SAMPLE_BOXES
from annotations.boxfile import read_box_file
from annotations.convert import PixelBox, rectangle_result
from annotations.errors import ServerUnreachable
from annotations.server import Credentials, free_port, server_env
from db.models import Image, Prediction, Run
from db.models.labels import CHEST_CLASSES, Annotation, LsProject, LsTask
from tests.conftest import SAMPLE, Cli, load_db


def _use_sample_db(ws, imported_sample_db):
    load_db(ws, imported_sample_db)


def _dump(ws) -> list[tuple]:
    """Everything sync may touch, as comparable tuples."""
    with ws.db.session() as s:
        anns = [(a.id, a.image_id, a.ls_task_id, a.ls_annotation_id, a.status, a.reason, a.box_label,
                 a.x_min, a.y_min, a.x_max, a.y_max, json.dumps(a.raw, sort_keys=True))
                for a in s.scalars(select(Annotation).order_by(Annotation.id))]
        projects = [(p.id, p.project_id, p.last_updated_at, p.gone) for p in s.scalars(select(LsProject))]
        tasks = [(t.image_id, t.ls_task_id, tuple(t.prediction_runs)) for t in s.scalars(select(LsTask).order_by(LsTask.id))]
    return anns + projects + tasks


def _all_text(ws) -> str:
    """Every value in every table of the workspace's database, as one string (any backend)."""
    from db.models import Base

    with ws.db.session() as s:
        return "\n".join(repr(tuple(row)) for table in Base.metadata.sorted_tables for row in s.execute(select(table)))


def _detector_run(ws, image_ids: list[int]) -> int:
    """A detector run whose boxes are the sample's machine boxes shrunk by 4 px (pre-annotations)."""
    boxes = {r.image: r for r in read_box_file(SAMPLE_BOXES)}
    with ws.db.session() as s:
        run = Run(kind="detector", name="test", status="done")
        s.add(run)
        s.flush()
        for im in s.scalars(select(Image).where(Image.id.in_(image_ids))):
            b = boxes[im.rel_path]
            s.add(Prediction(run_id=run.id, image_id=im.id, label=CHEST_CLASSES[im.label], score=0.8,
                             x_min=b.x_min + 4, y_min=b.y_min + 4, x_max=b.x_max - 4, y_max=b.y_max - 4))
        return run.id


@pytest.mark.backends
@pytest.mark.labelstudio
@pytest.mark.slow
def test_push_annotate_pull_loop_against_real_server(cli, ws, imported_sample_db, ls_env, tmp_path):
    from label_studio_sdk import LabelStudio

    _use_sample_db(ws, imported_sample_db)
    sdk = LabelStudio(base_url=ls_env["url"], api_key=ls_env["token"])
    with ws.db.session() as s:
        firsts = select(Image).where(Image.status == "ok", Image.duplicate_of_id.is_(None)).order_by(Image.id)
        images = list(s.scalars(firsts))[:20]
    ids = [im.id for im in images]
    by_id = {im.id: im for im in images}
    run_id = _detector_run(ws, ids)

    # A label config the server rejects (a control pointing at no object): exit 1, nothing stored.
    bad = tmp_path / "bad.xml"
    bad.write_text((Path(__file__).parents[1] / "annotations" / "label_config.xml").read_text()
                   .replace('<RectangleLabels name="bbox" toName="image"', '<RectangleLabels name="bbox" toName="nothing"'))
    res = cli.run("ls", "push", "--images", ",".join(map(str, ids)), "--label-config", bad, code=1)
    assert "rejected the label config" in res.output
    assert _dump(ws) == []

    out = cli.json("ls", "push", "--images", ",".join(map(str, ids)), "--predictions", run_id)
    assert (out["created"], out["already"], out["predictions"], out["model_version"]) == (20, 0, 20, str(run_id))
    project = out["project_id"]
    tasks = {t.id: t.model_dump(mode="json") for t in sdk.tasks.list(project=project, fields="all", page_size=100).items}
    assert len(tasks) == 20
    with ws.db.session() as s:
        task_of = {lt.image_id: lt.ls_task_id for lt in s.scalars(select(LsTask))}
    assert sorted(task_of) == sorted(ids)
    for image_id, task_id in task_of.items():
        task = tasks[task_id]
        assert task["data"]["wb_image_id"] == image_id
        assert [p["model_version"] for p in task["predictions"]] == [str(run_id)]
        pred = task["predictions"][0]["result"][0]
        assert pred["value"]["rectanglelabels"] == ["chest"]  # the class is wb's, from the image label
        assert task["data"]["wb_feedback"] == "" and task["data"]["wb_label"] == by_id[image_id].label
        assert task["data"]["wb_path"] == "/".join(by_id[image_id].rel_path.split("/")[-2:])  # no dataset split folder
    # the image is served from local files, without uploading bytes
    some = tasks[task_of[ids[0]]]
    got = httpx.get(ls_env["url"] + some["data"]["image"], headers={"Authorization": f"Token {ls_env['token']}"})
    assert got.status_code == 200 and got.content == Path(SAMPLE / by_id[ids[0]].rel_path).read_bytes()

    def box(image_id, pixel_box, label="chest"):
        im = by_id[image_id]
        return [rectangle_result(pixel_box, label, im.width, im.height)]

    i_normal, i_updated, i_deleted, i_skipped, i_outside, i_unknown = ids[:6]
    w0, h0 = by_id[i_normal].width, by_id[i_normal].height
    a_normal = sdk.annotations.create(id=task_of[i_normal], result=box(i_normal, PixelBox(10, 20, w0 - 10, h0 - 5)))
    a_updated = sdk.annotations.create(id=task_of[i_updated], result=box(i_updated, PixelBox(5, 5, 50, 60)))
    a_deleted = sdk.annotations.create(id=task_of[i_deleted], result=box(i_deleted, PixelBox(5, 5, 50, 60)))
    a_skipped = sdk.annotations.create(id=task_of[i_skipped], result=[], was_cancelled=True)
    wo = by_id[i_outside].width
    a_outside = sdk.annotations.create(id=task_of[i_outside], result=box(i_outside, PixelBox(wo * 0.9, 5, wo * 1.2, 60)))
    a_unknown = sdk.annotations.create(id=task_of[i_unknown], result=box(i_unknown, PixelBox(5, 5, 50, 60), "lung"))
    # a task someone made on the server by hand: no wb image behind it
    stranger = sdk.tasks.create(project=project, data={"image": some["data"]["image"], "wb_label": "NORMAL"})
    a_stranger = sdk.annotations.create(id=stranger.id, result=box(i_normal, PixelBox(10, 20, 60, 70)))

    first = cli.json("ls", "pull")
    assert (first["created"], first["updated"], first["deleted"]) == (7, 0, 0)
    assert first["by_status"] == {"valid": 3, "skipped": 1, "rejected": 3}

    # An annotator moves one box and deletes another.
    wu, hu = by_id[i_updated].width, by_id[i_updated].height
    sdk.annotations.update(id=a_updated.id, result=box(i_updated, PixelBox(8, 9, wu - 8, hu - 9)))
    sdk.annotations.delete(id=a_deleted.id)
    second = cli.json("ls", "pull")
    assert (second["created"], second["updated"], second["deleted"]) == (0, 1, 1)

    with ws.db.session() as s:
        rows = {a.ls_annotation_id: a for a in s.scalars(select(Annotation))}
    assert sorted(rows) == sorted(a.id for a in (a_normal, a_updated, a_deleted, a_skipped, a_outside, a_unknown, a_stranger))
    assert (rows[a_stranger.id].image_id, rows[a_stranger.id].status, rows[a_stranger.id].ls_task_id) == (
        None, "rejected", stranger.id)
    assert "no image wb knows" in rows[a_stranger.id].reason
    del rows[a_stranger.id]

    def check(ann, image_id, status, pixel_box=None, reason=None):
        row = rows[ann.id]
        assert (row.image_id, row.ls_task_id, row.status, row.source, row.origin) == (
            image_id, task_of[image_id], status, "label_studio", "human")
        if pixel_box is not None:
            got_box = (row.x_min, row.y_min, row.x_max, row.y_max)
            assert got_box == pytest.approx((pixel_box.x_min, pixel_box.y_min, pixel_box.x_max, pixel_box.y_max), abs=1e-6)
            assert row.box_label == CHEST_CLASSES[by_id[image_id].label]
            assert row.diagnosis == by_id[image_id].label
        if reason is None:
            assert row.reason is None
        else:
            assert reason in row.reason

    check(a_normal, i_normal, "valid", PixelBox(10, 20, w0 - 10, h0 - 5))
    check(a_updated, i_updated, "valid", PixelBox(8, 9, wu - 8, hu - 9))
    check(a_deleted, i_deleted, "deleted", PixelBox(5, 5, 50, 60), reason="deleted in Label Studio")
    check(a_skipped, i_skipped, "skipped", reason="skipped")
    check(a_outside, i_outside, "rejected", reason="outside")
    check(a_unknown, i_unknown, "rejected", reason="unknown label 'lung'")
    assert rows[a_normal.id].annotator

    status = cli.json("status")["annotations"]
    assert {k: status[k] for k in ("total", "valid", "rejected", "skipped", "deleted")} == {
        "total": 7, "valid": 2, "rejected": 3, "skipped": 1, "deleted": 1}
    assert sorted(r["ls_task_id"] for r in status["rejected_list"]) == sorted(
        [task_of[i_outside], task_of[i_unknown], stranger.id])

    # Pulling again changes nothing; pushing again creates no duplicates.
    before = _dump(ws)
    third = cli.json("ls", "pull")
    assert (third["created"], third["updated"], third["deleted"]) == (0, 0, 0)
    again = cli.json("ls", "push", "--images", ",".join(map(str, ids)), "--predictions", run_id)
    assert (again["created"], again["already"], again["predictions"]) == (0, 20, 0)
    assert len(sdk.tasks.list(project=project, page_size=100).items) == 21  # 20 + the stranger
    same = _dump(ws)
    assert [r for r in same if len(r) != 4] == [r for r in before if len(r) != 4]  # annotations and tasks as they were
    # A second detector run: its boxes are added to the existing tasks once, and pre-fill the editor.
    run_b = _detector_run(ws, ids)
    late = cli.json("ls", "push", "--images", ",".join(map(str, ids)), "--predictions", run_b)
    assert (late["created"], late["predictions"]) == (0, 20)
    assert cli.json("ls", "push", "--images", ",".join(map(str, ids)), "--predictions", run_b)["predictions"] == 0
    listed = [t.model_dump(mode="json") for t in sdk.tasks.list(project=project, fields="all", page_size=100).items]
    versions = sorted(tuple(sorted(p["model_version"] for p in t["predictions"])) for t in listed if t["data"].get("wb_image_id"))
    assert versions == [tuple(sorted((str(run_id), str(run_b))))] * 20
    assert sdk.projects.get(id=project).model_version == str(run_b)
    fourth = cli.json("ls", "pull")  # the tasks changed (new predictions), the annotations did not
    assert (fourth["created"], fourth["updated"], fourth["deleted"]) == (0, 0, 0) and fourth["tasks_seen"] >= 20
    after = _dump(ws)
    assert [r for r in after if len(r) == 12] == [r for r in before if len(r) == 12]  # the annotations did not change

    info = cli.json("ls", "status")
    assert (info["url"], info["running"], info["project_id"], info["tasks_pushed"]) == (ls_env["url"], True, project, 20)

    # A wrong token: one clear line, exit 1, the DB as it was.
    os.environ["WB_LS_TOKEN"] = "not-the-token"
    try:
        res = cli.run("ls", "pull", code=1)
    finally:
        os.environ["WB_LS_TOKEN"] = ls_env["token"]
    assert "refused the API token" in res.output and "Traceback" not in res.output
    assert _dump(ws) == after

    # The project deleted on the server: a clear error, then a new project on request.
    sdk.projects.delete(id=project)
    res = cli.run("ls", "pull", code=1)
    assert f"project {project} no longer exists" in res.output and "--new-project" in res.output
    assert _dump(ws) == after
    # Issue 13.14: a new project does not re-send images that already have a valid box (ids[0], ids[1]), unless asked.
    fresh = cli.json("ls", "push", "--images", ",".join(map(str, ids[:3])), "--new-project")
    assert fresh["project_id"] != project
    assert (fresh["created"], fresh["skipped_annotated"], fresh["already"]) == (1, 2, 0)
    res = cli.run("ls", "push", "--images", ",".join(map(str, ids[:3])))
    assert "skipped 2 with a valid box (--include-annotated sends them)" in res.output
    both = cli.json("ls", "push", "--images", ",".join(map(str, ids[:3])), "--include-annotated")
    assert (both["created"], both["skipped_annotated"], both["already"]) == (2, 0, 1)

    # Someone edits the project's labels on the server: wb refuses and says how to fix it.
    config = (Path(__file__).parents[1] / "annotations" / "label_config.xml").read_text()
    sdk.projects.update(id=fresh["project_id"], label_config=config.replace('value="chest"', 'value="sick chest"'))
    res = cli.run("ls", "push", "--images", ",".join(map(str, ids[:3])), code=1)
    assert "chest box labels" in res.output and "label_config.xml" in res.output

    # The token is never stored in the DB, nor written to the server's log.
    assert ls_env["token"] not in _all_text(ws)
    db_bytes = b"".join(p.read_bytes() for p in ws.root.glob("wb.db*"))  # SQLite: not in a free page either
    assert ls_env["token"].encode() not in db_bytes
    assert ls_env["token"] not in (ls_env["folder"] / "server.log").read_text(errors="replace")


@pytest.mark.labelstudio
@pytest.mark.slow
def test_server_started_like_wb_ls_serve(cli, label_studio):
    ws_root = label_studio["workspace"]
    info = json.loads(cli.run("--workspace", ws_root, "ls", "status", "--json").stdout)
    assert (info["url"], info["running"], info["managed"], info["pid"]) == (
        label_studio["url"], True, True, label_studio["pid"])
    assert info["url"].startswith("http://127.0.0.1:")
    assert cli.run("--workspace", ws_root, "ls", "token").stdout.strip() == label_studio["token"]
    from annotations.server import load_credentials

    served = cli.run("--workspace", ws_root, "ls", "serve", "--detach").output  # already running: says where and how
    creds = load_credentials(label_studio["folder"])
    assert f"already running at {label_studio['url']}" in served
    assert f"log in as {creds.email} with password {creds.password}" in served and "wb ls users add" in served
    creds = label_studio["folder"] / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    # data dir inside the workspace; document root above the imported sample
    assert Path(label_studio["document_root"]) == SAMPLE.parent
    assert (label_studio["folder"] / "data").is_dir()
    # Label Studio's own database holds the API token and the password hash: owner-only (issue 13.8).
    data = label_studio["folder"] / "data"
    assert (data / "label_studio.sqlite3").is_file()
    assert stat.S_IMODE(label_studio["folder"].stat().st_mode) == 0o700
    modes = {str(p.relative_to(data)): stat.S_IMODE(p.lstat().st_mode) for p in [data, *data.rglob("*")]}
    loose = {p: oct(m) for p, m in modes.items() if m != (0o700 if (data / p).is_dir() else 0o600)}
    assert loose == {} and len(modes) > 2
    assert stat.S_IMODE((label_studio["folder"] / "server.log").stat().st_mode) == 0o600
    env = dict(kv.split("=", 1) for kv in Path(f"/proc/{label_studio['pid']}/environ").read_text().split("\0") if "=" in kv)
    assert "USERNAME" not in env and "PORT" not in env
    assert env["COLLECT_ANALYTICS"] == "false" and env["LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"] == "true"


# ---- failure paths that need no server ------------------------------------------------------

def test_server_env_is_clean(monkeypatch, tmp_path):
    monkeypatch.setenv("USERNAME", "someone")
    monkeypatch.setenv("PORT", "9")
    monkeypatch.setenv("HOST", "0.0.0.0")
    env = server_env(Credentials("a@b", "pw", "tok123"), tmp_path / "data", tmp_path)
    assert not {"USERNAME", "PORT", "HOST"} & set(env)
    assert env["LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"] == str(tmp_path)
    assert env["LATEST_VERSION_CHECK"] == "false" and env["SENTRY_DSN"] == ""
    assert "tok123" not in repr(Credentials("a@b", "pw", "tok123"))


def test_an_older_ls_folder_is_made_private(tmp_path):
    from annotations.server import make_private

    folder = tmp_path / "ls"
    (folder / "data" / "media").mkdir(parents=True)
    for path in (folder / "data" / "label_studio.sqlite3", folder / "data" / "media" / "x.jpg", folder / "server.log"):
        path.write_text("x")
        path.chmod(0o644)
    for path in (folder, folder / "data", folder / "data" / "media"):
        path.chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    elsewhere.chmod(0o755)
    (folder / "data" / "link").symlink_to(elsewhere)  # a link's target is not ours to change
    make_private(folder)
    modes = {str(p.relative_to(folder)): oct(stat.S_IMODE(p.stat().st_mode)) for p in folder.rglob("*") if not p.is_symlink()}
    assert modes == {"data": "0o700", "data/media": "0o700", "data/label_studio.sqlite3": "0o600",
                     "data/media/x.jpg": "0o600", "server.log": "0o600"}
    assert oct(stat.S_IMODE(folder.stat().st_mode)) == "0o700"
    assert oct(stat.S_IMODE(elsewhere.stat().st_mode)) == "0o755"


def test_no_server_known_is_a_clear_error(cli, ws, imported_sample_db, monkeypatch):
    _use_sample_db(ws, imported_sample_db)
    for var in ("WB_LS_URL", "WB_LS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    res = cli.run("ls", "push", code=1)
    assert "No Label Studio server is known" in res.output and "wb ls serve --detach" in res.output
    info = cli.json("ls", "status")
    assert (info["url"], info["running"], info["project_id"]) == (None, False, None)


def test_server_not_running_is_a_clear_error(cli, ws, imported_sample_db, monkeypatch):
    _use_sample_db(ws, imported_sample_db)
    monkeypatch.setenv("WB_LS_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("WB_LS_TOKEN", "whatever")
    res = cli.run("ls", "push", code=1)
    assert "is not answering" in res.output and "wb ls serve" in res.output
    assert cli.json("ls", "status")["running"] is False


def test_missing_files_refused_before_reaching_the_server(cli, ws, sample_copy, monkeypatch):
    monkeypatch.setenv("WB_LS_URL", f"http://127.0.0.1:{free_port()}")  # nobody there: must not be asked
    monkeypatch.setenv("WB_LS_TOKEN", "whatever")
    cli.run("import", sample_copy)
    cli.run("split", "--name", "demo", "--batch-per-class", "3")
    with ws.db.session() as s:
        victim = s.scalars(select(Image).order_by(Image.id)).first()
        path = Path(victim.abs_path)
    path.unlink()
    res = cli.run("ls", "push", "--images", f"{victim.id}", code=1)
    assert "missing" in res.output and path.name in res.output and "not answering" not in res.output


class _FlakyClient:
    """Answers the project, then fails on the second page of tasks (server gone mid-sync)."""

    url = "http://127.0.0.1:1"

    def __init__(self, first_page):
        self.first_page = first_page

    def get_project(self, project):
        return {"id": project, "labels": {"bbox": list(CHEST_CLASSES.values())}, "task_number": 2}

    def iter_tasks(self, project, *, query=None, full=True):
        yield self.first_page
        raise ServerUnreachable("Label Studio at http://127.0.0.1:1 is not answering (ConnectError)", "start it")


@pytest.mark.backends
def test_pull_failing_midway_leaves_the_db_unchanged(cli, ws, imported_sample_db, monkeypatch):
    from workbench import labelling

    _use_sample_db(ws, imported_sample_db)
    with ws.db.session() as s:
        image = s.scalars(select(Image).order_by(Image.id)).first()
        row = LsProject(server_url=_FlakyClient.url, project_id=7, title="t", document_root="/", storages={})
        s.add(row)
        s.flush()
        s.add(LsTask(ls_project_id=row.id, image_id=image.id, ls_task_id=70))
        width, height, label = image.width, image.height, image.label
    page = [{"id": 70, "updated_at": "2026-11-26T01:00:00.000000Z", "data": {"wb_image_id": image.id},
             "annotations": [{"id": 700, "was_cancelled": False,
                              "result": [rectangle_result(PixelBox(1, 1, 20, 20), CHEST_CLASSES[label], width, height)]}]}]
    monkeypatch.setattr(labelling, "_client_and_key", lambda _ws: (_FlakyClient(page), _FlakyClient.url))
    before = _dump(ws)
    res = cli.run("ls", "pull", code=1)
    assert "not answering" in res.output
    assert _dump(ws) == before  # the first page's annotation was not half-written


def test_push_selection_by_ids_paths_and_default_batch(ws, imported_sample_db):
    from workbench.errors import NotFoundError
    from workbench.labelling import _select_images

    _use_sample_db(ws, imported_sample_db)
    with ws.db.session() as s:
        a, b = s.scalars(select(Image).order_by(Image.id)).all()[:2]
        what, chosen = _select_images(s, [str(a.id), b.rel_path], None, None)
        assert what == "images given" and chosen == [a.id, b.id]
        _, by_abs = _select_images(s, [b.abs_path], None, None)
        assert by_abs == [b.id]
        what, batch = _select_images(s, None, None, None)
        assert what == "batch demo/initial" and len(batch) == 24
        with pytest.raises(NotFoundError, match="not in the workspace"):
            _select_images(s, ["chest_xray/nope.jpeg"], None, None)
        with pytest.raises(NotFoundError, match="No annotation batch named 'x'"):
            _select_images(s, None, "x", None)
    res = Cli().run("ls", "push", "--images", "999999", code=1)  # unknown id: refused before any server call
    assert "not in the workspace" in res.output and "999999" in res.output


def test_managed_server_keeps_its_project_across_ports(cli, ws, imported_sample_db):
    """wb's own server may come back on another port: its project is found by data dir, not URL."""
    from annotations.server import STATE_FILE

    _use_sample_db(ws, imported_sample_db)
    folder = ws.folder("ls")
    data_dir = str(folder / "data")
    with ws.db.session() as s:
        s.add(LsProject(server_url=f"managed:{data_dir}", project_id=5, title="t", document_root="/", storages={}))
    for port in (free_port(), free_port()):
        state = {"pid": 999999, "port": port, "url": f"http://127.0.0.1:{port}", "data_dir": data_dir,
                 "document_root": str(SAMPLE.parent), "log": str(folder / "server.log")}
        (folder / STATE_FILE).write_text(json.dumps(state))
        info = cli.json("ls", "status")
        assert (info["url"], info["project_id"], info["managed"], info["running"]) == (state["url"], 5, True, False)
    assert free_port(port) == port  # a free preferred port is taken as is
