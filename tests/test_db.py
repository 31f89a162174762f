"""Schema migrations from an empty DB, model/migration agreement, pragmas, URL handling."""
from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from db.models import Base
from db.session import alembic_config, database_url, head_revisions, known_revisions, open_database


def test_empty_file_is_migrated_to_head(tmp_path):
    db = open_database(str(tmp_path / "new.db"))
    assert {"image", "dataset_root", "split", "split_member", "annotation", "run", "prediction", "suggestion",
            "annotation_batch", "annotation_batch_item", "alembic_version"} <= set(db.table_names())
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


@pytest.mark.backends
def test_migrations_match_models(db_url):
    """A model change without a migration fails here (regenerate: scripts/regen_initial_migration.py).

    Types are compared too, so a column that PostgreSQL would store differently (JSON, timestamps,
    booleans, string lengths) than the models say shows up, as do missing indexes.
    """
    db = open_database(db_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    db.dispose()
    assert diff == []


@pytest.mark.backends
def test_downgrade_to_base_and_up_again(db_url):
    url = database_url(db_url)
    open_database(url).dispose()
    cfg = alembic_config(url)
    command.downgrade(cfg, "base")
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert tables <= {"alembic_version"}
    command.upgrade(cfg, "head")
    db = open_database(url)
    assert "image" in db.table_names()
    db.dispose()


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


@pytest.mark.backends
def test_a_database_behind_head_is_still_upgraded(db_url):
    url = database_url(db_url)
    open_database(url).dispose()
    command.downgrade(alembic_config(url), "base")  # stamped, but at no revision: must migrate again
    db = open_database(url)
    assert "image" in db.table_names()
    db.dispose()


@pytest.mark.backends
def test_each_migration_step_runs_up_and_down(db_url):
    """Every revision, one at a time, up from nothing and back down (batch mode on SQLite, ALTER on PostgreSQL)."""
    url = database_url(db_url)
    cfg = alembic_config(url)
    revisions = [r.revision for r in reversed(list(ScriptDirectory.from_config(cfg).walk_revisions()))]
    for rev in revisions:
        command.upgrade(cfg, rev)
    for _ in revisions:
        command.downgrade(cfg, "-1")
    engine = create_engine(url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()


@pytest.mark.backends
def test_json_columns_store_non_finite_floats_as_null(db_url):
    """PostgreSQL's json type refuses NaN; both backends store null instead (and finite values as given)."""
    from db.models import Run
    from db.session import json_dumps

    assert json_dumps({"a": float("nan"), "b": [float("inf"), 0.25], "c": {"d": -float("inf")}, "e": "NaN"}) == (
        '{"a": null, "b": [null, 0.25], "c": {"d": null}, "e": "NaN"}')
    db = open_database(db_url)
    with db.session() as s:
        run = Run(kind="eval", metrics={"roc_auc": float("nan"), "ci": [float("inf"), 0.5]}, history=[{"loss": 1e-300}])
        s.add(run)
        s.flush()
        run_id = run.id
    with db.session() as s:
        stored = s.get(Run, run_id)
        assert (stored.metrics, stored.history) == ({"roc_auc": None, "ci": [None, 0.5]}, [{"loss": 1e-300}])
    db.dispose()
