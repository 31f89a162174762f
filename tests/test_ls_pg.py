"""`wb ls serve --ls-db postgresql://...`: Label Studio keeps its own data in PostgreSQL.

The settings (DJANGO_DB=default + POSTGRE_*) are checked against label_studio 1.23's
core/settings; the last test starts a second Label Studio on the suite's PostgreSQL server
(`pg_server`, tests/conftest.py) and finds its users, project and tasks in that database.
"""
from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from annotations.errors import ServerStartError
from annotations.server import (
    DATABASE_FILE,
    SQLITE_FILE,
    Credentials,
    check_postgres,
    choose_database,
    free_port,
    postgres_env,
    remember_database,
    server_env,
    shown_database,
)

CREDS = Credentials("wb@localhost", "pw", "t" * 40)


def test_postgres_env_from_a_url():
    env = postgres_env("postgresql+psycopg://ls:p%40ss%20word@db.lab:6543/labelstudio")
    assert env == {"DJANGO_DB": "default", "POSTGRE_NAME": "labelstudio", "POSTGRE_USER": "ls",
                   "POSTGRE_PASSWORD": "p@ss word", "POSTGRE_HOST": "db.lab", "POSTGRE_PORT": "6543"}
    bare = postgres_env("postgresql:///ls?host=/run/postgresql")  # a socket folder, no password: none sent
    assert (bare["POSTGRE_HOST"], bare["POSTGRE_PORT"], bare["POSTGRE_PASSWORD"], bare["POSTGRE_USER"]) == (
        "/run/postgresql", "5432", "", "postgres")
    assert shown_database("postgresql://ls:secret@h/x") == "postgresql://ls:***@h/x" and shown_database(None) == "sqlite"
    bad_urls = (("mysql://a@b/c", "not 'mysql'"), ("postgresql://a@b", "names no database"), ("nonsense", "not a database URL"))
    for bad, why in bad_urls:
        with pytest.raises(ServerStartError, match=why) as err:
            postgres_env(bad)
        assert "secret" not in err.value.message


def test_server_env_selects_postgresql_only_when_asked(tmp_path):
    plain = server_env(CREDS, tmp_path / "data", tmp_path)
    assert not any(k.startswith(("POSTGRE", "DJANGO_DB")) for k in plain)  # Label Studio's default: SQLite
    pg = server_env(CREDS, tmp_path / "data", tmp_path, "postgresql://ls:pw@127.0.0.1:5/lsdb")
    assert (pg["DJANGO_DB"], pg["POSTGRE_NAME"], pg["POSTGRE_PORT"], pg["LABEL_STUDIO_BASE_DATA_DIR"]) == (
        "default", "lsdb", "5", str(tmp_path / "data"))


def test_the_database_is_remembered_and_never_switched(tmp_path):
    folder = tmp_path / "ls"
    folder.mkdir()
    url = "postgresql://ls:one@127.0.0.1:5432/lsdb"
    assert choose_database(folder, None) is None  # SQLite
    assert choose_database(folder, url) == url
    remember_database(folder, url)
    assert stat.S_IMODE((folder / DATABASE_FILE).stat().st_mode) == 0o600
    assert choose_database(folder, None) == url  # later starts need no --ls-db
    rotated = "postgresql://ls:two@127.0.0.1:5432/lsdb"
    assert choose_database(folder, rotated) == rotated  # same database, new password
    with pytest.raises(ServerStartError, match=r"keeps its data in postgresql://ls:\*\*\*@127.0.0.1:5432/lsdb, not") as err:
        choose_database(folder, "postgresql://ls:one@127.0.0.1:5432/other")
    assert "one" not in err.value.message.replace("lsdb", "")
    sqlite_folder = tmp_path / "old"
    (sqlite_folder / "data").mkdir(parents=True)
    (sqlite_folder / "data" / SQLITE_FILE).write_bytes(b"")
    with pytest.raises(ServerStartError, match="already keeps its data in SQLite"):
        choose_database(sqlite_folder, url)


def test_an_unreachable_database_is_one_line():
    with pytest.raises(ServerStartError) as err:
        check_postgres(f"postgresql://ls:secret@127.0.0.1:{free_port()}/lsdb", timeout_s=3)
    assert "Cannot connect to Label Studio's database postgresql://ls:***@" in err.value.message
    assert "secret" not in err.value.message and "\n" not in err.value.message


@pytest.mark.labelstudio
@pytest.mark.slow
def test_ls_serve_keeps_label_studio_data_in_postgresql(cli, ws, imported_sample_db, pg_server, monkeypatch):
    """A second Label Studio (the suite's runs on SQLite), on a fresh PostgreSQL database: an account,
    a project, tasks and an annotation land in PostgreSQL, and a restart without --ls-db finds them."""
    import psycopg
    from sqlalchemy.engine import make_url

    pg = pg_server
    for var in ("WB_LS_URL", "WB_LS_TOKEN", "WB_LS_DOCUMENT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    ws.root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(imported_sample_db, ws.root / "wb.db")
    url = pg.create_database()
    try:
        started = cli.json("ls", "serve", "--detach", "--ls-db", url)
        assert started["database"] == shown_database(url)
        assert not (Path(ws.root) / "ls" / "data" / SQLITE_FILE).exists()
        user = cli.json("ls", "users", "add", "pg-ann@lab.org")
        pushed = cli.json("ls", "push", "--images", "1,2")
        from label_studio_sdk import LabelStudio

        from annotations.convert import PixelBox, rectangle_result
        from annotations.server import load_credentials

        creds = load_credentials(Path(ws.root) / "ls")
        sdk = LabelStudio(base_url=started["url"], api_key=creds.token)
        task = sdk.tasks.list(project=pushed["project_id"]).items[0]
        from db.models import Image

        with ws.db.session() as s:
            im = s.get(Image, task.data["wb_image_id"])
            w, h = im.width, im.height
        sdk.annotations.create(id=task.id, result=[rectangle_result(PixelBox(5, 5, w - 5, h - 5), "chest", w, h)])
        assert cli.json("ls", "pull")["by_status"] == {"valid": 1}

        u = make_url(url)
        with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database) as conn:
            emails = {r[0] for r in conn.execute("SELECT email FROM htx_user")}
            tasks = conn.execute("SELECT count(*) FROM task WHERE project_id = %s", (pushed["project_id"],)).fetchone()[0]
            boxes = conn.execute("SELECT result FROM task_completion").fetchall()
        assert {"wb@localhost", user["email"]} <= emails and tasks == 2 and len(boxes) == 1
        assert json.dumps(boxes[0][0]).count('"chest"') == 1

        cli.run("ls", "stop")
        again = cli.json("ls", "serve", "--detach")  # no --ls-db: the remembered database
        assert again["database"] == shown_database(url)
        assert cli.json("ls", "status")["ls_database"] == shown_database(url)
        shown = cli.run("ls", "status").stdout
        assert f"Label Studio {again['url']}: running\n  Label Studio's data: {shown_database(url)}\n" in shown
        assert "server is down" not in shown
        assert cli.json("ls", "push", "--images", "1,2")["already"] == 2  # the same project, from PostgreSQL
        other = pg.url("postgres")
        res = cli.run("ls", "serve", "--detach", "--ls-db", other, code=1)
        assert "keeps its data in" in res.output
    finally:
        cli.run("ls", "stop")
