"""`wb simulate` (box-buying) on the repo sample at a tiny size: the loop, its outputs, resume, and errors."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow

TINY = ["--seeds", "0", "--rounds", "2", "--seed-size", "6", "--batch", "4", "--det-size", "64", "--cls-size", "64",
        "--min-steps", "3", "--warm-steps", "2", "--epochs", "1", "--device", "cpu", "--threads", "1", "--weights", "none"]


def test_simulate_tiny_buys_boxes_and_writes_table_plot_and_savings(cli, boxed_ws, tmp_path, monkeypatch):
    from sqlalchemy import select

    from db.models import Image, SplitMember

    with boxed_ws.db.session() as s:
        parts = {m.image_id: m.part for m in s.scalars(select(SplitMember))}
        firsts = set(s.scalars(select(Image.id).where(Image.duplicate_of_id.is_(None))))
    pool_size = sum(p == "train" and i in firsts for i, p in parts.items())  # first copies of the boxed train part
    out = tmp_path / "sim"
    result = cli.json("simulate", *TINY, "--strategies", "random,reliance", "--out", out)
    rows = result["rows"]
    assert len(rows) == 2 * 3  # two strategies x (seed set + 2 rounds)
    for strategy in ("random", "reliance"):
        own = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["round"])
        assert [r["boxes"] for r in own] == [6, 10, 14]
        # Each round buys exactly the batch of new boxes, from the train part only, never twice.
        assert [len(r["picked"]) for r in own] == [6, 4, 4]
        bought = [i for r in own for i in r["picked"]]
        assert len(set(bought)) == len(bought) and all(parts[i] == "train" for i in bought)
        # The classifier learns every pool image's class from round 0 on; only the boxes are bought.
        assert all(r["class_labels"] == pool_size for r in own)
        for r in own:
            assert 0.0 <= r["accuracy"] <= 1.0 and (r["map50"] is None or 0.0 <= r["map50"] <= 1.0)
            assert r["off_chest_auc"] is None or 0.0 <= r["off_chest_auc"] <= 1.0
    # Round 0 is shared: both strategies start from the same seed set and the same models.
    r0 = [r for r in rows if r["round"] == 0]
    assert r0[0]["accuracy"] == r0[1]["accuracy"] and r0[0]["map50"] == r0[1]["map50"] and r0[0]["picked"] == r0[1]["picked"]
    assert {e["strategy"] for e in result["table"]} == {"random", "reliance"}
    assert set(result["savings"]["random"]) == {"map50", "map50_95", "accuracy", "f1", "roc_auc"}
    gain = result["vs_random"]["reliance"]["off_chest_auc"]
    assert set(result["vs_random"]) == {"reliance"} and gain["seeds"] == 1 and 0 <= gain["wins"] <= 1
    assert result["match_random"]["random"]["roc_auc"] is not None  # random reaches its own last round
    assert all(v is None or 0 < v <= 1 for per in result["match_random"].values() for v in per.values())
    for per in result["savings"].values():
        assert all(v is None or 0 < v <= 1 for v in per.values())
    assert result["full"]["accuracy"] is not None
    assert (out / "learning_curves.png").stat().st_size > 5_000
    table = (out / "table.md").read_text()
    assert "| reliance | 2 | 14 |" in table and "Gain over random" in table
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["rows"]) == 6 and len(saved["full"]) == 1

    # Resuming the same folder trains nothing and gives the same table.
    from workbench import simulate as sim

    def boom(*a, **kw):
        raise AssertionError("a finished arm was trained again")

    monkeypatch.setattr(sim, "_train_detector", boom)
    again = cli.json("simulate", *TINY, "--strategies", "random,reliance", "--out", out)
    assert again["table"] == result["table"]


def test_simulate_errors(cli, boxed_ws, tmp_path):
    r = cli.run("simulate", *TINY, "--strategies", "magic", code=1)
    assert "Unknown strategy" in r.output
    r = cli.run("simulate", "--seeds", "0", "--seed-size", "500", "--device", "cpu", code=1)
    assert "annotated images in the train part" in r.output
    out = tmp_path / "sim"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"config": {"other": 1}, "rows": [], "full": []}))
    r = cli.run("simulate", *TINY, "--out", out, code=1)
    assert "another configuration" in r.output


def test_min_steps_raises_epochs_for_small_sets():
    from workbench.simulate import SimulateConfig, _epochs, _min_steps

    config = SimulateConfig(epochs=3, min_steps=100, warm_steps=20, rounds=3)
    assert _epochs(config, 10, 100) == 10  # 10 batches per epoch: 10 epochs give 100 steps
    assert _epochs(config, 7, 100) == 15  # ceil(100 / 7)
    assert _epochs(config, 50, 100) == 3  # already 150 steps
    assert _epochs(SimulateConfig(epochs=2), 1, 0) == 2
    assert _min_steps(config, start=None) == 100 and _min_steps(config, start=object()) == 20
    assert _min_steps(config, start=None, full=True) == 100 + 3 * 20  # as much as the longest warm-started arm
    cold = SimulateConfig(min_steps=100, warm_start=False)
    assert _min_steps(cold, start=None, full=True) == 100


def test_match_random_is_the_budget_share_that_reaches_randoms_last_round():
    from pipelines.simulation import match_random

    def entry(strategy, rnd, boxes, acc):
        return {"strategy": strategy, "round": rnd, "boxes": boxes, "accuracy": acc}

    table = [entry("random", 0, 10, 0.5), entry("random", 1, 20, 0.6), entry("random", 2, 30, 0.7), entry("random", 3, 40, 0.8),
             entry("x", 0, 10, 0.5), entry("x", 1, 20, 0.75), entry("x", 2, 30, 0.8), entry("x", 3, 40, 0.9),
             entry("y", 0, 10, 0.5), entry("y", 1, 20, 0.6), entry("y", 2, 30, 0.7), entry("y", 3, 40, 0.79)]
    out = match_random(table, ["random", "x", "y"], metrics=("accuracy",))
    assert out == {"random": {"accuracy": 1.0}, "x": {"accuracy": 0.75}, "y": {"accuracy": None}}  # x: 30 of 40 labels
    assert match_random([entry("x", 0, 10, 0.5)], ["x"], metrics=("accuracy",)) == {"x": {"accuracy": None}}


def test_warm_start_fine_tunes_a_copy(sample_dir):
    from pipelines.classification import Ensemble
    from pipelines.data import ImageRecord
    from workbench.simulate import SimulateConfig, _train_classifier

    paths = sorted(sample_dir.rglob("*.jpeg"))[:4]
    records = [ImageRecord(i, str(p), int("PNEUMONIA" in str(p)), None) for i, p in enumerate(paths)]
    config = SimulateConfig(members=("mobilenet_v2",), weights="none", cls_size=32, epochs=1, warm_steps=2, batch_size=2)
    start = Ensemble(config.members, config.head, "none").eval()
    before = {k: v.clone() for k, v in start.state_dict().items()}
    tuned = _train_classifier(records, config, 0, torch.device("cpu"), start=start)
    assert tuned is not start
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in before.items())  # the shared round-0 model is untouched
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in before.items() if v.is_floating_point())


def test_versus_random_pairs_by_seed_and_round_and_skips_round_zero():
    from pipelines.simulation import versus_random

    def row(seed, strategy, rnd, acc, map50):
        return {"seed": seed, "strategy": strategy, "round": rnd, "accuracy": acc, "map50": map50}

    rows = [
        row(0, "random", 0, 0.1, 0.0), row(0, "x", 0, 0.9, 0.9),  # round 0 is shared by design: ignored
        row(0, "random", 1, 0.5, 0.2), row(0, "x", 1, 0.6, 0.3),
        row(0, "random", 2, 0.6, 0.4), row(0, "x", 2, 0.8, 0.4),
        row(1, "random", 1, 0.7, 0.3), row(1, "x", 1, 0.6, None),  # a None round drops out of that metric
        row(1, "random", 2, 0.7, 0.4), row(1, "x", 2, 0.7, 0.5),
    ]
    out = versus_random(rows, ["random", "x"], metrics=("accuracy", "map50"))
    assert set(out) == {"x"}
    acc = out["x"]["accuracy"]  # seed 0: mean(0.1, 0.2) = 0.15; seed 1: mean(-0.1, 0.0) = -0.05
    assert acc["mean"] == pytest.approx(0.05) and acc["std"] == pytest.approx(0.1)
    assert (acc["wins"], acc["seeds"]) == (1, 2)
    m = out["x"]["map50"]  # seed 0: mean(0.1, 0.0) = 0.05; seed 1: only round 2, 0.1
    assert m["mean"] == pytest.approx(0.075) and m["std"] == pytest.approx(0.025) and m["wins"] == 2
    assert versus_random([row(0, "x", 1, 0.5, 0.5)], ["random", "x"], metrics=("accuracy",))["x"]["accuracy"] is None
