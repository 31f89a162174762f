"""Split assignment: pure functions on hand-made arrays, and the use case on the sample/subset."""
from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from sqlalchemy import select

from db.models import AnnotationBatch, Image, SplitMember
from pipelines.splits import grouped_split, pick_per_class, random_split, union_groups
from workbench.configs import SplitConfig
from workbench.importing import import_dataset
from workbench.splitting import create_split


def test_union_groups_joins_patients_and_identical_files():
    keys = ["p1", "p2", "p1", "p3", "p4"]
    shas = ["a", "b", "c", "b", "e"]
    # p1 (0,2); p2 and p3 share file b (1,3); p4 alone
    assert union_groups(keys, shas) == [0, 1, 0, 1, 2]


def test_grouped_split_hits_ratios_and_keeps_groups_whole():
    labels = ["N"] * 10 + ["P"] * 20
    groups = list(range(10)) + [10 + i // 2 for i in range(20)]  # P patients have 2 images each
    parts = grouped_split(labels, groups, (0.8, 0.1, 0.1), seed=1)
    by_label = {lab: Counter(p for p, y in zip(parts, labels, strict=True) if y == lab) for lab in "NP"}
    assert by_label["N"] == {"train": 8, "val": 1, "test": 1}
    assert by_label["P"] == {"train": 16, "val": 2, "test": 2}
    seen = defaultdict(set)
    for g, p in zip(groups, parts, strict=True):
        seen[g].add(p)
    assert all(len(v) == 1 for v in seen.values())
    assert parts == grouped_split(labels, groups, (0.8, 0.1, 0.1), seed=1)
    assert parts != grouped_split(labels, groups, (0.8, 0.1, 0.1), seed=2)


def test_grouped_split_rejects_bad_ratios():
    with pytest.raises(ValueError):
        grouped_split(["N"], [0], (0.5, 0.5, 0.5), seed=0)


def test_random_split_counts_and_seed():
    parts = random_split(10, (0.6, 0.2, 0.2), seed=3)
    assert Counter(parts) == {"train": 6, "val": 2, "test": 2}
    assert parts == random_split(10, (0.6, 0.2, 0.2), seed=3)


def test_pick_per_class_balanced_and_interleaved():
    labels = ["N", "P", "P", "P", "N", "P"]
    idx = pick_per_class(labels, 2, seed=0)
    assert [labels[i] for i in idx] == ["N", "P", "N", "P"]
    assert len(set(idx)) == 4
    assert sorted(pick_per_class(labels, 5, seed=0)) == list(range(6))  # fewer exist: take all


def _parts(db, name):
    with db.session() as s:
        rows = s.execute(
            select(Image.patient_key, Image.source_split, Image.label, SplitMember.part)
            .join(SplitMember, SplitMember.image_id == Image.id)
            .join(SplitMember.split)
            .where(SplitMember.split.has(name=name))
        ).all()
    return rows


@pytest.mark.backends
def test_split_cli_and_status(cli, ws, sample_dir):
    cli.run("import", sample_dir)
    out = cli.json("split", "--name", "g", "--batch-per-class", "5")
    assert sum(sum(c.values()) for c in out["counts"].values()) == 48
    assert out["batch"] == {"NORMAL": 5, "PNEUMONIA": 5}
    assert out["shared_patients"] == 0
    cli.run("split", "--name", "g", code=1)  # exists
    cli.run("split", "--name", "g", "--replace", "--strategy", "source", "--batch-per-class", "5")
    cli.run("split", "--strategy", "random", "--ratios", "0.5,0.25,0.25", "--batch-per-class", "5")
    status = cli.json("status")
    assert status["splits"]["g"]["test"] == 16  # the sample's test folder
    assert status["splits"]["random"]["train"] + status["splits"]["random"]["val"] + status["splits"]["random"]["test"] == 48
    assert status["annotation_batches"] == {"g/initial": 10, "random/initial": 10}
    with ws.db.session() as s:
        assert s.scalar(select(AnnotationBatch).where(AnnotationBatch.name == "g/initial")).kind == "initial"


def test_split_bad_ratios_and_strategy(cli, sample_dir):
    cli.run("import", sample_dir)
    assert "ratios must be three" in cli.run("split", "--ratios", "0.9,0.9,0.1", code=1).stderr
    assert "Unknown split strategy" in cli.run("split", "--strategy", "magic", code=1).stderr
    assert "give three numbers" in cli.run("split", "--ratios", "a,b", code=2).stderr


@pytest.mark.backends
def test_split_before_import_is_clear(cli, ws):
    ws.db.dispose()  # an empty workspace (a missing one is refused earlier, see test_hostile)
    assert "run `wb import PATH` first" in cli.run("split", code=1).stderr


@pytest.mark.shared
def test_real_subset_grouped_split_has_no_patient_overlap(ws, subset_dir):
    import_dataset(ws.db, subset_dir, progress=False)
    summary = create_split(ws.db, None, SplitConfig())
    assert summary.shared_patients == 0
    parts_of = defaultdict(set)
    for key, _src, _label, part in _parts(ws.db, "grouped"):
        parts_of[key].add(part)
    assert len(parts_of) > 1000 and all(len(p) == 1 for p in parts_of.values())
    total = sum(sum(c.values()) for c in summary.counts.values())
    assert total == 2260 and abs(sum(summary.counts["train"].values()) / total - 0.8) < 0.01
    assert summary.batch == {"NORMAL": 200, "PNEUMONIA": 200}
    # source strategy: the dataset's test folder is the test part, exactly
    create_split(ws.db, None, SplitConfig(strategy="source"))
    rows = _parts(ws.db, "source")
    assert {(src == "test", part == "test") for _k, src, _l, part in rows} == {(True, True), (False, False)}
    assert sum(part == "test" for *_x, part in rows) == 624
