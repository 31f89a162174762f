"""Use case `simulate`: an active-learning benchmark with a simulated annotator.

The oracle is the workspace's existing valid chest boxes (e.g. the machine-made boxes of the
Kermany subset, imported with `wb annotations import`). Pool = annotated first copies of the
split's train part; test = annotated images of its test part. For each seed, a stratified seed
set is "annotated"; then for R rounds each strategy trains a detector and a classifier on
what it has labelled, evaluates on the fixed test set, scores the unlabelled pool, and
"annotates" its next batch from the oracle. Strategies: random, detector uncertainty,
off-lung attention, combined (the `wb suggest` default weights). One model pair trained on the
whole pool (first seed) gives the full-budget reference for the label savings; `versus_random`
gives each strategy's paired gain over random.

Training budget: every training from ImageNet weights runs at least `min_steps` optimiser
steps (a 20-image seed set gets 40 epochs; too few steps left the detector near mAP 0 and
made every strategy look alike). With `warm_start` (the default) rounds >= 1 fine-tune the
previous round's models for at least `warm_steps` steps, as incremental annotation would, at
a third of the cost of starting afresh; `warm_start=False` retrains from ImageNet each round.

Models are trained here with the pipelines' loops (no Run rows, nothing written to the DB);
scoring uses the same functions as `wb suggest` (pipelines.scoring/active/selection). Results
go to a folder: results.json (every round), table.md, learning_curves.png. Re-running with
the same folder skips the (seed, strategy) arms already finished.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select
from tqdm import tqdm

from db.models import Image, SplitMember
from pipelines import active, engine
from pipelines.classification import Ensemble
from pipelines.data import ClassificationDataset, DetectionDataset, ImageRecord, collate_detection
from pipelines.detection import build_detector
from pipelines.metrics import classification_metrics, detection_map
from pipelines.models import UnknownBackbone, WeightsUnavailable
from pipelines.scoring import PoolDataset, classify_with_cams, collate_pool, detect_with_flip
from pipelines.selection import SelectionRules, select_batch
from pipelines.splits import pick_per_class
from workbench.configs import DEFAULT_WEIGHTS
from workbench.errors import InputError
from workbench.runs import latest_boxes
from workbench.splitting import resolve_split
from workbench.workspace import Workspace

STRATEGIES: dict[str, dict[str, float] | None] = {
    "random": None,
    "uncertainty": {"uncertainty": 1.0},
    "off_lung": {"off_lung": 1.0},
    "combined": dict(DEFAULT_WEIGHTS),
}
METRICS = ("map50", "map50_95", "accuracy", "f1", "roc_auc")


@dataclass(frozen=True)
class SimulateConfig:
    """One benchmark. Defaults: the small CPU configuration (reduced image sizes, subsets)."""

    split: str | None = None
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    seeds: tuple[int, ...] = (0, 1, 2)
    rounds: int = 3  # suggestion rounds after the seed set
    seed_size: int = 20  # images labelled before round 1 (half per class)
    batch: int = 20  # images "annotated" per round
    pool_limit: int | None = 300  # random subset of the pool (None = all)
    test_limit: int | None = 300  # random subset of the test set (None = all)
    det_backbone: str = "mobilenet_v2"
    det_size: int = 160
    members: tuple[str, ...] = ("mobilenet_v2",)
    head: str = "fc2"
    cls_size: int = 128
    epochs: int = 3
    min_steps: int = 120  # at least this many optimiser steps per training from ImageNet (small sets get more epochs)
    warm_start: bool = True  # rounds >= 1 fine-tune the previous round's models instead of starting afresh
    warm_steps: int = 40  # at least this many steps per warm-started training
    batch_size: int = 8
    det_lr: float = 0.005  # SGD, momentum 0.9
    cls_lr: float = 3e-4  # Adam
    weights: str = "imagenet"
    allow_fallback: bool = True
    full_reference: bool = True  # also train on the whole pool (for label savings)
    device: str = "auto"


@dataclass
class SimulateResult:
    folder: str
    rows: list[dict] = field(default_factory=list)  # one per (seed, strategy, round)
    table: list[dict] = field(default_factory=list)  # per (strategy, round): mean and std of each metric
    full: dict = field(default_factory=dict)  # full-budget reference (whole pool, first seed)
    savings: dict = field(default_factory=dict)  # strategy -> metric -> fraction of the pool needed (None: not reached)
    vs_random: dict = field(default_factory=dict)  # strategy -> metric -> paired gain over random (see versus_random)
    match_random: dict = field(default_factory=dict)  # strategy -> metric -> budget share to match random's last round
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Item:
    record: ImageRecord
    patient_key: str
    sha256: str
    phash: str | None
    width: int
    height: int


def _validate(config: SimulateConfig) -> None:
    unknown = [s for s in config.strategies if s not in STRATEGIES]
    if unknown or not config.strategies:
        raise InputError(f"Unknown strategy {unknown[0] if unknown else '(none)'!r}", f"choose from {', '.join(STRATEGIES)}")
    for name in ("rounds", "seed_size", "batch", "epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("min_steps", "warm_steps"):
        if getattr(config, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} must be at least 0")
    if not config.seeds:
        raise InputError("Give at least one seed")


def _load(ws: Workspace, config: SimulateConfig) -> tuple[list[_Item], list[_Item]]:
    with ws.db.session() as s:
        split = resolve_split(s, config.split)
        out = {}
        for part in ("train", "test"):
            images = list(s.scalars(
                select(Image).join(SplitMember, SplitMember.image_id == Image.id)
                .where(SplitMember.split_id == split.id, SplitMember.part == part, Image.status == "ok",
                       Image.duplicate_of_id.is_(None)).order_by(Image.id)))
            boxes = latest_boxes(s, [im.id for im in images])
            out[part] = [_Item(ImageRecord(im.id, im.abs_path, int(im.label == "PNEUMONIA"), boxes[im.id]),
                               im.patient_key, im.sha256, im.phash, im.width, im.height)
                         for im in images if im.id in boxes]
    pool, test = out["train"], out["test"]
    rng = np.random.default_rng(12345)  # the same subsets for every seed and strategy
    if config.pool_limit and len(pool) > config.pool_limit:
        pool = [pool[i] for i in sorted(rng.choice(len(pool), config.pool_limit, replace=False))]
    if config.test_limit and len(test) > config.test_limit:
        test = [test[i] for i in sorted(rng.choice(len(test), config.test_limit, replace=False))]
    if len(pool) < config.seed_size + config.batch:
        raise InputError(f"Only {len(pool)} annotated images in the train part", "import chest boxes (`wb annotations import FILE`)")
    if len({it.record.label for it in test}) < 2:
        raise InputError("The test part needs annotated images of both classes", "import chest boxes or pick another --split")
    return pool, test


# --- training and evaluation ------------------------------------------------------------------

def _epochs(config: SimulateConfig, batches: int, steps: int) -> int:
    """Epochs for one training: `epochs`, raised so that small sets still get `steps` steps."""
    return max(config.epochs, -(-steps // max(batches, 1)))


def _min_steps(config: SimulateConfig, start, full: bool = False) -> int:
    """The step floor: `warm_steps` to fine-tune, `min_steps` from ImageNet. The full-pool
    reference gets as many as the longest arm's models have had in all (with warm starts:
    min_steps + rounds x warm_steps), so it is not the least-trained model of the benchmark."""
    if full and config.warm_start:
        return config.min_steps + config.rounds * config.warm_steps
    return config.warm_steps if start is not None else config.min_steps


def _initial(start: torch.nn.Module | None, build) -> torch.nn.Module:
    """A copy of `start` (warm start; `start` itself is left as is), else `build()` from ImageNet."""
    try:
        return copy.deepcopy(start) if start is not None else build()
    except (WeightsUnavailable, UnknownBackbone, ValueError) as exc:
        raise InputError(str(exc)) from None


def _fit(model: torch.nn.Module, optimizer, loader, kind: str, config: SimulateConfig, device, steps: int) -> torch.nn.Module:
    task = engine.Task(kind)
    for _ in range(_epochs(config, len(loader), steps)):
        engine.train_one_epoch(model, optimizer, loader, device, task, progress=False)
    return model.eval()


def _train_detector(records: list[ImageRecord], config: SimulateConfig, seed: int, device,
                    start: torch.nn.Module | None = None, full: bool = False) -> torch.nn.Module:
    """Train from ImageNet weights, or fine-tune a copy of `start`."""
    generator = engine.seed_everything(seed)
    model = _initial(start, lambda: build_detector(config.det_backbone, config.weights, image_size=config.det_size,
                                                   allow_fallback=config.allow_fallback)).to(device)
    loader = torch.utils.data.DataLoader(DetectionDataset(records, config.det_size), batch_size=config.batch_size,
                                         shuffle=True, generator=generator, collate_fn=collate_detection)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.det_lr, momentum=0.9, weight_decay=1e-4)
    return _fit(model, opt, loader, "detector", config, device, _min_steps(config, start, full))


def _train_classifier(records: list[ImageRecord], config: SimulateConfig, seed: int, device,
                      start: torch.nn.Module | None = None, full: bool = False) -> torch.nn.Module:
    """Train from ImageNet weights, or fine-tune a copy of `start`."""
    generator = engine.seed_everything(seed)
    model = _initial(start, lambda: Ensemble(config.members, config.head, config.weights,
                                             allow_fallback=config.allow_fallback)).to(device)
    loader = torch.utils.data.DataLoader(ClassificationDataset(records, config.cls_size), batch_size=config.batch_size,
                                         shuffle=True, generator=generator, drop_last=len(records) > config.batch_size)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.cls_lr)
    return _fit(model, opt, loader, "classifier", config, device, _min_steps(config, start, full))


def _evaluate(det, cls, test: list[_Item], config: SimulateConfig, device) -> dict:
    records = [it.record for it in test]
    loader = torch.utils.data.DataLoader(DetectionDataset(records, config.det_size), batch_size=config.batch_size,
                                         collate_fn=collate_detection)
    preds = engine.predict_detections(det, loader, device)
    scaled = []
    for p, it in zip(preds, test, strict=True):
        f = np.array([it.width, it.height, it.width, it.height]) / config.det_size
        scaled.append({"boxes": p["boxes"].reshape(-1, 4) * f, "scores": p["scores"]})
    out = dict(detection_map(scaled, [{"boxes": [r.box]} for r in records]))
    cl = torch.utils.data.DataLoader(ClassificationDataset(records, config.cls_size), batch_size=config.batch_size)
    probs = engine.predict_probs(cls, cl, device)[:, 1]
    m = classification_metrics([r.label for r in records], probs, n_boot=0)
    out.update({k: m[k] for k in ("accuracy", "f1", "roc_auc")})
    return out


def _score(det, cls, items: list[_Item], config: SimulateConfig, device) -> dict[str, np.ndarray]:
    """Every `wb suggest` component for the items (the learner sees only its detector's boxes)."""
    loader = torch.utils.data.DataLoader(PoolDataset([it.record.path for it in items], config.det_size, config.cls_size),
                                         batch_size=config.batch_size, collate_fn=collate_pool)
    parts: dict[str, list] = {k: [] for k in ("top_scores", "class_scores", "boxes", "flip_boxes", "widths", "probs",
                                              "member_probs", "off_lung")}
    for _, det_images, cls_images, sizes in loader:
        d = detect_with_flip(det, det_images, sizes, device)
        c = classify_with_cams(cls, cls_images, device)
        _, combined = active.off_lung_members(c.cams, d.top_box, sizes)
        for k, v in (("top_scores", d.top_score), ("class_scores", d.class_scores), ("boxes", d.top_box),
                     ("flip_boxes", d.flip_box), ("widths", sizes[:, 0]), ("probs", c.probs), ("off_lung", combined)):
            parts[k].append(v)
        parts["member_probs"].append(c.member_probs)
    arrays = {k: np.concatenate(v, axis=1 if k == "member_probs" else 0) for k, v in parts.items()}
    return active.score_components(**arrays)


def _pick(strategy: str, comps: dict | None, items: list[_Item], k: int, seed: int) -> list[int]:
    if strategy == "random":
        rng = np.random.default_rng(seed)
        return [int(i) for i in rng.choice(len(items), min(k, len(items)), replace=False)]
    scores = active.combine_scores(comps, STRATEGIES[strategy])
    rules = SelectionRules(k=k, seed=seed)
    chosen = select_batch(scores, rules, patient_keys=[it.patient_key for it in items], sha256s=[it.sha256 for it in items],
                          phashes=[it.phash for it in items]).order
    if len(chosen) < k:  # the per-patient cap ran the pool dry: fill by score
        rest = [i for i in np.argsort(-np.nan_to_num(scores, nan=-1.0), kind="stable") if i not in set(chosen)]
        chosen += [int(i) for i in rest[: k - len(chosen)]]
    return chosen


# --- the loop ---------------------------------------------------------------------------------

def _summarise(rows: list[dict], full_rows: list[dict], pool_size: int, strategies) -> tuple[list, dict, dict]:
    table = []
    for strategy in strategies:
        rounds = sorted({r["round"] for r in rows if r["strategy"] == strategy})
        for rnd in rounds:
            sel = [r for r in rows if r["strategy"] == strategy and r["round"] == rnd]
            entry = {"strategy": strategy, "round": rnd, "labelled": int(np.mean([r["labelled"] for r in sel])), "seeds": len(sel)}
            for m in METRICS:
                vals = np.array([r[m] for r in sel if r[m] is not None], dtype=float)
                entry[m] = float(vals.mean()) if len(vals) else None
                entry[f"{m}_std"] = float(vals.std()) if len(vals) else None
            table.append(entry)
    full = {}
    for m in METRICS:
        vals = [r[m] for r in full_rows if r.get(m) is not None]
        full[m] = float(np.mean(vals)) if vals else None
    savings: dict = {}
    for strategy in strategies:
        savings[strategy] = {}
        for m in METRICS:
            target = 0.95 * full[m] if full.get(m) is not None else None
            hit = next((e["labelled"] for e in table if e["strategy"] == strategy and target is not None
                        and e[m] is not None and e[m] >= target), None)
            savings[strategy][m] = None if hit is None else round(hit / pool_size, 4)
    return table, full, savings


def match_random(table: list[dict], strategies, metrics=METRICS) -> dict:
    """strategy -> metric -> the share of random's final labelled count at which the strategy's
    mean first reaches random's final mean (1.0: no saving; None: never, or no random arm).
    The usual active-learning "label savings" against random; it stays informative where the
    full-pool reference is reached at the seed set already."""
    final = max((e for e in table if e["strategy"] == "random"), key=lambda e: e["round"], default=None)
    out: dict = {}
    for strategy in strategies:
        out[strategy] = {}
        for m in metrics:
            if final is None or final[m] is None:
                out[strategy][m] = None
                continue
            hit = next((e["labelled"] for e in sorted(table, key=lambda e: e["round"]) if e["strategy"] == strategy
                        and e[m] is not None and e[m] >= final[m]), None)
            out[strategy][m] = None if hit is None else round(hit / final["labelled"], 4)
    return out


def versus_random(rows: list[dict], strategies, metrics=METRICS) -> dict:
    """Paired gain of each strategy over random: strategy -> metric -> summary.

    Per seed, the gain is the mean over rounds >= 1 of (strategy - random) at the same round
    (the area between the two learning curves, per round); the summary gives its mean and std
    over seeds, and `wins`: in how many of the `seeds` the gain is > 0. Seeds or rounds that
    random (or the strategy) lacks are left out; no common round gives None.
    """
    by = {(r["seed"], r["strategy"], r["round"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    rounds = sorted({r["round"] for r in rows if r["round"] >= 1})
    out: dict = {}
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


def _plot(table: list[dict], full: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    for ax, m in zip(axes, METRICS, strict=True):
        for strategy in dict.fromkeys(e["strategy"] for e in table):
            pts = [e for e in table if e["strategy"] == strategy and e[m] is not None]
            x = np.array([e["labelled"] for e in pts])
            y = np.array([e[m] for e in pts])
            s = np.array([e[f"{m}_std"] for e in pts])
            ax.plot(x, y, marker="o", label=strategy)
            ax.fill_between(x, y - s, y + s, alpha=0.15)
        if full.get(m) is not None:
            ax.axhline(full[m], color="grey", linestyle="--", label="full pool")
            ax.axhline(0.95 * full[m], color="grey", linestyle=":", label="95% of full")
        ax.set_xlabel("labelled images")
        ax.set_title({"map50": "chest box mAP@0.5", "map50_95": "chest box mAP@[.5:.95]", "accuracy": "accuracy",
                      "f1": "F1 (pneumonia positive)", "roc_auc": "ROC-AUC"}[m])
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _strategy_table(title: str, per_strategy: dict, cell) -> list[str]:
    """Markdown lines: `title`, then one row per strategy with `cell(value)` per metric."""
    lines = ["", title, "", "| strategy | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for strategy, per in per_strategy.items():
        lines.append(f"| {strategy} | " + " | ".join(cell(per[m]) for m in METRICS) + " |")
    return lines


def _write_table(result: SimulateResult, pool_size: int, path: Path) -> None:
    lines = ["| strategy | round | labelled | " + " | ".join(METRICS) + " |", "|---|---|---|" + "---|" * len(METRICS)]
    for e in result.table:
        cells = ["n/a" if e[m] is None else f"{e[m]:.3f} ± {e[f'{m}_std']:.3f}" for m in METRICS]
        lines.append(f"| {e['strategy']} | {e['round']} | {e['labelled']} | " + " | ".join(cells) + " |")
    lines += ["", f"Full pool ({pool_size} images): " + ", ".join(
        f"{m} {'n/a' if v is None else f'{v:.3f}'}" for m, v in result.full.items())]

    def share(v):
        return "-" if v is None else f"{v:.2f}"

    lines += _strategy_table("Fraction of the pool labelled when the mean first reaches 95% of the full-pool metric "
                             "(- = not reached):", result.savings, share)
    if result.match_random:
        lines += _strategy_table("Share of the budget at which the mean first matches random's final round "
                                 "(1.00 = no saving, - = never):", result.match_random, share)
    if result.vs_random:
        lines += _strategy_table("Gain over random, paired by seed: mean over rounds 1.. of (strategy - random), "
                                 "mean ± std over seeds (seeds where it is > 0):", result.vs_random,
                                 lambda g: "n/a" if g is None else f"{g['mean']:+.3f} ± {g['std']:.3f} ({g['wins']}/{g['seeds']})")
    path.write_text("\n".join(lines) + "\n")


def simulate(ws: Workspace, config: SimulateConfig, *, out: Path | None = None, progress: bool = True) -> SimulateResult:
    """Run (or finish) the benchmark; write results.json, table.md and learning_curves.png to `out`."""
    _validate(config)
    t0 = time.perf_counter()
    try:
        device = engine.pick_device(config.device)
    except ValueError as exc:
        raise InputError(str(exc), "use --device auto or cpu") from None
    pool, test = _load(ws, config)
    folder = Path(out) if out else ws.folder("simulate", time.strftime("%Y%m%d-%H%M%S"))
    folder.mkdir(parents=True, exist_ok=True)
    state_file = folder / "results.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if state and state.get("config") != json.loads(json.dumps(dataclasses.asdict(config))):
        raise InputError(f"{folder} holds results of another configuration", "pass another --out folder")
    rows: list[dict] = state.get("rows", [])
    full_rows: list[dict] = state.get("full", [])

    def save() -> None:
        state_file.write_text(json.dumps({"config": dataclasses.asdict(config), "rows": rows, "full": full_rows}, indent=1))

    done = {(r["seed"], r["strategy"]) for r in rows if r["round"] == config.rounds}
    arms = [(seed, s) for seed in config.seeds for s in config.strategies if (seed, s) not in done]
    # The full-pool reference is one training (first seed): the most expensive one, and a fixed target.
    full_todo = [config.seeds[0]] if config.full_reference and not full_rows else []
    bar = tqdm(total=len(arms) * (config.rounds + 1) + len(full_todo), desc="simulate", unit="round",
               disable=not progress)
    try:
        for seed in config.seeds:
            todo = [s for (sd, s) in arms if sd == seed]
            if not todo:
                continue
            labels = [("NORMAL", "PNEUMONIA")[it.record.label] for it in pool]
            start = pick_per_class(labels, config.seed_size // 2 + config.seed_size % 2, seed)[: config.seed_size]
            # Round 0 is the same for every strategy of a seed: train and score once.
            t_round = time.perf_counter()
            det0 = _train_detector([pool[i].record for i in start], config, seed, device)
            cls0 = _train_classifier([pool[i].record for i in start], config, seed, device)
            m0 = _evaluate(det0, cls0, test, config, device)
            m0["seconds"] = round(time.perf_counter() - t_round, 1)
            comps0 = None
            for strategy in todo:
                rows[:] = [r for r in rows if not (r["seed"] == seed and r["strategy"] == strategy)]
                labelled = list(start)
                rows.append({"seed": seed, "strategy": strategy, "round": 0, "labelled": len(labelled), **m0})
                bar.update()
                det, cls = det0, cls0
                for rnd in range(1, config.rounds + 1):
                    t_round = time.perf_counter()
                    rest = [i for i in range(len(pool)) if i not in set(labelled)]
                    if not rest:
                        break
                    comps = None
                    if strategy != "random":
                        if rnd == 1 and comps0 is not None:
                            comps = {k: v for k, v in comps0.items()}
                        else:
                            comps = _score(det, cls, [pool[i] for i in rest], config, device)
                            if rnd == 1:
                                comps0 = comps
                    picked = _pick(strategy, comps, [pool[i] for i in rest], config.batch, seed * 1000 + rnd)
                    labelled += [rest[i] for i in picked]
                    records = [pool[i].record for i in labelled]
                    det = _train_detector(records, config, seed, device, start=det if config.warm_start else None)
                    cls = _train_classifier(records, config, seed, device, start=cls if config.warm_start else None)
                    rows.append({"seed": seed, "strategy": strategy, "round": rnd, "labelled": len(labelled),
                                 **_evaluate(det, cls, test, config, device),
                                 "seconds": round(time.perf_counter() - t_round, 1)})
                    bar.update()
                save()
        for seed in full_todo:
            t_round = time.perf_counter()
            det = _train_detector([it.record for it in pool], config, seed, device, full=True)
            cls = _train_classifier([it.record for it in pool], config, seed, device, full=True)
            full_rows.append({"seed": seed, "labelled": len(pool), **_evaluate(det, cls, test, config, device),
                              "seconds": round(time.perf_counter() - t_round, 1)})
            save()
            bar.update()
    finally:
        bar.close()
    table, full, savings = _summarise(rows, full_rows, len(pool), config.strategies)
    result = SimulateResult(folder=str(folder), rows=rows, table=table, full=full, savings=savings,
                            vs_random=versus_random(rows, config.strategies) if "random" in config.strategies else {},
                            match_random=match_random(table, config.strategies) if "random" in config.strategies else {},
                            seconds=round(time.perf_counter() - t0, 1))
    _write_table(result, len(pool), folder / "table.md")
    _plot(table, full, folder / "learning_curves.png")
    return result
