"""File-name parsing and layout detection against hand-written cases."""
from pathlib import Path

import pytest

from pipelines.kermany import detect_layout, find_roots, locate, parse_file_name


@pytest.mark.parametrize(
    "name,label,key,subtype,recognised",
    [
        ("person1003_virus_1685.jpeg", "PNEUMONIA", "person1003", "virus", True),
        ("person1003_bacteria_2935.jpeg", "PNEUMONIA", "person1003", "bacteria", True),
        ("person01_bacteria_1.jpeg", "PNEUMONIA", "person1", "bacteria", True),
        ("IM-0115-0001.jpeg", "NORMAL", "IM-0115", "normal", True),
        ("NORMAL2-IM-0381-0001.jpeg", "NORMAL", "NORMAL2-IM-0381", "normal", True),
        ("NORMAL2-IM-0173-0001-0002.jpeg", "NORMAL", "NORMAL2-IM-0173", "normal", True),
        ("NORMAL-1003233-0001.jpeg", "NORMAL", "v3-1003233", "normal", True),
        ("BACTERIA-7422-0001.jpeg", "PNEUMONIA", "v3-7422", "bacteria", True),
        ("VIRUS-0007422-0003.jpeg", "PNEUMONIA", "v3-7422", "virus", True),
        ("scan.jpeg", "PNEUMONIA", "file:scan", None, False),
        ("scan.jpeg", "NORMAL", "file:scan", "normal", False),
    ],
)
def test_parse_file_name(name, label, key, subtype, recognised):
    info = parse_file_name(name, label)
    assert (info.patient_key, info.subtype, info.recognised) == (key, subtype, recognised)


def test_bacteria_and_virus_of_one_person_share_a_key():
    a = parse_file_name("person7_bacteria_1.jpeg", "PNEUMONIA")
    b = parse_file_name("person7_virus_9.jpeg", "PNEUMONIA")
    assert a.patient_key == b.patient_key == "person7"


@pytest.mark.parametrize(
    "rel,split,label,problem",
    [
        ("chest_xray/train/NORMAL/a.jpeg", "train", "NORMAL", None),
        ("chest_xray/TEST/pneumonia/a.jpeg", "test", "PNEUMONIA", None),
        ("chest_xray/val/PNEUMONIA/a.jpeg", "val", "PNEUMONIA", None),
        ("chest_xray/train/COVID/a.jpeg", "train", None, "unexpected folder name: COVID"),
        ("chest_xray/holdout/NORMAL/a.jpeg", None, None, "unexpected folder name: holdout"),
        ("chest_xray/train/a.jpeg", None, None, "unexpected place: chest_xray/train"),
    ],
)
def test_locate(rel, split, label, problem):
    where = locate(rel)
    assert (where.source_split, where.label, where.problem) == (split, label, problem)


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_find_roots_kaggle_archive_skips_nested_copy_and_macos(tmp_path):
    _touch(
        tmp_path,
        "archive/chest_xray/train/NORMAL/IM-0001-0001.jpeg",
        "archive/chest_xray/val/NORMAL/IM-0002-0001.jpeg",
        "archive/chest_xray/chest_xray/train/NORMAL/IM-0001-0001.jpeg",
        "archive/chest_xray/__MACOSX/chest_xray/train/NORMAL/._IM-0001-0001.jpeg",
        "archive/__MACOSX/chest_xray/train/NORMAL/._IM-0001-0001.jpeg",
    )
    expected = [(tmp_path / "archive").resolve()]
    assert find_roots(tmp_path) == expected
    assert find_roots(tmp_path / "archive") == expected
    assert find_roots(tmp_path / "archive" / "chest_xray") == expected
    assert detect_layout(expected[0], ["chest_xray/train/NORMAL/IM-0001-0001.jpeg"]) == "kaggle"


def test_find_roots_mendeley_layouts(tmp_path):
    _touch(tmp_path, "v2/chest_xray/train/NORMAL/IM-0001-0001.jpeg", "v2/chest_xray/test/PNEUMONIA/person1_virus_1.jpeg")
    _touch(tmp_path, "v3/CellData/chest_xray/train/NORMAL/NORMAL-11-1.jpeg")
    roots = find_roots(tmp_path)
    assert roots == [(tmp_path / "v2").resolve(), (tmp_path / "v3" / "CellData").resolve()]
    assert detect_layout(roots[0], ["chest_xray/test/PNEUMONIA/person1_virus_1.jpeg"]) == "mendeley_v2"
    assert detect_layout(roots[1], ["chest_xray/train/NORMAL/NORMAL-11-1.jpeg"]) == "mendeley_v3"


def test_find_roots_none(tmp_path):
    _touch(tmp_path, "photos/cat.jpeg")
    assert find_roots(tmp_path) == []
