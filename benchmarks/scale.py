"""wb at 10k and 100k images: per-image cost of each stage, peak memory, and `wb status` time.

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000] [--root /tmp/wb-scale]
        [--backend sqlite|postgresql] [--ls-tasks 10000] [--skip-ls] [--skip-suggest]

Generates (once, under --root, never in the repo) a dataset of small synthetic JPEGs in the
Kaggle Kermany layout (`chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/`) with Kermany-like
names and patient keys (`IM-XXXX-YYYY`, `NORMAL2-IM-XXXX-YYYY`, `personN_bacteria_M`,
`personN_virus_M`; 1-4 images per patient; ~1 % byte-identical copies), then runs each stage as
a user would, as its own `wb` process on a fresh database:

1. `wb import DATA`; 2. `wb split`; 3. `wb status` and `wb status --json` (median of 5; goal < 1 s);
4. `wb ls push --images ...` of --ls-tasks images to a Label Studio the benchmark starts the way
   `wb ls serve` does (temp folder, free 127.0.0.1 port), then annotations made through the SDK
   (not timed as wb's), then `wb ls pull` of them;
5. `wb suggest` over the whole train pool with tiny random-init models (a 64 px MobileNetV2
   Faster R-CNN and a 32 px MobileNetV2 classifier, one epoch on 8 images): their accuracy is
   meaningless; the cost per image of scoring, storing and ranking is what is measured.

Per stage: wall time of the `wb` process (start-up included), time per image (per task for
push/pull), its peak resident memory (its own or a reaped child's, from os.wait4 in a small
launcher process, since Linux carries a parent's peak into a forked child), and at the end the
ratio of the per-item costs largest / smallest size (goal <= 1.2x) beside both peaks (suggest's
should not grow with the pool). Models run with one thread (OMP_NUM_THREADS=1). Without
--suggest-limit, suggest scores the whole train pool (at 100k: ~89k images at ~30-50 ms each on
one core, about an hour); with it, a random N of the pool is scored while the whole pool is
still listed, filtered and checked on disk.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Kermany's proportions (Kaggle release): ~27 % NORMAL; train 89 %, val 0.3 %, test 10 %.
PARTS = (("train", 0.893), ("val", 0.003), ("test", 0.104))
P_NORMAL = 0.27
P_DUPLICATE = 0.01


# ---- the dataset -----------------------------------------------------------------------------

def plan_dataset(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """[(relative path, image seed)] for n files; a duplicate reuses an earlier file's image seed."""
    rng = random.Random(seed)
    plan: list[tuple[str, int]] = []
    patient = {"IM": 0, "NORMAL2-IM": 0, "person": 0}
    taken: set[str] = set()
    while len(plan) < n:
        part = rng.choices([p for p, _ in PARTS], [w for _, w in PARTS])[0]
        label = "NORMAL" if rng.random() < P_NORMAL else "PNEUMONIA"
        for k in range(1, rng.randint(1, 4) + 1):  # one patient's images, all in one folder
            if len(plan) >= n:
                break
            if label == "NORMAL":
                series = "IM" if rng.random() < 0.6 else "NORMAL2-IM"
                if k == 1:
                    patient[series] += 1
                name = f"{series}-{patient[series]:04d}-{k:04d}.jpeg"
            else:
                if k == 1:
                    patient["person"] += 1
                name = f"person{patient['person']}_{rng.choice(['bacteria', 'virus'])}_{len(plan)}.jpeg"
            rel = f"chest_xray/{part}/{label}/{name}"
            if rel in taken:
                continue
            taken.add(rel)
            image_seed = plan[rng.randrange(len(plan))][1] if plan and rng.random() < P_DUPLICATE else len(plan) + 1
            plan.append((rel, image_seed))
    return plan


def jpeg_bytes(image_seed: int) -> bytes:
    """A small greyscale 'X-ray': a bright ellipse (the chest) on noise; 48-96 px a side, quality 75."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(image_seed)
    w, h = int(rng.integers(48, 97)), int(rng.integers(48, 97))
    y, x = np.mgrid[0:h, 0:w]
    chest = ((x - w / 2) / (w * 0.35)) ** 2 + ((y - h / 2) / (h * 0.4)) ** 2 < 1
    pixels = rng.normal(60, 25, (h, w)) + chest * rng.uniform(60, 120)
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").save(buf, "JPEG", quality=75)
    return buf.getvalue()


def _write(job: tuple[str, list[tuple[str, int]]]) -> int:
    root, items = job
    for rel, image_seed in items:
        path = Path(root) / rel
        path.write_bytes(jpeg_bytes(image_seed))
    return len(items)


def make_dataset(dest: Path, n: int, workers: int) -> Path:
    """The dataset of n files under dest/ (kept: made once, reused by later runs)."""
    done = dest / ".complete"
    if done.exists():
        return dest
    plan = plan_dataset(n)
    for part, _ in PARTS:
        for label in ("NORMAL", "PNEUMONIA"):
            (dest / "chest_xray" / part / label).mkdir(parents=True, exist_ok=True)
    jobs = [(str(dest), plan[i : i + 500]) for i in range(0, len(plan), 500)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        written = sum(pool.map(_write, jobs))
    done.write_text(json.dumps({"files": written}))
    print(f"generated {written} JPEGs in {dest} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return dest


def box_file(dest: Path, data: Path, n: int = 16) -> Path:
    """A wb box file with the chest ellipse's bounding box on n train images (for training the tiny detector)."""
    import hashlib

    from PIL import Image

    from annotations.boxfile import BoxRecord, write_box_file
    from db.models.labels import CHEST_CLASSES

    records = []
    for label in ("NORMAL", "PNEUMONIA"):
        for path in sorted((data / "chest_xray" / "train" / label).iterdir())[: n // 2]:
            with Image.open(path) as im:
                w, h = im.size
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            records.append(BoxRecord(image=path.relative_to(data).as_posix(), sha256=digest, width=w, height=h,
                                     label=CHEST_CLASSES[label], x_min=w * 0.15, y_min=h * 0.1, x_max=w * 0.85,
                                     y_max=h * 0.9, origin="machine"))
    write_box_file(dest, records)
    return dest


# ---- running wb and measuring it -----------------------------------------------------------------

WB = [sys.executable, "-c", "from workbench.cli import main; main()"]


@dataclass
class Measured:
    seconds: float
    peak_mb: float  # the wb process's peak RSS (its own, or a reaped child's if larger)
    out: str
    cpu: float = 0.0  # CPU seconds (user + system) of wb and its reaped children: less sensitive to load


# A small process between this one and `wb`: Linux carries a process's peak RSS across fork and
# exec, so a `wb` forked from this (large) benchmark would report at least this process's size.
# The launcher forks it from a ~10 MB interpreter and reports the child's own peak (wait4).
LAUNCHER = """import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{usage.ru_maxrss} {time.perf_counter() - t0} {usage.ru_utime + usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_wb(args: list, env: dict, timeout: float | None = None) -> Measured:
    """`wb ARGS` as its own process; raises with its stderr when it fails."""
    with tempfile.NamedTemporaryFile(prefix="wb-scale-rss-") as rss:
        cmd = [sys.executable, "-c", LAUNCHER, rss.name, *WB, *map(str, args)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        peak_kb, seconds, cpu = (float(x) for x in (Path(rss.name).read_text() or "0 0 0").split())  # wb's, fork to exit
    if done.returncode != 0:
        raise RuntimeError(f"wb {' '.join(map(str, args))[:200]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return Measured(seconds, peak_kb / 1024, done.stdout, cpu)


@dataclass
class Stage:
    name: str
    unit: str  # what the per-item cost is per: "img" or "task"
    goal: str = "<= 1.2x"
    by_size: dict[int, tuple[Measured, int]] = field(default_factory=dict)  # size -> (measure, items)


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


class Bench:
    def __init__(self, args):
        self.args = args
        self.stages: dict[str, Stage] = {}
        self.notes: list[str] = []
        self.ls: tuple[dict, object] | None = None  # (connection, its workspace), once started

    def record(self, name: str, unit: str, size: int, m: Measured, items: int, goal: str = "<= 1.2x") -> None:
        stage = self.stages.setdefault(name, Stage(name, unit, goal))
        stage.by_size[size] = (m, items)
        print(f"  {name:<34} {m.seconds:8.2f} s  cpu {m.cpu:8.2f} s  {1000 * m.seconds / max(items, 1):8.3f} ms/{unit}  "
              f"peak {m.peak_mb:7.0f} MB  ({load_line()})", file=sys.stderr)

    def table(self, sizes: list[int]) -> str:
        a, b = sizes[0], sizes[-1]
        lines = [f"{'stage':<34} " + " ".join(f"{f'{s:,} imgs: s':>13} {'cpu s':>8} {'ms/item':>9} {'peak MB':>8}" for s in sizes)
                 + f" {'cost ratio':>10} {'cpu ratio':>9}  goal"]
        for st in self.stages.values():
            cells, costs, cpus = [], {}, {}
            for s in sizes:
                if s in st.by_size:
                    m, n = st.by_size[s]
                    costs[s], cpus[s] = m.seconds / max(n, 1), m.cpu / max(n, 1)
                    cells.append(f"{m.seconds:13.2f} {m.cpu:8.2f} {1000 * costs[s]:9.3f} {m.peak_mb:8.0f}")
                else:
                    cells.append(f"{'-':>13} {'-':>8} {'-':>9} {'-':>8}")
            ratio = costs[b] / costs[a] if a in costs and b in costs and a != b else None
            cpu_ratio = cpus[b] / cpus[a] if a in cpus and b in cpus and a != b and cpus[a] else None
            verdict = ""
            if ratio is not None and st.goal.startswith("<="):
                verdict = "ok" if ratio <= float(st.goal.split()[1].rstrip("x")) else "FAIL"
            if st.goal.startswith("< ") and b in st.by_size:
                verdict = "ok" if st.by_size[b][0].seconds < float(st.goal.split()[1]) else "FAIL"
            lines.append(f"{st.name + ' (per ' + st.unit + ')':<34} " + " ".join(cells)
                         + f" {f'{ratio:.2f}' if ratio is not None else '-':>10}"
                         + f" {f'{cpu_ratio:.2f}' if cpu_ratio is not None else '-':>9}  {st.goal} {verdict}")
        return "\n".join(lines)


# ---- the stages ------------------------------------------------------------------------------------

def bench_size(bench: Bench, size: int, data: Path, db: str, ws: Path) -> None:
    args = bench.args
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "WB_DB": db, "WB_WORKSPACE": str(ws), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for var in ("WB_LS_URL", "WB_LS_TOKEN", "WB_LS_DOCUMENT_ROOT"):
        env.pop(var, None)
    print(f"\n{size:,} images: database {db.split('@')[-1]}, workspace {ws}", file=sys.stderr)

    m = run_wb(["import", data, "--workers", args.workers, "--json"], env)
    imported = json.loads(m.out)
    assert imported["added"] == size, imported
    bench.record("import", "img", size, m, size)
    again = run_wb(["import", data, "--workers", args.workers, "--json"], env)
    assert json.loads(again.out)["added"] == 0
    bench.record("import again (nothing new)", "img", size, again, size)

    m = run_wb(["split", "--json"], env)
    bench.record("split (grouped)", "img", size, m, size)

    for name, extra in (("status", []), ("status --json", ["--json"])):
        runs = [run_wb(["status", *extra], env) for _ in range(5)]
        median = sorted(runs, key=lambda r: r.seconds)[2]
        bench.record(f"{name} (median of 5)", "img", size, median, size, goal="< 1.0 s")

    if not args.skip_ls:
        if bench.ls is None:  # once, from the first size's workspace (it serves what is imported)
            bench.ls = start_label_studio(db, args.root)
        bench_ls(bench, size, db, env, bench.ls[0])

    if not args.skip_suggest:
        bench_suggest(bench, size, data, ws, env)


def _sample_ids(db: str, k: int) -> list[int]:
    """k readable image ids spread over the whole table (every n-th), for `wb ls push --images`."""
    from sqlalchemy import select

    from db import open_database
    from db.models import Image

    database = open_database(db, create=False)
    try:
        with database.session() as s:
            ids = list(s.scalars(select(Image.id).where(Image.status == "ok").order_by(Image.id)))
    finally:
        database.dispose()
    step = max(1, len(ids) // k)
    return ids[::step][:k]


def bench_ls(bench: Bench, size: int, db: str, env: dict, ls: dict) -> None:
    from label_studio_sdk import LabelStudio

    from annotations.convert import CHEST_LABEL, PixelBox, rectangle_result
    from db import open_database
    from db.models import Image
    from db.models.labels import LsTask

    args = bench.args
    env = {**env, "WB_LS_URL": ls["url"], "WB_LS_TOKEN": ls["token"], "WB_LS_DOCUMENT_ROOT": ls["document_root"]}
    ids = _sample_ids(db, args.ls_tasks)
    m = run_wb(["ls", "push", "--images", ",".join(map(str, ids)), "--json"], env)
    pushed = json.loads(m.out)
    assert pushed["created"] == len(ids), pushed
    bench.record(f"ls push {len(ids):,} tasks", "task", size, m, len(ids))

    # Annotators (the SDK, 4 at a time): not wb's time.
    from sqlalchemy import select

    database = open_database(db, create=False)
    with database.session() as s:
        tasks = s.execute(select(LsTask.ls_task_id, Image.width, Image.height).join(Image, Image.id == LsTask.image_id)
                          .order_by(LsTask.ls_task_id)).all()
    database.dispose()
    tasks = tasks[: args.annotations]
    sdk = LabelStudio(base_url=ls["url"], api_key=ls["token"], timeout=120)

    def annotate(task) -> None:
        task_id, w, h = task
        box = PixelBox(w * 0.15, h * 0.1, w * 0.85, h * 0.9)
        sdk.annotations.create(id=task_id, result=[rectangle_result(box, CHEST_LABEL, w, h)])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(annotate, tasks))
    bench.notes.append(f"{size:,}: {len(tasks):,} annotations made through the SDK in {time.perf_counter() - t0:.0f} s")
    m = run_wb(["ls", "pull", "--json"], env)
    pulled = json.loads(m.out)
    assert pulled["created"] == len(tasks), pulled
    bench.record(f"ls pull {len(tasks):,} new annotations", "task", size, m, len(tasks))
    m = run_wb(["ls", "pull", "--json"], env)
    bench.record("ls pull, nothing new", "task", size, m, len(tasks), goal="(info)")


def bench_suggest(bench: Bench, size: int, data: Path, ws: Path, env: dict) -> None:
    args = bench.args
    run_wb(["annotations", "import", box_file(ws / "tiny_boxes.json", data)], env)
    common = ["--weights", "none", "--epochs", "1", "--limit", "8", "--batch-size", "4", "--threads", "1", "--device", "cpu",
              "--json"]
    det = json.loads(run_wb(["train", "detector", "--backbone", "mobilenet_v2", "--image-size", 64, *common], env).out)
    cls = json.loads(run_wb(["train", "classifier", "--members", "mobilenet_v2", "--image-size", 32, *common], env).out)
    cmd = ["suggest", "--detector", det["run_id"], "--classifier", cls["run_id"], "-k", "50", "--parts", "train",
           "--include-annotated", "--device", "cpu", "--batch-size", "32", "--json"]
    if args.suggest_limit:
        cmd += ["--limit", args.suggest_limit]
    m = run_wb(cmd, env, timeout=None)
    rows = json.loads(m.out)
    assert len(rows) == 50
    status = json.loads(run_wb(["status", "--json"], env).out)
    scored = [r for r in status["runs"] if r["kind"] == "suggest"][-1]["metrics"]["candidates"]
    bench.record("suggest (score + rank the pool)", "img", size, m, scored)
    again = run_wb([*cmd, "--weights", "uncertainty=1"], env)  # the stored scores re-ranked: no model runs
    bench.record("suggest again (stored scores)", "img", size, again, scored)


# ---- main -----------------------------------------------------------------------------------------

def start_label_studio(db: str, ws_root: Path) -> tuple[dict, object]:
    """Label Studio started as `wb ls serve` does, from the first size's workspace: its document root
    is the datasets' common folder (--root), so it serves every size's files."""
    from annotations.server import load_credentials
    from workbench import labelling
    from workbench.workspace import Workspace

    ws = Workspace.from_options(db=db, workspace=str(ws_root / "ls-server"))
    t0 = time.perf_counter()
    served = labelling.serve(ws)
    print(f"Label Studio {served.url} answered after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    token = load_credentials(labelling.ls_folder(ws)).token
    return {"url": served.url, "token": token, "document_root": served.document_root, "ws": ws}, ws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="dataset sizes, comma-separated (the first and last are compared)")
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "wb-scale",
                    help="where the datasets (kept) and the workspaces (made anew) go")
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                    help="postgresql: a throwaway server started like the test suite's (tests/postgres.py)")
    ap.add_argument("--workers", type=int, default=2, help="wb import --workers")
    ap.add_argument("--ls-tasks", type=int, default=10000, help="tasks pushed at every size")
    ap.add_argument("--annotations", type=int, default=10000, help="of those, annotated then pulled")
    ap.add_argument("--skip-ls", action="store_true")
    ap.add_argument("--skip-suggest", action="store_true")
    ap.add_argument("--suggest-limit", type=int, default=None, help="score at most N of the pool (default: all of it)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    root = args.root = args.root.resolve()
    if root == REPO or REPO in root.parents:
        sys.exit("--root must lie outside the repository")
    print(f"start: {load_line()}", file=sys.stderr)
    datasets = {s: make_dataset(root / f"data-{s}", s, os.cpu_count() or 1) for s in sizes}
    server = None
    if args.backend == "postgresql":
        from tests.postgres import start_server

        server = start_server()
    bench = Bench(args)
    try:
        for size in sizes:
            ws = root / f"ws-{args.backend}-{size}"
            if ws.exists():
                shutil.rmtree(ws)
            ws.mkdir(parents=True)
            db = server.create_database(f"scale_{size}") if server else str(ws / "wb.db")
            bench_size(bench, size, datasets[size], db, ws)
    finally:
        if bench.ls is not None:
            from workbench import labelling

            labelling.stop(bench.ls[1])
        if server is not None:
            server.stop()
    print(f"\nwb at scale ({args.backend}); {load_line()} at the end")
    print(bench.table(sizes))
    for note in bench.notes:
        print(note)
    print("cost ratio = per-item wall time at the largest size / at the smallest; cpu ratio: the same in CPU time "
          "(user + system), which the load of other jobs disturbs less; peak MB = the wb process's peak RSS")


if __name__ == "__main__":
    main()
