"""`wb simulate` on the repo sample at a tiny size: the loop, its outputs, resume, and errors."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

TINY = ["--seeds", "0", "--rounds", "2", "--seed-size", "6", "--batch", "4", "--det-size", "64", "--cls-size", "64", "--min-steps", "3",
        "--epochs", "1", "--device", "cpu", "--threads", "1", "--weights", "none"]


def test_simulate_tiny_writes_table_plot_and_savings(cli, boxed_ws, tmp_path, monkeypatch):
    out = tmp_path / "sim"
    result = cli.json("simulate", *TINY, "--strategies", "random,off_lung", "--out", out)
    rows = result["rows"]
    assert len(rows) == 2 * 3  # two strategies x (seed set + 2 rounds)
    for strategy in ("random", "off_lung"):
        own = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["round"])
        assert [r["labelled"] for r in own] == [6, 10, 14]
        for r in own:
            assert 0.0 <= r["accuracy"] <= 1.0 and (r["map50"] is None or 0.0 <= r["map50"] <= 1.0)
    # Round 0 is shared: both strategies start from the same seed set and the same models.
    r0 = [r for r in rows if r["round"] == 0]
    assert r0[0]["accuracy"] == r0[1]["accuracy"] and r0[0]["map50"] == r0[1]["map50"]
    assert {e["strategy"] for e in result["table"]} == {"random", "off_lung"}
    assert set(result["savings"]["random"]) == {"map50", "accuracy", "f1", "roc_auc"}
    for per in result["savings"].values():
        assert all(v is None or 0 < v <= 1 for v in per.values())
    assert result["full"]["accuracy"] is not None
    assert (out / "learning_curves.png").stat().st_size > 5_000
    table = (out / "table.md").read_text()
    assert "| off_lung | 2 | 14 |" in table
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["rows"]) == 6 and len(saved["full"]) == 1

    # Resuming the same folder trains nothing and gives the same table.
    from workbench import simulate as sim

    def boom(*a, **kw):
        raise AssertionError("a finished arm was trained again")

    monkeypatch.setattr(sim, "_train_detector", boom)
    again = cli.json("simulate", *TINY, "--strategies", "random,off_lung", "--out", out)
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
    from workbench.simulate import SimulateConfig, _epochs

    config = SimulateConfig(epochs=3, min_steps=100)
    assert _epochs(config, 10) == 10  # 10 batches per epoch: 10 epochs give 100 steps
    assert _epochs(config, 7) == 15  # ceil(100 / 7)
    assert _epochs(config, 50) == 3  # already 150 steps
    assert _epochs(SimulateConfig(epochs=2), 1) == 2
