"""Hostile and unlucky inputs (issue 13): each one a one-line error or a recorded fact, never a
traceback, an orphan process or a write where it does not belong.

tests/hostile_inputs.md lists every input tried and the test that covers it: add new ones there
and here. Cases marked "real processes" start `wb` with subprocess (kill -9, two at once, another
user's permissions), since an in-process run cannot show them.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from db.models import Image
from tests.conftest import REPO, load_db

NORMAL_TRAIN = "chest_xray/train/NORMAL"


# ---- helpers -----------------------------------------------------------------------------

def one_line_error(result, *needles: str) -> str:
    """The run failed with exit 1 and ended with "Error: ..." (plus at most a "Hint: ..." line), no
    traceback. Progress-bar lines before the error are allowed."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
    assert starts, result.stderr
    lines = lines[starts[-1]:]
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("Hint: ")), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def wb_env(**extra: str) -> dict:
    """The environment for a real `wb` process that runs this checkout's code."""
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


WB = [sys.executable, "-c", "from workbench.cli import main; main()"]


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose header claims width x height pixels (Pillow checks the size on open)."""
    buf = io.BytesIO()
    PILImage.new("L", (16, 16)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")  # SOF0: marker, length(2), precision(1), height(2), width(2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _count(db, *where) -> int:
    with db.session() as s:
        return s.scalar(select(func.count(Image.id)).where(*where)) or 0


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process from /proc; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[1] == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has exited


def _drop_file_capabilities() -> None:
    """In the child before exec: root loses the capabilities that bypass file permissions.

    Removing CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set (prctl
    PR_CAPBSET_DROP) makes the exec'd process obey modes like any user, without a second user.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # 24 = PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def unprivileged(tmp_path):
    """Run a real `wb` that file permissions apply to (root normally ignores them).

    Yields (scratch folder, run(args) -> CompletedProcess); the workspace is scratch/ws.
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("drops root's file capabilities with Linux prctl")
    preexec = _drop_file_capabilities if os.getuid() == 0 else None
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def run(args) -> subprocess.CompletedProcess:
        env = wb_env(WB_WORKSPACE=str(scratch / "ws"))
        env.pop("WB_DB", None)
        return subprocess.run([*WB, *map(str, args)], env=env, cwd=scratch, preexec_fn=preexec,
                              capture_output=True, text=True, timeout=300)

    probe = subprocess.run(["ls", "/"], preexec_fn=preexec, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot drop root's file capabilities here")
    try:
        yield scratch, run
    finally:
        for path in scratch.rglob("*"):  # restore modes the test removed, so pytest can clean up
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)


# ---- 1: an image over Pillow's decompression-bomb limit -------------------------------------

def test_huge_image_is_recorded_unreadable_not_a_traceback(cli, ws, sample_copy):
    (sample_copy / NORMAL_TRAIN / "IM-9999-0001.jpeg").write_bytes(jpeg_claiming(20000, 20000))  # 400 MP
    out = cli.json("import", sample_copy)
    assert out["imported"] == {"NORMAL": 24, "PNEUMONIA": 24} and out["unreadable"] == {"NORMAL": 1}
    reasons = {r["path"]: r["reason"] for r in cli.json("status")["images"]["unreadable_files"]}
    assert reasons[f"{NORMAL_TRAIN}/IM-9999-0001.jpeg"].startswith("too large to decode safely")
    assert cli.json("import", sample_copy)["added"] == 0  # a rerun is not stuck on it either


# ---- 2: kill -9 of `wb import` leaves no pool worker alive (real processes) -------------------

@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads parent PIDs from /proc (Linux)")
def test_killed_import_leaves_no_orphan_workers(ws, sample_copy):
    folder = sample_copy / NORMAL_TRAIN
    first = next(folder.glob("*.jpeg")).read_bytes()
    for i in range(120):  # enough files for the worker pool (> 64 to do)
        (folder / f"IM-{7000 + i}-0001.jpeg").write_bytes(first + bytes([i % 251]))  # after the end marker
    code = (
        "import time, workbench.importing as imp\n"
        "from workbench.workspace import Workspace\n"
        "imp.CHUNK = 8\n"
        "real = imp._record\n"
        "def slow(*a, **k):\n    out = real(*a, **k); time.sleep(1.0); return out\n"
        "imp._record = slow\n"
        f"imp.import_dataset(Workspace.from_options().db, {str(sample_copy)!r}, workers=2, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=wb_env())
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2 and proc.poll() is None:
            time.sleep(0.2)
            workers = [p for p in _children(proc.pid) if _alive(p)]
        assert len(workers) >= 2, "the import did not start its worker pool"
        while time.time() < deadline and _count(ws.db) < 8:  # a chunk is in: work is under way
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        left = [p for p in workers if _alive(p)]
        assert not left, f"pool workers outlived the killed import: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in _children(proc.pid) + [p for p in locals().get("workers", []) if _alive(p)]:
            try:
                os.kill(p, signal.SIGKILL)  # only the workers this test started
            except ProcessLookupError:
                pass
    assert _count(ws.db) % 8 == 0  # whole chunks only


# ---- 3: a symlink loop in a class folder does not hide its real files ------------------------

def test_symlink_loop_does_not_make_real_files_missing(cli, ws, sample_copy):
    from db.models import SplitMember
    from pipelines.imagecheck import missing_files
    from workbench.runs import part_images

    cli.run("import", sample_copy)
    cli.run("split", "--batch-per-class", "3")
    folder = sample_copy / NORMAL_TRAIN
    (folder / "loop-a.jpeg").symlink_to(folder / "loop-b.jpeg")
    (folder / "loop-b.jpeg").symlink_to(folder / "loop-a.jpeg")
    with ws.db.session() as s:
        images = list(s.scalars(select(Image).where(Image.rel_path.like(f"{NORMAL_TRAIN}/%"))))
        assert len(images) == 12 and missing_files(images) == []
        assert s.scalar(select(func.count()).select_from(SplitMember)) == 48
        split_id, train = part_images(s, None, "train")  # the check train/eval/suggest run first
        assert train
    (folder / images[0].rel_path.rsplit("/", 1)[1]).unlink()  # a file really gone is still reported
    with ws.db.session() as s:
        images = list(s.scalars(select(Image).where(Image.rel_path.like(f"{NORMAL_TRAIN}/%"))))
        assert missing_files(images) == [images[0].abs_path]


# ---- 4, 7, 11: databases wb must not use, and must not write to ----------------------------

def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _foreign_sqlite(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE image (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO image (name) VALUES ('not ours')")
    con.commit()
    con.close()
    return path


def _newer_wb_db(path: Path) -> Path:
    from db import open_database

    open_database(str(path)).dispose()
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    con.commit()
    con.close()
    return path


def _damaged_wb_db(path: Path) -> Path:
    from db import open_database

    open_database(str(path)).dispose()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # page 1 after the header: the schema table
    path.write_bytes(bytes(data))
    return path


# (id, how to make the --db value from tmp_path, what the one line must say)
BAD_DATABASES = [
    ("text-file", lambda t: _write(t / "notes.txt", "hello"), "file is not a database"),
    ("folder", lambda t: _folder(t / "adir"), "is a folder, not a database file"),
    ("missing-folder", lambda t: t / "no" / "such" / "dir" / "x.db", "No wb database at"),
    ("unknown-scheme", lambda t: "foo://bar", "cannot use the database URL foo://bar"),
    ("postgres-down", lambda t: "postgresql://nobody:secret@127.0.0.1:1/x", ""),
    ("foreign-sqlite", lambda t: _foreign_sqlite(t / "other.db"), "is not a wb database"),
    ("newer-wb", lambda t: _newer_wb_db(t / "new.db"), "schema revision '9999_from_the_future'"),
    ("damaged-wb", lambda t: _damaged_wb_db(t / "bad.db"), ""),
]


@pytest.mark.parametrize("make, says", [c[1:] for c in BAD_DATABASES], ids=[c[0] for c in BAD_DATABASES])
def test_bad_database_is_one_line_and_untouched(cli, tmp_path, make, says):
    target = make(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    line = one_line_error(cli.run("--db", target, "status", code=1), says)
    assert "secret" not in line  # a password in a URL is never shown
    if not str(target).startswith(("foo:", "postgresql:")) and not Path(target).is_dir():
        one_line_error(cli.run("--db", target, "split", code=1), says)
    after = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written: no tables, no WAL switch, no -wal/-shm, no new file


def test_foreign_database_refused_by_import_too(cli, tmp_path, sample_dir):
    _foreign_sqlite(tmp_path / "other.db")
    digest = hashlib.sha256((tmp_path / "other.db").read_bytes()).hexdigest()
    one_line_error(cli.run("--db", tmp_path / "other.db", "import", sample_dir, code=1), "is not a wb database")
    assert hashlib.sha256((tmp_path / "other.db").read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_mistyped_db_creates_nothing_and_import_creates_and_says_so(cli, tmp_path, sample_dir):
    target = tmp_path / "nonexistent" / "dir" / "x.db"
    one_line_error(cli.run("--db", target, "status", code=1), f"No wb database at {target}")
    assert not (tmp_path / "nonexistent").exists()
    result = cli.run("--db", target, "import", sample_dir)
    assert f"New workspace database: {target}" in result.stdout
    assert cli.json("--db", target, "status")["images"]["total"] == 48
    assert "New workspace database" not in cli.run("--db", target, "import", sample_dir).stdout


def test_unwritable_database_folder_is_one_line(unprivileged, sample_dir):
    scratch, run = unprivileged
    locked = scratch / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    result = run(["--db", locked / "x.db", "import", sample_dir])
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
    assert not (locked / "x.db").exists()


# ---- 5: a folder wb cannot read is reported, not skipped in silence (another user) -----------

def test_unreadable_folder_is_reported(unprivileged, sample_dir):
    scratch, run = unprivileged
    data = scratch / "data"
    shutil.copytree(sample_dir, data)
    (data / "chest_xray" / "test" / "PNEUMONIA").chmod(0o000)
    result = run(["import", data])
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Error: 1 folder(s) could not be read, e.g. ") and "Traceback" not in result.stderr
    assert "chest_xray/test/PNEUMONIA: Permission denied" in lines[0] and "imported 40 file(s)" in lines[0]
    (data / "chest_xray" / "test" / "PNEUMONIA").chmod(0o755)
    again = run(["import", data, "--json"])
    assert again.returncode == 0, again.stderr
    assert '"added": 8' in again.stdout  # the rerun picks up the folder's files


# ---- 6: two imports at once (real processes) -------------------------------------------------

@pytest.mark.backends
def test_two_imports_at_once_both_finish(ws, sample_copy):
    folder = sample_copy / NORMAL_TRAIN
    first = next(folder.glob("*.jpeg")).read_bytes()
    for i in range(300):  # a few chunks, so the two really overlap
        (folder / f"IM-{7000 + i}-0001.jpeg").write_bytes(first + bytes([i % 251, i // 251]))
    env = wb_env(WB_WORKSPACE=str(ws.root))
    procs = [subprocess.Popen([*WB, "import", str(sample_copy), "--workers", "1"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err
    assert _count(ws.db) == 348
    with ws.db.session() as s:
        assert s.scalar(select(func.count(func.distinct(Image.rel_path)))) == 348
        assert _count(ws.db, Image.duplicate_of_id.is_not(None)) == 1  # the sample's one pair
        firsts = s.execute(select(Image.sha256, func.count()).where(Image.duplicate_of_id.is_(None))
                           .group_by(Image.sha256).having(func.count() > 1)).all()
        assert firsts == []  # each content has one first copy


# ---- 12: files recorded unreadable are checked again by the next import ----------------------

@pytest.mark.backends
def test_import_rechecks_unreadable_files(cli, ws, sample_copy):
    folder = sample_copy / NORMAL_TRAIN
    good = folder / "IM-0185-0001.jpeg"
    whole = good.read_bytes()
    good.write_bytes(whole[: len(whole) // 2])
    (folder / "IM-9003-0001.jpeg").write_text("still not a picture")
    out = cli.json("import", sample_copy)
    assert out["unreadable"] == {"NORMAL": 2}
    good.write_bytes(whole)  # fixed
    again = cli.json("import", sample_copy)
    assert (again["added"], again["rechecked"], again["now_readable"]) == (0, 2, {"NORMAL": 1})
    assert "checked again 1 file(s) recorded unreadable: 0 readable now" in cli.run("import", sample_copy).stdout
    with ws.db.session() as s:
        row = s.scalar(select(Image).where(Image.rel_path == f"{NORMAL_TRAIN}/IM-0185-0001.jpeg"))
        assert (row.status, row.reason, row.size_bytes) == ("ok", None, len(whole))
        assert row.sha256 == hashlib.sha256(whole).hexdigest() and row.width > 100
    status = cli.json("status")["images"]
    assert status["unreadable"] == 1 and status["unreadable_files"][0]["path"].endswith("IM-9003-0001.jpeg")


# ---- 9: split and training options that used to end in tracebacks or empty parts -------------

@pytest.mark.parametrize("args, says", [
    (["split", "--ratios", "nan,0.5,0.5"], "ratios must be three non-negative numbers"),
    (["split", "--ratios", "inf,0,0"], "ratios must be three non-negative numbers"),
    (["split", "--batch-per-class", "-5"], "--batch-per-class must be 0 or more"),
], ids=["ratios-nan", "ratios-inf", "batch-negative"])
@pytest.mark.backends
def test_bad_split_options_are_one_line(cli, ws, imported_sample_db, args, says):
    load_db(ws, imported_sample_db)
    one_line_error(cli.run(*args, "--name", "x", code=1), says)
    assert "x" not in cli.json("status")["splits"]


@pytest.mark.parametrize("args", [
    ["train", "classifier", "--threads", "-1", "--epochs", "1"],
    ["train", "detector", "--workers", "-2", "--epochs", "1"],
    ["import", ".", "--workers", "0"],
    ["ls", "serve", "--port", "99999"],
], ids=["threads", "loader-workers", "import-workers", "port"])
def test_out_of_range_numbers_are_usage_errors(cli, args):
    result = cli.run(*args, code=2)  # click's usage error: no traceback, nothing started
    assert "Invalid value" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.backends
def test_replacing_a_split_that_runs_use_is_refused(cli, boxed_ws):
    from db.models import Run, Split

    with boxed_ws.db.session() as s:
        split = s.scalar(select(Split).where(Split.name == "demo"))
        s.add(Run(kind="classifier", status="done", config={}, split_id=split.id))
    result = cli.run("split", "--name", "demo", "--replace", code=1)
    one_line_error(result, "Split 'demo' is used by 1 run(s) (1)")
    assert "Hint: give the new split another --name" in result.stderr
    assert cli.json("status")["splits"]["demo"]["train"] > 0  # still there
    assert cli.json("split", "--name", "demo2")["name"] == "demo2"


# ---- 10: an image damaged after import names itself; the run is marked failed -----------------

TINY_CLS = ("--members", "mobilenet_v2", "--image-size", "64", "--batch-size", "4", "--weights", "none",
            "--threads", "1", "--device", "cpu", "--epochs", "1")


@pytest.fixture
def damaged_ws(cli, ws, sample_copy):
    """The sample copy imported, split and boxed; then one train image truncated on disk."""
    from db.models import SplitMember
    from tests.conftest import add_csv_boxes

    cli.run("import", sample_copy)
    cli.run("split", "--strategy", "source", "--name", "demo", "--batch-per-class", "3")
    add_csv_boxes(ws.db_location)
    with ws.db.session() as s:
        victim = s.scalar(select(Image).join(SplitMember, SplitMember.image_id == Image.id)
                          .where(SplitMember.part == "train", Image.duplicate_of_id.is_(None)).order_by(Image.id))
        path = Path(victim.abs_path)
    return ws, path


def _run_row(ws, kind: str):
    from db.models import Run

    with ws.db.session() as s:
        return s.scalars(select(Run).where(Run.kind == kind).order_by(Run.id.desc())).first()


@pytest.mark.slow
def test_image_damaged_after_import_stops_training_with_its_name(cli, damaged_ws):
    ws, path = damaged_ws
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    line = one_line_error(cli.run("train", "classifier", *TINY_CLS, code=1), f"Cannot read image {path}")
    run = _run_row(ws, "classifier")
    assert run.status == "failed" and run.error == line.removeprefix("Error: ")


@pytest.mark.slow
def test_image_damaged_after_import_stops_suggest_with_its_name(cli, damaged_ws):
    ws, path = damaged_ws
    det = cli.json("train", "detector", "--image-size", "64", "--limit", "6", "--batch-size", "3", "--weights", "none",
                   "--threads", "1", "--device", "cpu", "--epochs", "1")["run_id"]
    cls = cli.json("train", "classifier", *TINY_CLS, "--limit", "6")["run_id"]
    path.write_bytes(b"\xff\xd8\xff\xe0 no longer a picture")
    line = one_line_error(cli.run("suggest", "--detector", det, "--classifier", cls, "-k", "2", "--device", "cpu",
                                  "--include-annotated", "--parts", "train", code=1), f"Cannot read image {path}")
    run = _run_row(ws, "suggest")
    assert run.status == "failed" and run.error == line.removeprefix("Error: ")


@pytest.mark.backends
@pytest.mark.labelstudio
@pytest.mark.slow
def test_two_pushes_at_once_make_each_task_once(ws, imported_sample_db, ls_env):
    """Real processes: both `wb ls push`es finish; the server and the DB hold each image's task once."""
    from annotations.client import LabelStudioClient
    from db.models.labels import LsProject, LsTask

    load_db(ws, imported_sample_db)
    env = wb_env(WB_WORKSPACE=str(ws.root), WB_LS_URL=ls_env["url"], WB_LS_TOKEN=ls_env["token"],
                 WB_LS_DOCUMENT_ROOT=ls_env["document_root"], WB_DB=ws.db_location)
    procs = [subprocess.Popen([*WB, "ls", "push", "--json"], env=env, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err
    with ws.db.session() as s:
        project = s.scalars(select(LsProject)).one()  # one project, not one per push
        tasks = s.scalar(select(func.count()).select_from(LsTask))
    assert tasks == 24  # the demo split's first batch: 12 per class
    client = LabelStudioClient(ls_env["url"], ls_env["token"])
    on_server = [t["data"]["wb_image_id"] for page in client.iter_tasks(project.project_id, full=False) for t in page]
    assert sorted(on_server) == sorted(set(on_server)) and len(on_server) == 24


# ---- 13: a run whose owner died shows as interrupted ---------------------------------------------

@pytest.mark.slow
def test_run_of_a_killed_process_shows_interrupted(cli, damaged_ws):
    """Real processes: `wb train` killed with SIGKILL mid-run; `wb status` says interrupted, not running."""
    ws, _ = damaged_ws  # the sample copy, imported and split (its files are intact here)
    env = wb_env(WB_WORKSPACE=str(ws.root))
    env.pop("WB_DB", None)
    proc = subprocess.Popen([*WB, "train", "classifier", *TINY_CLS[:-1], "200"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            runs = cli.json("status")["runs"]
            if runs and runs[-1]["status"] == "running":
                break
            time.sleep(0.5)
        assert proc.poll() is None and cli.json("status")["runs"][-1]["status"] == "running"
        run = _run_row(ws, "classifier")
        assert (run.owner_pid, run.owner_host) == (proc.pid, os.uname().nodename)
    finally:
        proc.kill()  # SIGKILL: no handler runs, the row still says running
        proc.wait(60)
    assert _run_row(ws, "classifier").status == "running"
    assert cli.json("status")["runs"][-1]["status"] == "interrupted"
    assert f"Run {run.id}: classifier interrupted" in cli.run("status").stdout


def _running_row(ws, **fields) -> int:
    from db.models import Run, utcnow

    with ws.db.session() as s:
        run = Run(kind="classifier", status="running", config={}, **{"heartbeat_at": utcnow(), **fields})
        s.add(run)
        s.flush()
        return run.id


def test_owner_liveness_rules(ws):
    from datetime import timedelta

    from db.models import Run, utcnow
    from workbench.runs import STALE_AFTER_S, owner_gone

    here = os.uname().nodename
    old = utcnow() - timedelta(seconds=STALE_AFTER_S + 60)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cases = {
            "this process": (dict(owner_host=here, owner_pid=os.getpid()), False),
            "a process older than its stale beat": (dict(owner_host=here, owner_pid=1, heartbeat_at=old), False),
            "a PID started after the last beat": (dict(owner_host=here, owner_pid=sleeper.pid, heartbeat_at=old), True),
            "no such PID": (dict(owner_host=here, owner_pid=2**22 + 1), True),
            "other host, fresh beat": (dict(owner_host="elsewhere", owner_pid=1), False),
            "other host, stale beat": (dict(owner_host="elsewhere", owner_pid=1, heartbeat_at=old), True),
            "no owner recorded, old": (dict(heartbeat_at=None, updated_at=old), True),
        }
        ids = {name: _running_row(ws, **fields) for name, (fields, _) in cases.items()}
        with ws.db.session() as s:
            for name, (_, gone) in cases.items():
                assert owner_gone(s.get(Run, ids[name])) is gone, name
    finally:
        sleeper.kill()
        sleeper.wait()


# ---- wb doctor: every imported file against its row --------------------------------------------

@pytest.mark.backends
def test_doctor_finds_changed_and_missing_files_and_restores(cli, ws, sample_copy):
    cli.run("import", sample_copy)
    first = cli.json("doctor", "--workers", "3")
    assert (first["checked"], first["ok"], first["changed"], first["missing"]) == (48, 48, [], [])
    folder = sample_copy / NORMAL_TRAIN
    shrunk, flipped, gone = sorted(folder.glob("*.jpeg"))[:3]
    original = shrunk.read_bytes()
    shrunk.write_bytes(original[:1000])
    data = bytearray(flipped.read_bytes())
    data[500] ^= 0xFF
    flipped.write_bytes(bytes(data))
    gone.unlink()
    result = cli.run("doctor")
    assert "Checked 48 files" in result.stdout and "45 as imported, 2 changed, 1 missing" in result.stdout
    rel = lambda p: f"{NORMAL_TRAIN}/{p.name}"  # noqa: E731
    assert f"changed: {rel(shrunk)}: size {len(original)} -> 1000 bytes" in result.stdout
    assert f"changed: {rel(flipped)}: content changed (sha256 differs, same size)" in result.stdout
    assert f"missing: {rel(gone)}: cannot read the file: No such file or directory" in result.stdout
    status = cli.json("status")["images"]
    assert status["changed"] == 3 and {r["status"] for r in status["changed_files"]} == {"changed", "missing"}
    cli.run("split", "--batch-per-class", "2")
    assert sum(cli.json("status")["splits"]["grouped"][p] for p in ("train", "val", "test")) == 45  # marked: left out
    shrunk.write_bytes(original)  # restored
    again = cli.json("doctor")
    assert [r["path"] for r in again["restored"]] == [rel(shrunk)]
    assert (len(again["changed"]), len(again["missing"])) == (1, 1)
    assert cli.json("status")["images"]["changed"] == 2


@pytest.mark.backends
def test_doctor_continues_an_interrupted_pass(cli, ws, sample_copy, monkeypatch):
    from workbench import doctor

    cli.run("import", sample_copy)
    monkeypatch.setattr(doctor, "CHUNK", 10)
    real = doctor._record
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(doctor, "_record", flaky)
    cli.run("doctor", code=130)
    last = cli.json("status")["runs"][-1]
    assert (last["kind"], last["status"]) == ("doctor", "interrupted")
    monkeypatch.setattr(doctor, "_record", real)
    out = cli.json("doctor")
    assert (out["resumed"], out["checked"], out["ok"]) == (20, 28, 28)
    assert cli.json("status")["runs"][-1]["status"] == "done"
    fresh = cli.json("doctor")  # the pass is done: the next one checks everything again
    assert (fresh["resumed"], fresh["checked"]) == (0, 48) and fresh["run_id"] == out["run_id"] + 1


@pytest.mark.backends
def test_doctor_refuses_a_second_check_while_one_runs(cli, ws, sample_copy):
    from workbench.runs import create_run, owner_fields, update_run

    cli.run("import", sample_copy)
    run_id, _ = create_run(ws, "doctor", {}, split_id=None)
    update_run(ws, run_id, status="running", **owner_fields())  # owned by this (live) process
    one_line_error(cli.run("doctor", code=1), f"wb doctor is already running (run {run_id}")
