"""Statistics of an active-learning simulation (`wb simulate`): pure functions over result rows.

A row is one (seed, strategy, round): {"seed", "strategy", "round", "boxes" (the budget spent:
chest boxes bought so far), metric: value or None, ...}. Round 0 is the seed set, shared by every
strategy of a seed. Summaries: the mean and std over seeds per (strategy, round); the share of the
pool needed to reach 95% of a full-budget reference; the share of random's budget at which a
strategy matches random's last round; and each strategy's gain over random, paired by seed.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

Row = dict[str, Any]


def training_epochs(epochs: int, batches: int, steps: int) -> int:
    """Epochs for one training: `epochs`, raised so that `batches` per epoch still give `steps` steps."""
    return max(epochs, -(-steps // max(batches, 1)))


def summarise(rows: Sequence[Row], strategies: Iterable[str], metrics: Sequence[str]) -> list[Row]:
    """Per (strategy, round): {"strategy", "round", "boxes" (mean), "seeds", m, f"{m}_std"} (None when no seed has m)."""
    table = []
    for strategy in strategies:
        for rnd in sorted({r["round"] for r in rows if r["strategy"] == strategy}):
            sel = [r for r in rows if r["strategy"] == strategy and r["round"] == rnd]
            entry: Row = {"strategy": strategy, "round": rnd, "boxes": int(np.mean([r["boxes"] for r in sel])),
                          "seeds": len(sel)}
            for m in metrics:
                vals = np.array([r[m] for r in sel if r.get(m) is not None], dtype=float)
                entry[m] = float(vals.mean()) if len(vals) else None
                entry[f"{m}_std"] = float(vals.std()) if len(vals) else None
            table.append(entry)
    return table


def reference(full_rows: Sequence[Row], metrics: Sequence[str]) -> dict[str, float | None]:
    """The full-budget reference: each metric's mean over its rows (None when none has it)."""
    out: dict[str, float | None] = {}
    for m in metrics:
        vals = [r[m] for r in full_rows if r.get(m) is not None]
        out[m] = float(np.mean(vals)) if vals else None
    return out


def savings(table: Sequence[Row], full: dict[str, float | None], pool_size: int, strategies: Iterable[str],
            metrics: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """strategy -> metric -> share of the pool boxed when the mean first reaches 95% of the full
    reference (None: not reached). Metrics where lower is better are not in `metrics` here."""
    out: dict[str, dict[str, float | None]] = {}
    for strategy in strategies:
        out[strategy] = {}
        for m in metrics:
            target = 0.95 * full[m] if full.get(m) is not None else None  # type: ignore[operator]
            hit = next((e["boxes"] for e in table if e["strategy"] == strategy and target is not None
                        and e[m] is not None and e[m] >= target), None)
            out[strategy][m] = None if hit is None else round(hit / pool_size, 4)
    return out


def match_random(table: Sequence[Row], strategies: Iterable[str], metrics: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """strategy -> metric -> the share of random's final budget at which the strategy's mean first
    reaches random's final mean (1.0: no saving; None: never, or no random arm).
    The usual active-learning "label savings" against random."""
    final = max((e for e in table if e["strategy"] == "random"), key=lambda e: e["round"], default=None)
    out: dict[str, dict[str, float | None]] = {}
    for strategy in strategies:
        out[strategy] = {}
        for m in metrics:
            if final is None or final[m] is None:
                out[strategy][m] = None
                continue
            hit = next((e["boxes"] for e in sorted(table, key=lambda e: e["round"]) if e["strategy"] == strategy
                        and e[m] is not None and e[m] >= final[m]), None)
            out[strategy][m] = None if hit is None else round(hit / final["boxes"], 4)
    return out


def versus_random(rows: Sequence[Row], strategies: Iterable[str], metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Paired gain of each strategy over random: strategy -> metric -> summary.

    Per seed, the gain is the mean over rounds >= 1 of (strategy - random) at the same round
    (the area between the two learning curves, per round); the summary gives its mean and std
    over seeds, and `wins`: in how many of the `seeds` the gain is > 0. Seeds or rounds that
    random (or the strategy) lacks are left out; no common round gives None.
    """
    by = {(r["seed"], r["strategy"], r["round"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    rounds = sorted({r["round"] for r in rows if r["round"] >= 1})
    out: dict[str, dict[str, Any]] = {}
    for strategy in strategies:
        if strategy == "random":
            continue
        out[strategy] = {}
        for m in metrics:
            gains = []
            for seed in seeds:
                pairs = [(by.get((seed, strategy, rnd), {}).get(m), by.get((seed, "random", rnd), {}).get(m)) for rnd in rounds]
                diffs = [a - b for a, b in pairs if a is not None and b is not None]
                if diffs:
                    gains.append(float(np.mean(diffs)))
            out[strategy][m] = None if not gains else {
                "mean": float(np.mean(gains)), "std": float(np.std(gains)), "wins": int(sum(g > 0 for g in gains)),
                "seeds": len(gains)}
    return out
