"""`wb status --json` shape, and --db / WB_DB selection."""
from __future__ import annotations

import pytest


@pytest.mark.backends
def test_status_json_shape_empty(cli, ws):
    ws.db.dispose()  # an empty workspace made by the library (the CLI creates one only in `wb import`)
    out = cli.json("status")
    assert out["images"]["total"] == 0
    assert out["images"]["by_label"] == {"NORMAL": 0, "PNEUMONIA": 0}
    assert out["images"]["unreadable"] == 0 and out["images"]["duplicates"] == 0
    assert out["splits"] == {}
    for key in ("total", "valid", "rejected", "skipped", "deleted"):
        assert out["annotations"][key] == 0
    assert out["runs"] == []


@pytest.mark.backends
def test_status_after_import_and_split(cli, sample_dir):
    cli.run("import", sample_dir)
    cli.run("split", "--batch-per-class", "3")
    out = cli.json("status")
    assert out["images"]["total"] == 48
    assert out["images"]["by_label"] == {"NORMAL": 24, "PNEUMONIA": 24}
    assert out["images"]["duplicates"] == 1
    assert set(out["splits"]["grouped"]) >= {"train", "val", "test"}
    assert sum(out["splits"]["grouped"][p] for p in ("train", "val", "test")) == 48
    text = cli.run("status").stdout
    assert "Images: 48 (NORMAL 24, PNEUMONIA 24); unreadable 0; exact duplicates 1" in text


def test_db_option_and_env(cli, tmp_path, monkeypatch, sample_dir):
    target = tmp_path / "elsewhere.db"
    cli.run("--db", target, "import", sample_dir)
    assert target.exists()
    monkeypatch.setenv("WB_DB", str(target))
    assert cli.json("status")["images"]["total"] == 48
    monkeypatch.setenv("WB_DB", f"sqlite:///{tmp_path / 'url.db'}")
    assert cli.json("import", sample_dir)["added"] == 48
    assert cli.json("status")["images"]["total"] == 48
    assert (tmp_path / "url.db").exists()


def test_postgresql_url_for_every_step(cli, pg_server, sample_dir, monkeypatch):
    """`--db postgresql+psycopg://...`: an empty server database is refused until `wb import` makes the
    schema (and says so, password hidden); then the other commands use it like a file."""
    url = pg_server.create_database()
    with_password = url.replace(f"{pg_server.user}@", f"{pg_server.user}:s3cret@")  # trust auth ignores it
    refused = cli.run("--db", with_password, "status", code=1)
    assert "holds no wb workspace yet" in refused.stderr and "s3cret" not in refused.output
    made = cli.run("--db", with_password, "import", sample_dir)
    assert f"New workspace database: {with_password.replace('s3cret', '***')}" in made.stdout
    assert "s3cret" not in made.output
    assert "New workspace database" not in cli.run("--db", url, "import", sample_dir).stdout
    monkeypatch.setenv("WB_DB", url)
    cli.run("split", "--batch-per-class", "3")
    out = cli.json("status")
    assert out["images"]["total"] == 48 and out["database"] == url
    assert sum(out["splits"]["grouped"][p] for p in ("train", "val", "test")) == 48
