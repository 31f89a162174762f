"""Use case `simulate`: a box-buying active-learning benchmark with a simulated annotator.

In Kermany every image already has its class; what annotators add is the chest box. So the
simulated annotator sells boxes: the oracle is the workspace's valid chest boxes (e.g. the machine
boxes of the Kermany subset, or a planted copy's). Pool = boxed first copies of the split's train
part (every class known); test = boxed images of its test part. For each seed a class-balanced
seed set of boxes is bought; then for R rounds each strategy
  1. trains the detector on the boxed images, and the classifier on EVERY pool image, steered by
     the bought boxes (`steer`: "guide", the input-gradient penalty outside the box, or a chest
     input mode with the detector's boxes for the images not bought yet),
  2. is evaluated on the test part: chest-box mAP, accuracy, F1, ROC-AUC and `off_chest_auc`
     (the classifier on chest-removed test images; 0.5 = no shortcut outside the chest). On a
     planted copy (`wb stress plant`) the test part is the reversed one, so accuracy there is
     the reversed-test accuracy,
  3. scores the pool images it has no box for with `wb suggest`'s loop
     (pipelines.scoring.score_pool_batches) and buys the next batch of boxes.
Strategies: random, detector uncertainty, off-lung attention, off-chest reliance, combined.
One model pair trained with every pool box (first seed) gives the full-budget reference;
pipelines.simulation gives each strategy's paired gain over random and its budget share to
match random.

Training budget: every training from ImageNet weights runs at least `min_steps` optimiser steps;
with `warm_start` (the default) rounds >= 1 fine-tune the previous round's models for at least
`warm_steps` steps. Models are built by the trainers' own factory (workbench.runs.build_model) and
trained with pipelines.engine; nothing is written to the DB. Results go to a folder:
results.json (every round), table.md, learning_curves.png. Re-running with the same folder skips
the (seed, strategy) arms already finished.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import select

from db.models import Image, ImageStatus, SplitMember
from pipelines import active, engine, simulation
from pipelines.chest import Box
from pipelines.classification import Ensemble
from pipelines.data import ClassificationDataset, ClassifierInput, DetectionDataset, ImageRecord, collate_detection
from pipelines.metrics import classification_metrics, detection_map, reliance_metrics
from pipelines.progress import progress_bar
from pipelines.report import plot_learning_curves, rounds_table, strategy_table
from pipelines.scoring import PoolItem, score_pool_batches
from pipelines.selection import SelectionRules, select_batch
from pipelines.splits import pick_per_class
from workbench.configs import (
    SIMULATE_STRATEGIES,
    ClassifierConfig,
    DetectorConfig,
    SimulateConfig,
    validate_simulate_config,
)
from workbench.errors import InputError
from workbench.predicting import top_detections
from workbench.runs import build_model, latest_boxes
from workbench.splitting import resolve_split
from workbench.workspace import Workspace

METRICS = ("map50", "map50_95", "accuracy", "f1", "roc_auc", "off_chest_auc")
HIGHER_IS_BETTER = ("map50", "map50_95", "accuracy", "f1", "roc_auc")  # off_chest_auc: nearer 0.5 is better
EVAL_FILL = "grey"  # off_chest_auc as `wb eval` measures it


@dataclass
class SimulateResult:
    folder: str
    rows: list[dict] = field(default_factory=list)  # one per (seed, strategy, round)
    table: list[dict] = field(default_factory=list)  # per (strategy, round): mean and std of each metric
    full: dict = field(default_factory=dict)  # full-budget reference (every pool image boxed, first seed)
    savings: dict = field(default_factory=dict)  # strategy -> metric -> share of the pool boxed to reach 95% of full
    vs_random: dict = field(default_factory=dict)  # strategy -> metric -> paired gain over random
    match_random: dict = field(default_factory=dict)  # strategy -> metric -> budget share to match random's last round
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Item:
    record: ImageRecord  # with the oracle's chest box
    patient_key: str
    sha256: str
    phash: str | None
    width: int
    height: int


def _load(ws: Workspace, config: SimulateConfig) -> tuple[list[_Item], list[_Item]]:
    with ws.db.session() as s:
        split = resolve_split(s, config.split)
        out = {}
        for part in ("train", "test"):
            images = list(s.scalars(
                select(Image).join(SplitMember, SplitMember.image_id == Image.id)
                .where(SplitMember.split_id == split.id, SplitMember.part == part, Image.status == ImageStatus.OK,
                       Image.duplicate_of_id.is_(None)).order_by(Image.id)))
            boxes = latest_boxes(s, [im.id for im in images])
            out[part] = [_Item(ImageRecord(im.id, im.abs_path, int(im.label == "PNEUMONIA"), boxes[im.id]),
                               im.patient_key, im.sha256, im.phash, im.width or 0, im.height or 0)
                         for im in images if im.id in boxes]
    pool, test = out["train"], out["test"]
    rng = np.random.default_rng(12345)  # the same subsets for every seed and strategy
    if config.pool_limit and len(pool) > config.pool_limit:
        pool = [pool[i] for i in sorted(rng.choice(len(pool), config.pool_limit, replace=False))]
    if config.test_limit and len(test) > config.test_limit:
        test = [test[i] for i in sorted(rng.choice(len(test), config.test_limit, replace=False))]
    if len(pool) < config.seed_size + config.batch:
        raise InputError(f"Only {len(pool)} annotated images in the train part",
                         "import chest boxes (`wb annotations import FILE`)")
    if len({it.record.label for it in test}) < 2:
        raise InputError("The test part needs annotated images of both classes", "import chest boxes or pick another --split")
    return pool, test


# --- training (the trainers' own factory and loop) ----------------------------------------------

def _det_config(config: SimulateConfig) -> DetectorConfig:
    return DetectorConfig(backbone=config.det_backbone, image_size=config.det_size, weights=config.weights,
                          allow_fallback=config.allow_fallback)


def _cls_config(config: SimulateConfig) -> ClassifierConfig:
    guide = config.steer == "guide"
    return ClassifierConfig(members=config.members, head=config.head, image_size=config.cls_size, weights=config.weights,
                            allow_fallback=config.allow_fallback, input_mode="full" if guide else config.steer,
                            guide="boxes" if guide else "none", guide_weight=config.guide_weight)


def _inputs(config: SimulateConfig) -> ClassifierInput:
    return ClassifierInput("full" if config.steer == "guide" else config.steer)


def _epochs(config: SimulateConfig, batches: int, steps: int) -> int:
    """Epochs for one training: `epochs`, raised so that small sets still get `steps` steps."""
    return simulation.training_epochs(config.epochs, batches, steps)


def _min_steps(config: SimulateConfig, start: Any, full: bool = False) -> int:
    """The step floor: `warm_steps` to fine-tune, `min_steps` from ImageNet. The full-budget
    reference gets as many as the longest arm's models have had in all (with warm starts:
    min_steps + rounds x warm_steps), so it is not the least-trained model of the benchmark."""
    if full and config.warm_start:
        return config.min_steps + config.rounds * config.warm_steps
    return config.warm_steps if start is not None else config.min_steps


def _initial(start: torch.nn.Module | None, kind: str, train_config: DetectorConfig | ClassifierConfig) -> torch.nn.Module:
    """A copy of `start` (warm start; `start` itself is left as is), else a new model from ImageNet."""
    return copy.deepcopy(start) if start is not None else build_model(kind, train_config)


def _fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: Any, task: engine.Task, config: SimulateConfig,
         device: torch.device, steps: int) -> torch.nn.Module:
    for _ in range(_epochs(config, len(loader), steps)):
        engine.train_one_epoch(model, optimizer, loader, device, task, progress=False)
    return model.eval()


def _train_detector(records: list[ImageRecord], config: SimulateConfig, seed: int, device: torch.device,
                    start: torch.nn.Module | None = None, full: bool = False) -> torch.nn.Module:
    """The detector on the boxed `records`, from ImageNet or fine-tuning a copy of `start`."""
    generator = engine.seed_everything(seed)
    model = _initial(start, "detector", _det_config(config)).to(device)
    loader = torch.utils.data.DataLoader(DetectionDataset(records, config.det_size), batch_size=config.batch_size,
                                         shuffle=True, generator=generator, collate_fn=collate_detection)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.det_lr, momentum=0.9, weight_decay=1e-4)
    return _fit(model, opt, loader, engine.DetectorTask(), config, device, _min_steps(config, start, full))


def _train_classifier(records: list[ImageRecord], config: SimulateConfig, seed: int, device: torch.device,
                      start: torch.nn.Module | None = None, full: bool = False) -> Ensemble:
    """The classifier on every pool image; records carry the boxes that steer it (None: no box)."""
    generator = engine.seed_everything(seed)
    model = _initial(start, "classifier", _cls_config(config)).to(device)
    guide = config.steer == "guide"
    data = ClassificationDataset(records, config.cls_size, inputs=_inputs(config), guide=guide)
    loader = torch.utils.data.DataLoader(data, batch_size=config.batch_size, shuffle=True, generator=generator,
                                         drop_last=len(records) > config.batch_size)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.cls_lr)
    task = engine.ClassifierTask(guide_weight=config.guide_weight if guide else 0.0)
    trained = _fit(model, opt, loader, task, config, device, _min_steps(config, start, full))
    assert isinstance(trained, Ensemble)  # build_model's classifier
    return trained


@torch.inference_mode()
def _detector_boxes(det: torch.nn.Module, items: list[_Item], config: SimulateConfig, device: torch.device) -> list[Box | None]:
    """The detector's top box per item, in file pixels (None: nothing found)."""
    loader = torch.utils.data.DataLoader(DetectionDataset([dataclasses.replace(it.record, box=None) for it in items],
                                                          config.det_size), batch_size=config.batch_size,
                                         collate_fn=collate_detection)
    preds = engine.predict_detections(det, loader, device)
    _, _, _, boxes, _ = top_detections(preds, [(it.width, it.height) for it in items], config.det_size)
    return [(b[0], b[1], b[2], b[3]) if b is not None else None for b in boxes]


def _classifier_records(pool: list[_Item], boxed: set[int], det: torch.nn.Module, config: SimulateConfig,
                        device: torch.device, full: bool = False) -> list[ImageRecord]:
    """Every pool image, with its bought box; for a chest input mode the detector's box stands in elsewhere."""
    if full:
        return [it.record for it in pool]
    stand_in: list[Box | None] = ([None] * len(pool) if config.steer == "guide"
                                  else _detector_boxes(det, pool, config, device))
    return [it.record if i in boxed else dataclasses.replace(it.record, box=stand_in[i]) for i, it in enumerate(pool)]


# --- evaluation and scoring ---------------------------------------------------------------------

def _evaluate(det: torch.nn.Module, cls: torch.nn.Module, test: list[_Item], config: SimulateConfig,
              device: torch.device) -> dict[str, Any]:
    """Chest-box mAP against the oracle; classification and off_chest_auc of the classifier on the test part."""
    records = [it.record for it in test]
    loader = torch.utils.data.DataLoader(DetectionDataset(records, config.det_size), batch_size=config.batch_size,
                                         collate_fn=collate_detection)
    preds = engine.predict_detections(det, loader, device)
    sizes = [(it.width, it.height) for it in test]
    _, _, _, top, scaled = top_detections(preds, sizes, config.det_size)
    out: dict[str, Any] = dict(detection_map(scaled, [{"boxes": [r.box]} for r in records]))
    if config.steer != "guide":  # a chest input mode sees the detector's box, as it would in use
        records = [dataclasses.replace(r, box=tuple(b) if b is not None else None) for r, b in zip(records, top, strict=True)]
    probs: dict[str, Any] = {}
    for view in ("full", "chest_only", "chest_removed"):
        data = ClassificationDataset(records, config.cls_size, inputs=_inputs(config), view=view, fill=EVAL_FILL)
        probs[view] = engine.predict_probs(cls, torch.utils.data.DataLoader(data, batch_size=config.batch_size), device)[:, 1]
    y = [r.label for r in records]
    m = classification_metrics(y, probs["full"], n_boot=0)
    out.update({k: m[k] for k in ("accuracy", "f1", "roc_auc")})
    out["off_chest_auc"] = reliance_metrics(y, probs, n_boot=0)["off_chest_auc"]
    return out


def _score(det: torch.nn.Module, cls: Ensemble, items: list[_Item], config: SimulateConfig,
           device: torch.device) -> dict[str, Any]:
    """Every `wb suggest` component for the items (the learner sees only its detector's boxes)."""
    stand_in = _detector_boxes(det, items, config, device) if config.steer != "guide" else [None] * len(items)
    pool = [PoolItem(it.record.path, box) for it, box in zip(items, stand_in, strict=True)]
    parts: dict[str, list[Any]] = {k: [] for k in ("top_scores", "class_scores", "boxes", "flip_boxes", "widths", "probs",
                                                   "member_probs", "off_lung", "reliance")}
    for out in score_pool_batches(det, config.det_size, cls, config.cls_size, pool, device,
                                  inputs=_inputs(config), fill=config.fill, batch_size=config.batch_size):
        d, c = out.detector, out.classifier
        sizes = np.array([(items[i].width, items[i].height) for i in out.indices], dtype=np.float64)
        for k, v in (("top_scores", d.top_score), ("class_scores", d.class_scores), ("boxes", d.top_box),
                     ("flip_boxes", d.flip_box), ("widths", sizes[:, 0]), ("probs", c.probs), ("off_lung", out.off_lung),
                     ("reliance", out.reliance)):
            parts[k].append(v)
        parts["member_probs"].append(c.member_probs)
    arrays = {k: np.concatenate(v, axis=1 if k == "member_probs" else 0) for k, v in parts.items()}
    return active.score_components(**arrays)


def _pick(strategy: str, comps: dict | None, items: list[_Item], k: int, seed: int) -> list[int]:
    weights = SIMULATE_STRATEGIES[strategy]
    if weights is None or comps is None:
        rng = np.random.default_rng(seed)
        return [int(i) for i in rng.choice(len(items), min(k, len(items)), replace=False)]
    scores = active.combine_scores(comps, weights)
    rules = SelectionRules(k=k, seed=seed)
    chosen = select_batch(scores, rules, patient_keys=[it.patient_key for it in items], sha256s=[it.sha256 for it in items],
                          phashes=[it.phash for it in items]).order
    if len(chosen) < k:  # the per-patient cap ran the pool dry: fill by score
        taken = set(chosen)
        rest = [int(i) for i in np.argsort(-np.nan_to_num(scores, nan=-1.0), kind="stable") if int(i) not in taken]
        chosen += rest[: k - len(chosen)]
    return chosen


# --- results ------------------------------------------------------------------------------------

def _write_table(result: SimulateResult, pool_size: int, path: Path) -> None:
    lines = rounds_table(result.table, METRICS)
    lines += ["", f"Full budget ({pool_size} boxes, first seed): " + ", ".join(
        f"{m} {'n/a' if v is None else f'{v:.3f}'}" for m, v in result.full.items())]

    def share(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines += strategy_table("Share of the pool boxed when the mean first reaches 95% of the full-budget metric "
                            "(- = not reached):", result.savings, HIGHER_IS_BETTER, share)
    if result.match_random:
        lines += strategy_table("Share of random's boxes at which the mean first matches random's final round "
                                "(1.00 = no saving, - = never):", result.match_random, HIGHER_IS_BETTER, share)
    if result.vs_random:
        lines += strategy_table("Gain over random, paired by seed: mean over rounds 1.. of (strategy - random), "
                                "mean ± std over seeds (seeds where it is > 0; for off_chest_auc lower is better):",
                                result.vs_random, METRICS,
                                lambda g: "n/a" if g is None else f"{g['mean']:+.3f} ± {g['std']:.3f} ({g['wins']}/{g['seeds']})")
    path.write_text("\n".join(lines) + "\n")


def simulate(ws: Workspace, config: SimulateConfig, *, out: Path | None = None, progress: bool = True) -> SimulateResult:
    """Run (or finish) the benchmark; write results.json, table.md and learning_curves.png to `out`."""
    validate_simulate_config(config)
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
    # The full-budget reference is one training (first seed): the most expensive one, and a fixed target.
    full_todo = [config.seeds[0]] if config.full_reference and not full_rows else []
    bar = progress_bar(total=len(arms) * (config.rounds + 1) + len(full_todo), desc="simulate", unit="round",
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
            cls0 = _train_classifier(_classifier_records(pool, set(start), det0, config, device), config, seed, device)
            m0 = _evaluate(det0, cls0, test, config, device)
            m0["seconds"] = round(time.perf_counter() - t_round, 1)
            comps0: dict | None = None
            for strategy in todo:
                rows[:] = [r for r in rows if not (r["seed"] == seed and r["strategy"] == strategy)]
                boxed = list(start)
                rows.append({"seed": seed, "strategy": strategy, "round": 0, "boxes": len(boxed), "class_labels": len(pool),
                             "picked": [pool[i].record.image_id for i in start], **m0})
                bar.update()
                det, cls = det0, cls0
                for rnd in range(1, config.rounds + 1):
                    t_round = time.perf_counter()
                    taken = set(boxed)
                    rest = [i for i in range(len(pool)) if i not in taken]
                    if not rest:
                        break
                    comps = None
                    if SIMULATE_STRATEGIES[strategy] is not None:
                        if rnd == 1 and comps0 is not None:
                            comps = comps0
                        else:
                            comps = _score(det, cls, [pool[i] for i in rest], config, device)
                            if rnd == 1:
                                comps0 = comps
                    picked = [rest[i] for i in _pick(strategy, comps, [pool[i] for i in rest], config.batch, seed * 1000 + rnd)]
                    boxed += picked
                    det = _train_detector([pool[i].record for i in boxed], config, seed, device,
                                          start=det if config.warm_start else None)
                    cls = _train_classifier(_classifier_records(pool, set(boxed), det, config, device), config, seed, device,
                                            start=cls if config.warm_start else None)
                    rows.append({"seed": seed, "strategy": strategy, "round": rnd, "boxes": len(boxed),
                                 "class_labels": len(pool), "picked": [pool[i].record.image_id for i in picked],
                                 **_evaluate(det, cls, test, config, device),
                                 "seconds": round(time.perf_counter() - t_round, 1)})
                    bar.update()
                save()
        for seed in full_todo:
            t_round = time.perf_counter()
            det = _train_detector([it.record for it in pool], config, seed, device, full=True)
            cls = _train_classifier(_classifier_records(pool, set(range(len(pool))), det, config, device, full=True),
                                    config, seed, device, full=True)
            full_rows.append({"seed": seed, "boxes": len(pool), **_evaluate(det, cls, test, config, device),
                              "seconds": round(time.perf_counter() - t_round, 1)})
            save()
            bar.update()
    finally:
        bar.close()
    table = simulation.summarise(rows, config.strategies, METRICS)
    full = simulation.reference(full_rows, METRICS)
    with_random = "random" in config.strategies
    result = SimulateResult(
        folder=str(folder), rows=rows, table=table, full=full,
        savings=simulation.savings(table, full, len(pool), config.strategies, HIGHER_IS_BETTER),
        vs_random=simulation.versus_random(rows, config.strategies, METRICS) if with_random else {},
        match_random=simulation.match_random(table, config.strategies, HIGHER_IS_BETTER) if with_random else {},
        seconds=round(time.perf_counter() - t0, 1))
    _write_table(result, len(pool), folder / "table.md")
    plot_learning_curves(table, full, METRICS, folder / "learning_curves.png")
    return result
