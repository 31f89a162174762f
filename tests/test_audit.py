"""wb audit: pure trap detectors against hand-computed values, the CLI on the sample, the subset's shortcut."""
from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from pipelines.audit import (
    PHASH_HEX_LEN,
    groups_across_parts,
    hamming,
    hex_to_bits,
    metadata_shortcut,
    near_duplicate_groups,
    patient_overlap,
    phash_hex,
)

# --- near duplicates ---------------------------------------------------------------------------

def test_hamming_counts_differing_bits():
    assert hamming("0f", "f0") == 8
    assert hamming("00", "01") == 1
    assert hamming("abc", "abc") == 0


def test_hex_to_bits_pads_odd_length_and_rejects_mixed_lengths():
    bits = hex_to_bits(["abc", "001"])
    assert bits.tolist() == [[0x0A, 0xBC], [0x00, 0x01]]
    with pytest.raises(ValueError, match="same length"):
        hex_to_bits(["ab", "abc"])


@pytest.mark.parametrize("block", [512, 2])
def test_near_duplicate_groups_are_connected_components(block):
    # Bits apart: 00-01 1, 01-03 1, 00-03 2, 03-0f 2, 01-0f 3, 00-0f 4, ff-fe 1, 0f-fe 5.
    # At 1 bit: 00~01~03 is one chain even though 00 and 03 are 2 bits apart; 0f stays alone.
    hashes = ["00", "01", "ff", "03", "0f", "fe"]
    assert near_duplicate_groups(hashes, 1, block=block) == [[0, 1, 3], [2, 5]]
    assert near_duplicate_groups(hashes, 0, block=block) == []
    # At 2 bits 0f joins through 03, though it is 4 bits from 00.
    assert near_duplicate_groups(hashes, 2, block=block) == [[0, 1, 3, 4], [2, 5]]


def test_identical_hashes_group_at_threshold_zero():
    assert near_duplicate_groups(["aa", "bb", "aa", "aa"], 0) == [[0, 2, 3]]
    assert near_duplicate_groups([], 3) == []
    with pytest.raises(ValueError):
        near_duplicate_groups(["aa"], -1)


def test_groups_across_parts():
    groups = [[0, 1], [2, 3], [4, 5]]
    parts = ["train", "train", "train", "test", None, "val"]
    # Only [2, 3] spans two parts; [4, 5] has one member outside the split.
    assert groups_across_parts(groups, parts) == [[2, 3]]


def test_phash_of_a_copy_is_identical_and_fits_the_column(sample_dir, tmp_path):
    original = next((sample_dir / "chest_xray" / "test" / "NORMAL").glob("*.jpeg"))
    copy = tmp_path / "copy.jpeg"
    shutil.copy(original, copy)
    h = phash_hex(str(original))
    assert len(h) == PHASH_HEX_LEN <= 32
    assert phash_hex(str(copy)) == h
    with pytest.raises(OSError):
        phash_hex(str(tmp_path / "missing.jpeg"))


# --- patient overlap ---------------------------------------------------------------------------

def test_patient_overlap_by_hand():
    keys = ["p1", "p1", "p2", "p3", "p3", "p3", "p4"]
    parts = ["train", "val", "train", "train", "test", "val", "test"]
    got = patient_overlap(keys, parts)
    # p1 in train+val (2 images), p3 in train+test+val (3 images); p2 and p4 in one part each.
    assert got == {
        "patients": 4,
        "shared_patients": 2,
        "shared_images": 5,
        "by_pair": {"train-val": 2, "train-test": 1, "val-test": 1},
        "examples": ["p1", "p3"],
    }


def test_patient_overlap_none_when_grouped():
    got = patient_overlap(["a", "a", "b"], ["train", "train", "test"])
    assert got["shared_patients"] == 0 and got["by_pair"] == {"train-val": 0, "train-test": 0, "val-test": 0}
    with pytest.raises(ValueError):
        patient_overlap(["a"], [])


# --- metadata shortcut -------------------------------------------------------------------------

def test_shortcut_auc_near_one_when_width_decides_the_label():
    rng = np.random.default_rng(1)
    n = 300
    labels = ["NORMAL"] * n + ["PNEUMONIA"] * n
    widths = np.concatenate([rng.integers(600, 900, n), rng.integers(200, 500, n)])
    heights = rng.integers(200, 800, 2 * n)  # uninformative
    modes = ["L"] * (2 * n)
    got = metadata_shortcut(widths, heights, modes, labels, seed=0)
    assert got["auc"] > 0.99
    assert got["features"]["width"]["auc_alone"] == 1.0
    assert got["features"]["width"]["higher_in"] == "NORMAL"
    assert got["features"]["height"]["auc_alone"] < 0.6
    assert got["folds"] == 5


def test_shortcut_auc_near_half_when_metadata_is_random():
    rng = np.random.default_rng(2)
    n = 800
    labels = list(rng.choice(["NORMAL", "PNEUMONIA"], n))
    got = metadata_shortcut(rng.integers(200, 900, n), rng.integers(200, 900, n),
                            list(rng.choice(["L", "RGB"], n)), labels, seed=0)
    assert 0.4 < got["auc"] < 0.6


def test_shortcut_per_class_numbers_by_hand():
    got = metadata_shortcut(
        widths=[100, 300, 200, 10, 30],
        heights=[50, 150, 100, 10, 30],
        modes=["L", "L", "RGB", "L", "L"],
        labels=["NORMAL", "NORMAL", "NORMAL", "PNEUMONIA", "PNEUMONIA"],
    )
    assert got["per_class"]["NORMAL"] == {
        "n": 3, "median_width": 200.0, "median_height": 100.0, "median_aspect": 0.5, "rgb_fraction": 0.3333,
    }
    assert got["per_class"]["PNEUMONIA"]["median_width"] == 20.0
    assert got["per_class"]["PNEUMONIA"]["median_aspect"] == 1.0
    assert got["folds"] == 2  # only 2 PNEUMONIA images: folds shrink to fit


def test_shortcut_skipped_with_one_class_member():
    got = metadata_shortcut([1, 2, 3], [1, 2, 3], ["L"] * 3, ["NORMAL", "NORMAL", "PNEUMONIA"])
    assert got["auc"] is None and "at least 2" in got["skipped"]


# --- the CLI on the repo sample ----------------------------------------------------------------

@pytest.fixture
def sample_db(imported_sample_db, tmp_path):
    dest = tmp_path / "wb.db"
    shutil.copy(imported_sample_db, dest)
    return dest


def test_audit_cli_json_on_sample(cli, sample_db):
    report = cli.json("--db", sample_db, "audit")
    assert set(report) >= {"images", "exact_duplicates", "near_duplicates", "splits", "shortcut", "warnings"}
    assert report["images"] == 48
    assert report["phash"]["computed_now"] == 48
    # The sample ships one exact-duplicate pair; phash must find at least that pair.
    assert report["exact_duplicates"]["copies"] >= 1
    assert report["near_duplicates"]["groups"] >= report["exact_duplicates"]["groups"]
    assert report["near_duplicates"]["hashed"] == 48
    (demo,) = report["splits"]
    assert demo["name"] == "demo" and demo["shared_patients"] == 0
    assert demo["exact_duplicate_groups_across_parts"] == 0
    sc = report["shortcut"]
    assert 0.0 <= sc["auc"] <= 1.0 and set(sc["per_class"]) == {"NORMAL", "PNEUMONIA"}
    assert isinstance(report["warnings"], list)
    # Hashes are stored: the second audit computes none and reports the same groups.
    again = cli.json("--db", sample_db, "audit", "--split", "demo")
    assert again["phash"]["computed_now"] == 0
    assert again["near_duplicates"] == report["near_duplicates"]
    # Only missing hashes are recomputed.
    with sqlite3.connect(sample_db) as con:
        con.execute("UPDATE image SET phash = NULL WHERE id = (SELECT min(id) FROM image)")
    assert cli.json("--db", sample_db, "audit")["phash"]["computed_now"] == 1


def test_audit_cli_text_and_unknown_split(cli, sample_db):
    out = cli.run("--db", sample_db, "audit").stdout
    assert "Exact duplicates:" in out and "Metadata shortcut:" in out and "Split demo (grouped)" in out
    err = cli.run("--db", sample_db, "audit", "--split", "nosuch", code=1).stderr
    assert "No split named 'nosuch'" in err


def test_audit_on_empty_workspace_is_a_clear_error(cli, ws):
    ws.db.dispose()  # an empty workspace (a missing one is refused earlier, see test_hostile)
    err = cli.run("audit", code=1).stderr
    assert "No readable images" in err


def test_audit_warns_about_patients_shared_by_a_random_split(cli, sample_db):
    # An image-level random split of the sample (seed 42) puts one patient's films in two parts.
    cli.run("--db", sample_db, "split", "--strategy", "random", "--name", "rnd", "--batch-per-class", "2")
    report = cli.json("--db", sample_db, "audit", "--split", "rnd")
    (rnd,) = report["splits"]
    assert rnd["shared_patients"] >= 1 and rnd["shared_images"] >= 2
    assert sum(rnd["by_pair"].values()) >= rnd["shared_patients"]
    assert any(w.startswith(f"split 'rnd': {rnd['shared_patients']} patient(s)") for w in report["warnings"])


# --- the real subset ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.shared
def test_subset_shows_the_resolution_shortcut(subset_dir, tmp_path):
    from workbench.analysis import audit_dataset
    from workbench.configs import SplitConfig
    from workbench.importing import import_dataset
    from workbench.splitting import create_split
    from workbench.workspace import Workspace

    ws = Workspace.from_options(workspace=str(tmp_path / "ws"))
    import_dataset(ws.db, subset_dir, progress=False)
    create_split(ws.db, "grouped", SplitConfig())
    create_split(ws.db, "random", SplitConfig(strategy="random"))
    report = audit_dataset(ws.db, progress=False)
    sc = report["shortcut"]
    assert sc["auc"] > 0.75
    assert sc["per_class"]["NORMAL"]["median_width"] > 1.3 * sc["per_class"]["PNEUMONIA"]["median_width"]
    assert any(w.startswith("metadata shortcut") for w in report["warnings"])
    # README of the subset: 8 byte-identical pairs; the grouped split keeps patients apart, random does not.
    assert report["exact_duplicates"]["copies"] == 8
    assert report["near_duplicates"]["groups"] >= 8
    by_name = {s["name"]: s for s in report["splits"]}
    assert by_name["grouped"]["shared_patients"] == 0
    assert by_name["random"]["shared_patients"] > 0
