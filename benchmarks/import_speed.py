"""Verified import vs a plain verify loop, on the same files, in one run.

Baseline: one process reads each file, computes its sha256 and fully decodes it with Pillow.
wb: `import_dataset` into a fresh SQLite DB (hash + draft-mode decode in worker processes,
records written in chunked transactions). Both run with the files in the OS page cache.

Usage: python benchmarks/import_speed.py [PATH]   (default ../shared/data/kermany-subset)
"""
from __future__ import annotations

import hashlib
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


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    for f in files:  # warm the page cache so neither side pays for the disk
        f.read_bytes()
    base = baseline(files)
    ours, added = wb_import(path)
    print(f"{'files':<28}{len(files):>10}")
    print(f"{'plain verify loop (s)':<28}{base:>10.2f}")
    print(f"{'wb import (s)':<28}{ours:>10.2f}")
    print(f"{'ratio wb / loop':<28}{ours / base:>10.2f}   (must be <= 1.0)")
    print(f"{'images recorded by wb':<28}{added:>10}")


if __name__ == "__main__":
    main()
