"""Set-up the training benchmarks share: where the subset and offline weights are, and the
idempotent import + `--strategy source` split (+ chest boxes) they start from (through the
public use cases)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBSET = REPO.parent / "shared" / "data" / "kermany-subset"
if (REPO.parent / "shared" / "torch-cache").is_dir():
    os.environ.setdefault("TORCH_HOME", str(REPO.parent / "shared" / "torch-cache"))


def prepare_source_split(ws, data: Path, split: str) -> None:
    """Import `data` and split it by its own folders under the name `split` (both idempotent)."""
    from sqlalchemy import select

    from db.models import Split
    from workbench.configs import SplitConfig
    from workbench.importing import import_dataset
    from workbench.splitting import create_split

    import_dataset(ws.db, data, progress=False)
    with ws.db.session() as s:
        exists = s.scalar(select(Split).where(Split.name == split)) is not None
    if not exists:
        create_split(ws.db, split, SplitConfig(strategy="source"))


def prepare_annotated_source_split(ws, data: Path, split: str) -> None:
    """`prepare_source_split`, then the subset's machine-made `chest_boxes.csv` loaded as chest
    boxes (the `wb annotations import` path); each step is idempotent."""
    from annotations.boxfile import records_from_chest_csv, write_box_file
    from workbench.boxfiles import import_annotations

    prepare_source_split(ws, data, split)
    box_file = ws.folder("bench") / "chest_boxes.json"
    if not box_file.is_file():
        write_box_file(box_file, records_from_chest_csv(data / "chest_boxes.csv", data, data / "manifest.csv"))
    import_annotations(ws, box_file)
