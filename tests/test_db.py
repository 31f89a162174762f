"""Schema migrations from an empty DB, model/migration agreement, pragmas, URL handling."""
from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from db.models import Base
from db.session import alembic_config, database_url, head_revisions, known_revisions, open_database


def test_empty_file_is_migrated_to_head(tmp_path):
    db = open_database(str(tmp_path / "new.db"))
    assert {"image", "dataset_root", "split", "split_member", "annotation", "run", "prediction", "suggestion",
            "annotation_batch", "annotation_batch_item", "alembic_version"} <= set(db.table_names())
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_migrations_match_models(tmp_path):
    """A model change without a migration fails here (regenerate: scripts/regen_initial_migration.py)."""
    db = open_database(str(tmp_path / "m.db"))
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_downgrade_to_base_and_up_again(tmp_path):
    url = database_url(str(tmp_path / "d.db"))
    open_database(url).dispose()
    cfg = alembic_config(url)
    command.downgrade(cfg, "base")
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))}
    assert tables <= {"alembic_version"}
    command.upgrade(cfg, "head")
    assert "image" in open_database(url).table_names()


def test_database_url_accepts_paths_and_urls(tmp_path):
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"
    assert database_url(str(tmp_path / "a" / "b.db")) == f"sqlite:///{tmp_path}/a/b.db"
    assert not (tmp_path / "a").exists()  # a URL creates nothing; opening with create=True does
    db = open_database(str(tmp_path / "a" / "b.db"), create=True)
    assert db.created and (tmp_path / "a" / "b.db").is_file()
    assert not open_database(str(tmp_path / "a" / "b.db"), create=False).created


def test_head_revisions_agree_with_alembic():
    """The quick check `open_database` makes without importing alembic finds alembic's own heads."""
    assert head_revisions() == set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())
    assert known_revisions() == {r.revision for r in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()}


def test_a_database_behind_head_is_still_upgraded(tmp_path):
    url = database_url(str(tmp_path / "old.db"))
    open_database(url).dispose()
    command.downgrade(alembic_config(url), "base")  # stamped, but at no revision: must migrate again
    assert "image" in open_database(url).table_names()
