"""`wb status --json` shape, and --db / WB_DB selection."""
from __future__ import annotations


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
