"""Verified import vs a plain verify loop, on the same files, in one run.

Baseline: one process reads each file, computes its sha256 and fully decodes it with Pillow.
wb: `import_dataset` into a fresh SQLite DB (hash + draft-mode decode in worker processes,
records written in chunked transactions), timed twice: in-process (the use case alone), and
end to end as a user runs it, `wb --db NEW.db import PATH` as its own process (start-up, schema
creation and all). Everything runs with the files in the OS page cache.

Usage: python benchmarks/import_speed.py [PATH]   (default ../shared/data/kermany-subset)
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from db import open_database
from workbench.importing import import_dataset

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany-subset"


def baseline(files: list[Path]) -> float:
    start = time.perf_counter()
    for f in files:
        data = f.read_bytes()
        hashlib.sha256(data).hexdigest()
        with Image.open(f) as img:
            img.load()
    return time.perf_counter() - start


def wb_import(path: Path) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(str(Path(tmp) / "bench.db"))  # schema creation is not timed
        start = time.perf_counter()
        summary = import_dataset(db, path, progress=False)
        elapsed = time.perf_counter() - start
        db.dispose()
    return elapsed, summary.added


def wb_command() -> list[str]:
    """The `wb` console script of this interpreter's environment (else the same entry point via -c)."""
    script = Path(sys.executable).parent / "wb"
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from workbench.cli import main; main()"]


def wb_import_process(path: Path) -> float:
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*wb_command(), "--db", str(Path(tmp) / "bench.db"), "--workspace", tmp, "import", str(path), "--json"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    for f in files:  # warm the page cache so neither side pays for the disk
        f.read_bytes()
    base = baseline(files)
    ours, added = wb_import(path)
    whole = wb_import_process(path)
    print(f"{'files':<36}{len(files):>10}")
    print(f"{'plain verify loop (s)':<36}{base:>10.2f}")
    print(f"{'wb import, in-process (s)':<36}{ours:>10.2f}")
    print(f"{'wb import, own process (s)':<36}{whole:>10.2f}")
    print(f"{'ratio in-process / loop':<36}{ours / base:>10.2f}")
    print(f"{'ratio own process / loop':<36}{whole / base:>10.2f}   (must be <= 1.0)")
    print(f"{'images recorded by wb':<36}{added:>10}")


if __name__ == "__main__":
    main()
