"""Set-up the training benchmarks share: where the subset and offline weights are, and the
idempotent import + `--strategy source` split they all start from (through the public use cases)."""
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
    from workbench.importing import import_dataset
    from workbench.splitting import SplitConfig, create_split

    import_dataset(ws.db, data, progress=False)
    with ws.db.session() as s:
        exists = s.scalar(select(Split).where(Split.name == split)) is not None
    if not exists:
        create_split(ws.db, split, SplitConfig(strategy="source"))
