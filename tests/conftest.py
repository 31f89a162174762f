"""Shared fixtures: the repo sample, the optional ../shared subset, temp workspaces, the CLI."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "kermany"
SHARED = REPO.parent / "shared"
SUBSET = SHARED / "data" / "kermany-subset"

# The only pretrained weights available offline (torchvision MobileNetV2); harmless elsewhere.
if (SHARED / "torch-cache").is_dir():
    os.environ.setdefault("TORCH_HOME", str(SHARED / "torch-cache"))


@pytest.fixture
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def subset_dir() -> Path:
    if not (SUBSET / "chest_xray").is_dir():
        pytest.skip("../shared/data/kermany-subset is not present")
    return SUBSET


@pytest.fixture
def sample_copy(tmp_path) -> Path:
    """A writable copy of the sample (for tests that plant bad files)."""
    dest = tmp_path / "data"
    shutil.copytree(SAMPLE, dest)
    return dest


# ---- database backends -------------------------------------------------------------------
# Tests marked `backends` run twice: on SQLite (the default file in the workspace) and on a real
# PostgreSQL server that the suite starts once (tests/postgres.py). Everything else runs on SQLite.

BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("backends") and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request) -> str:
    """'sqlite', or 'postgresql' for the second run of a test marked `backends`."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for the whole test run (skips, with the reason, where none can start)."""
    from tests.postgres import Unavailable, start_server

    try:
        server = start_server()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db_url(backend, request, tmp_path):
    """A location for a new, empty database on the test's backend: an SQLite path or a PostgreSQL URL."""
    if backend == "sqlite":
        yield str(tmp_path / "test.db")
        return
    server = request.getfixturevalue("pg_server")
    url = server.create_database()
    yield url
    server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def ws(tmp_path, monkeypatch, backend, request):
    """A fresh workspace in tmp_path, selected through the environment as a user would.

    On PostgreSQL, WB_DB names an empty database of its own (wb makes its schema, as in a new file).
    """
    from workbench.workspace import Workspace

    monkeypatch.setenv("WB_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("WB_DB", raising=False)
    if backend == "postgresql":
        monkeypatch.setenv("WB_DB", request.getfixturevalue("db_url"))
    workspace = Workspace.from_options()
    yield workspace
    if "db" in workspace.__dict__:  # opened: close its connections before the database is dropped
        workspace.db.dispose()


def load_db(ws, source: Path) -> None:
    """Make `ws`'s database a copy of the SQLite database `source` (a prepared workspace).

    SQLite: the file is copied. PostgreSQL: wb makes the schema in the empty database, then every
    table's rows are copied in dependency order and the id sequences moved past the copied ids.
    """
    from sqlalchemy import func, insert, select, text

    from db import open_database
    from db.models import Base

    if "://" not in ws.db_location or ws.db_location.startswith("sqlite"):
        Path(ws.db_location.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, ws.db_location.removeprefix("sqlite:///"))
        return
    src, dst = open_database(str(source), create=False), open_database(ws.db_location)
    try:
        with src.engine.connect() as read, dst.engine.begin() as write:
            for table in Base.metadata.sorted_tables:
                rows = [dict(r) for r in read.execute(select(table).order_by(*table.primary_key.columns)).mappings()]
                if rows:
                    write.execute(insert(table), rows)
                if "id" in table.c and table.c.id.autoincrement:
                    top = write.execute(select(func.max(table.c.id))).scalar()
                    if top:
                        write.execute(text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :n)"),
                                      {"t": table.name, "n": top})
    finally:
        src.dispose()
        dst.dispose()


class Cli:
    """Runs `wb ...` in-process; `run` asserts the exit code it is told to expect."""

    def __init__(self):
        from workbench.cli import app

        self.app = app
        self.runner = CliRunner()

    def run(self, *args: str, code: int = 0):
        result = self.runner.invoke(self.app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == code, f"wb {' '.join(map(str, args))} -> {result.exit_code}\n{result.output}"
        return result

    def json(self, *args: str):
        import json

        return json.loads(self.run(*args, "--json").stdout)


@pytest.fixture
def cli(ws) -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def imported_sample_db(tmp_path_factory):
    """A workspace DB with the repo sample imported and split (name 'demo'); copy before mutating."""
    from workbench.configs import SplitConfig
    from workbench.importing import import_dataset
    from workbench.splitting import create_split
    from workbench.workspace import Workspace

    root = tmp_path_factory.mktemp("sample_ws")
    ws = Workspace.from_options(workspace=str(root))
    import_dataset(ws.db, SAMPLE, progress=False)
    create_split(ws.db, "demo", SplitConfig(batch_per_class=12))
    ws.db.dispose()
    return root / "wb.db"


def add_csv_boxes(db_path: Path | str, csv_path: Path = SAMPLE / "chest_boxes.csv") -> int:
    """Test helper: Annotation rows (status valid, source file) from a chest_boxes.csv.

    `db_path`: an SQLite file or any database URL (e.g. `ws.db_location`).

    The CSV's boxes are inclusive integer pixels; the table stores exclusive edges (x_max + 1).
    Returns the number of rows added.
    """
    import csv

    from sqlalchemy import select

    from db import open_database
    from db.models import Annotation, Image

    db = open_database(str(db_path), create=False)
    with db.session() as s, open(csv_path, newline="") as fh:
        by_path = {im.rel_path: im.id for im in s.scalars(select(Image))}
        rows = [r for r in csv.DictReader(fh) if r["path"] in by_path]
        s.add_all(
            Annotation(image_id=by_path[r["path"]], source="file", origin="machine", status="valid",
                       x_min=float(r["x_min"]), y_min=float(r["y_min"]),
                       x_max=float(r["x_max"]) + 1, y_max=float(r["y_max"]) + 1)
            for r in rows
        )
    db.dispose()
    return len(rows)


@pytest.fixture
def boxed_ws(ws, imported_sample_db):
    """The `ws` workspace holding a copy of the imported sample with every chest box as a valid annotation."""
    load_db(ws, imported_sample_db)
    add_csv_boxes(ws.db_location)
    return ws


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory, imported_sample_db):
    """A real Label Studio for the whole test session, started the way `wb ls serve` starts it.

    Its workspace holds the imported repo sample, so the document root is sample/ and the
    server listens on a free 127.0.0.1 port with its data in a temp folder. The first start
    takes about 50 s. At the end the server is stopped by its PID (process group).
    Yields {"workspace", "url", "token", "pid", "folder"}.
    """
    from annotations.server import load_credentials
    from workbench import labelling
    from workbench.workspace import Workspace

    root = tmp_path_factory.mktemp("ls_workspace")
    shutil.copyfile(imported_sample_db, root / "wb.db")
    server_ws = Workspace.from_options(workspace=str(root))
    stray = {"USERNAME": "stray-user", "PORT": "1"}  # must not leak into the server (see annotations/server.py)
    saved = {k: os.environ.get(k) for k in stray}
    os.environ.update(stray)
    try:
        result = labelling.serve(server_ws)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    folder = labelling.ls_folder(server_ws)
    try:
        yield {"workspace": root, "url": result.url, "token": load_credentials(folder).token,
               "pid": result.pid, "folder": folder, "document_root": result.document_root}
    finally:
        labelling.stop(server_ws)
        server_ws.db.dispose()


def require_imagenet_mobilenet_v2() -> None:
    """Skip unless torchvision's ImageNet MobileNetV2 file is cached (here: ../shared/torch-cache).

    For tests whose assertion needs a pretrained backbone (a 1-epoch detector that finds chests, a
    classifier that learns a planted marker); everything else runs with `weights="none"`.
    """
    import torch

    if not (Path(torch.hub.get_dir()) / "checkpoints" / "mobilenet_v2-b0353104.pth").is_file():
        pytest.skip("needs torchvision's ImageNet MobileNetV2 weights under $TORCH_HOME (../shared/torch-cache)")


@pytest.fixture
def ls_env(label_studio, monkeypatch):
    """The session's Label Studio, selected through WB_LS_* as a user with their own server would."""
    monkeypatch.setenv("WB_LS_URL", label_studio["url"])
    monkeypatch.setenv("WB_LS_TOKEN", label_studio["token"])
    monkeypatch.setenv("WB_LS_DOCUMENT_ROOT", label_studio["document_root"])
    return label_studio
