"""wb's settings as frozen dataclasses: their defaults, validation and JSON form, in one place.

Each use case takes one of these and stores it on its run (or split) as JSON; the CLI's options
default to None and `make_config`-style helpers fill in the dataclass defaults, so a default is
written once, here. No torch, SQLAlchemy or Label Studio imports: `wb --help` reads this module.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from pipelines import active
from pipelines.presets import UnknownPreset, get_preset
from pipelines.registry import (
    AUGMENTATIONS,
    BACKBONES,
    DETECTOR_BACKBONES,
    FILLS,
    GUIDES,
    HEADS,
    INPUT_MODES,
    MARKER_PLACES,
    MARKER_SHAPES,
    get_spec,
)
from workbench.errors import InputError

PARTS = ("train", "val", "test")
DEVICES = ("auto", "cpu", "cuda", "mps")  # auto: CUDA, then MPS, then CPU
DEFAULT_DEVICE = "auto"
CHECKPOINTS = ("best", "last")  # best: lowest validation loss; last: the newest epoch
DEFAULT_CHECKPOINT = "best"

C = TypeVar("C")


def fill(cls: type[C], **options: Any) -> C:
    """`cls` from the options that were given (not None); the others keep the dataclass defaults.

    The CLI's options default to None and go through here, so each default is written once.
    """
    return cls(**{k: v for k, v in options.items() if v is not None})


def shown_default(cls: type, name: str) -> str | None:
    """A field's default as `--help` shows it, or None when it has none worth showing."""
    value = {f.name: f.default for f in dataclasses.fields(cls)}[name]
    if value is None or value is dataclasses.MISSING:
        return None
    if isinstance(value, tuple):
        return ",".join(f"{v[0]}={v[1]:g}" if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


def _check(ok: bool, message: str, hint: str | None = None) -> None:
    if not ok:
        raise InputError(message, hint)


def _check_device(device: str) -> None:
    _check(device in DEVICES, f"Unknown device {device!r}", f"choose one of {', '.join(DEVICES)}")


def _check_checkpoint(checkpoint: str) -> None:
    _check(checkpoint in CHECKPOINTS, f"Unknown checkpoint {checkpoint!r}", " or ".join(CHECKPOINTS))


# --- split ------------------------------------------------------------------------------------

STRATEGIES = ("grouped", "random", "source")


@dataclass(frozen=True)
class SplitConfig:
    """How to split. Stored as the split's params."""

    strategy: str = "grouped"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 42
    batch_per_class: int = 200  # first annotation batch: this many NORMAL + this many PNEUMONIA


# --- training ---------------------------------------------------------------------------------

OPTIMIZERS = ("sgd", "adam")
DEFAULT_LR = {"sgd": 0.005, "adam": 1e-4}  # when `lr` is None


@dataclass(frozen=True)
class TrainConfig:
    """Settings both trainers share. Stored as the run's config JSON."""

    split: str | None = None  # split name; None = the newest split
    epochs: int = 10
    image_size: int = 512  # pixels; images are squashed to image_size x image_size
    batch_size: int = 4
    optimizer: str = "sgd"  # sgd (momentum 0.9, weight decay 1e-4) | adam
    lr: float | None = None  # None: DEFAULT_LR of the optimizer
    lr_schedule: str = "constant"  # constant | cosine (to 0 over `epochs`)
    augment: str = "none"  # none | affine (rotate 20, translate 0.15/0.2) | rotate (30)
    weights: str = "imagenet"  # imagenet | none | PATH to a torchvision state_dict
    allow_fallback: bool = False  # random init when ImageNet weights cannot be had
    limit: int | None = None  # at most this many images per part (train and val)
    seed: int = 42
    device: str = DEFAULT_DEVICE
    workers: int = 0  # DataLoader worker processes
    preset: str | None = None

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def uses_boxes(self) -> bool:
        """Whether the model needs chest boxes to see its input (a classifier's chest input mode).
        Guidance uses boxes in training only: a guided model sees whole images (`trains_with_boxes`)."""
        return False

    def trains_with_boxes(self) -> bool:
        """Whether training the model needs chest boxes beside the labels (an input mode, guidance)."""
        return self.uses_boxes()

    def own_box_source(self) -> int | None:
        """The detector run whose boxes stand in for missing annotations, as the run was trained (None: annotations only)."""
        return None

    def check_own(self) -> None:
        """Checks of the settings only this kind has (`validate_train_config` runs them after the shared ones)."""


@dataclass(frozen=True)
class DetectorConfig(TrainConfig):
    backbone: str = "mobilenet_v2"  # a pipelines.registry.DETECTOR_BACKBONES name

    def check_own(self) -> None:
        _check(self.backbone in DETECTOR_BACKBONES, f"Unknown detector backbone {self.backbone!r}",
               f"choose one of {', '.join(DETECTOR_BACKBONES)}")


@dataclass(frozen=True)
class ClassifierConfig(TrainConfig):
    members: tuple[str, ...] = ("resnet18", "densenet121", "inception_v3")
    head: str = "fc2"  # fc1: members' probabilities -> 1 FC; fc2: 128-d projections summed -> 64 -> 2
    freeze: float = 0.0  # fraction of each member's leading parameters kept frozen
    balance: bool = False  # weight the loss by inverse class frequency of the train part
    # How chest boxes steer the classifier (see README, "Shortcut reliance"):
    input_mode: str = "full"  # full | chest-crop | chest-mask: train and predict on the chest region only
    margin: float = 0.0  # chest-crop: extra border, a fraction of the box's width/height on each side
    boxes_from: int | None = None  # detector run whose boxes stand in where an image has no annotated box
    guide: str = "none"  # none | boxes: penalise input gradients outside the annotated chest box (Ross et al. 2017)
    guide_weight: float = 10.0  # the penalty's weight (lambda) with --guide boxes (about CE at the start, 224 px, ImageNet)
    epochs: int = 30
    image_size: int = 299
    batch_size: int = 16
    optimizer: str = "adam"

    def uses_boxes(self) -> bool:
        return self.input_mode != "full"

    def trains_with_boxes(self) -> bool:
        return self.uses_boxes() or self.guide != "none"

    def own_box_source(self) -> int | None:
        return self.boxes_from

    def check_own(self) -> None:
        _check(len(self.members) >= 1, "The ensemble needs at least one member", f"choose from {', '.join(BACKBONES)}")
        for name in self.members:
            _check(name in BACKBONES, f"Unknown backbone {name!r}", f"choose from {', '.join(BACKBONES)}")
            _check(self.image_size >= get_spec(name).min_size, f"{name} needs --image-size >= {get_spec(name).min_size}")
        _check(self.head in HEADS, f"Unknown head {self.head!r}", f"choose one of {', '.join(HEADS)}")
        _check(0.0 <= self.freeze < 1.0, "--freeze must be in [0, 1)")
        _check(self.input_mode in INPUT_MODES, f"Unknown --input {self.input_mode!r}",
               f"choose one of {', '.join(INPUT_MODES)}")
        _check(self.guide in GUIDES, f"Unknown --guide {self.guide!r}", f"choose one of {', '.join(GUIDES)}")
        _check(0.0 <= self.margin <= 1.0, "--margin must be in [0, 1] (a fraction of the box size)")
        _check(math.isfinite(self.guide_weight) and self.guide_weight >= 0, "--guide-weight must be >= 0")
        _check(not (self.guide != "none" and self.input_mode != "full"),
               "--guide trains on full images; it cannot be combined with --input " + self.input_mode,
               "use one: --input chest-crop|chest-mask, or --guide boxes")


# The trained kinds and their settings: the CLI, `wb status` and configs read this without torch;
# what else differs between the kinds (model, data, loss, predictions, CAMs) is workbench.kinds.
TRAIN_CONFIGS: dict[str, type[TrainConfig]] = {"detector": DetectorConfig, "classifier": ClassifierConfig}


def train_config_class(kind: str) -> type[TrainConfig]:
    try:
        return TRAIN_CONFIGS[kind]
    except KeyError:
        raise InputError(f"Unknown model kind {kind!r}", f"choose one of {', '.join(TRAIN_CONFIGS)}") from None


@overload
def make_config(kind: Literal["detector"], preset: str | None = None, **overrides: Any) -> DetectorConfig: ...
@overload
def make_config(kind: Literal["classifier"], preset: str | None = None, **overrides: Any) -> ClassifierConfig: ...
@overload
def make_config(kind: str, preset: str | None = None, **overrides: Any) -> TrainConfig: ...
def make_config(kind: str, preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the preset, then every override that is not None; validated."""
    cls = train_config_class(kind)
    values: dict[str, Any] = {}
    if preset:
        try:
            values.update(get_preset(kind, preset))
        except UnknownPreset as exc:
            raise InputError(str(exc), "see `wb train --help`") from None
        values["preset"] = preset
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "members" in values:
        values["members"] = tuple(values["members"])
    try:
        config = cls(**values)
    except TypeError as exc:
        raise InputError(f"Bad {kind} setting: {exc}") from None
    validate_train_config(config)
    return config


def config_from_dict(kind: str, data: dict[str, Any]) -> TrainConfig:
    cls = train_config_class(kind)
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in names}
    if "members" in values:
        values["members"] = tuple(values["members"])
    return cls(**values)


def validate_train_config(config: TrainConfig) -> None:
    _check(config.epochs >= 1, "--epochs must be at least 1")
    _check(config.batch_size >= 1, "--batch-size must be at least 1")
    _check(config.image_size >= 32, "--image-size must be at least 32 pixels")
    _check(config.limit is None or config.limit >= 1, "--limit must be at least 1")
    _check(config.optimizer in OPTIMIZERS, f"Unknown optimizer {config.optimizer!r}", f"choose one of {', '.join(OPTIMIZERS)}")
    _check(config.augment in AUGMENTATIONS, f"Unknown augmentation {config.augment!r}",
           f"choose one of {', '.join(AUGMENTATIONS)}")
    _check(config.lr_schedule in ("constant", "cosine"), f"Unknown --lr-schedule {config.lr_schedule!r}", "constant or cosine")
    _check_device(config.device)
    _check(config.lr is None or config.lr > 0, "--lr must be positive")
    config.check_own()


# --- suggest ----------------------------------------------------------------------------------

DEFAULT_WEIGHTS = (("uncertainty", 1.0), ("classifier", 1.0), ("off_lung", 1.0))


@dataclass(frozen=True)
class SuggestConfig:
    """What to rank and how to pick. Stored as the suggest run's config JSON."""

    detector_run: int
    classifier_run: int
    k: int = 20  # batch size
    split: str | None = None  # None = the newest split
    parts: tuple[str, ...] = ("train",)  # split parts the candidates come from
    weights: tuple[tuple[str, float], ...] = DEFAULT_WEIGHTS  # component -> weight on its normalised rank
    per_patient: int = 1  # at most this many images of one patient (0 = no cap)
    phash_distance: int = 4  # near-duplicate threshold in bits (-1 = off)
    balance: bool = False  # at most ceil(k / 2) per label, then fill by rank
    diversity: bool = False  # k-center greedy over the classifier's embeddings within the top 3k
    seed: int = 0
    include_annotated: bool = False  # also rank annotated, batched and pushed images (an audit of the parts)
    limit: int | None = None  # score at most this many candidates (drawn with `seed`)
    batch_size: int = 8
    device: str = DEFAULT_DEVICE
    checkpoint: str = DEFAULT_CHECKPOINT
    fill: str = "blur"  # what replaces the outside of the chest box for off_chest_reliance (pipelines.chest.FILLS)


def parse_weights(text: str | None) -> tuple[tuple[str, float], ...]:
    """'uncertainty=1,off_lung=2' -> (("uncertainty", 1.0), ("off_lung", 2.0)); names checked."""
    if not text:
        return DEFAULT_WEIGHTS
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = active.ALIASES.get(name.strip(), name.strip())
        try:
            weight = float(value) if sep else float("nan")
        except ValueError:
            weight = float("nan")
        if not math.isfinite(weight) or weight < 0:
            raise InputError(f"Bad weight {part!r}", "give name=number pairs, e.g. --weights uncertainty=1,off_lung=1")
        if name not in active.COMPONENTS:
            raise InputError(f"Unknown score component {name!r}", f"choose from {', '.join(active.COMPONENTS)}")
        out[name] = weight
    if sum(out.values()) <= 0:
        raise InputError("At least one weight must be positive", "e.g. --weights off_lung=1")
    return tuple(out.items())


def validate_suggest_config(config: SuggestConfig) -> None:
    if config.k < 1:
        raise InputError("-k must be at least 1")
    bad = [p for p in config.parts if p not in PARTS]
    if bad or not config.parts:
        raise InputError(f"Unknown split part {bad[0] if bad else '(none)'!r}", "choose from train, val, test")
    if config.per_patient < 0:
        raise InputError("--per-patient must be >= 0 (0 = no cap)")
    if config.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    if config.limit is not None and config.limit < 1:
        raise InputError("--limit must be at least 1")
    _check_checkpoint(config.checkpoint)
    _check_device(config.device)
    _check(config.fill in FILLS, f"Unknown --fill {config.fill!r}", f"choose one of {', '.join(FILLS)}")
    parse_weights(",".join(f"{k}={v}" for k, v in config.weights))


# --- evaluation and CAMs ------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalConfig:
    """How `wb eval` scores a trained run. Stored with the metrics (`checkpoint`)."""

    part: str = "test"  # split part to score
    checkpoint: str = DEFAULT_CHECKPOINT
    bootstrap: int = 1000  # resamples for the 95% intervals
    batch_size: int = 8
    device: str = DEFAULT_DEVICE
    reliance: bool = True  # also score the part's boxed images chest-only and chest-removed
    fill: str = "grey"  # what fills the removed region for reliance (pipelines.chest.FILLS)
    boxes_from: int | None = None  # detector run giving boxes where there is no annotation (runs that use no boxes)


@dataclass(frozen=True)
class CamConfig:
    """Which weights `wb cam` and `wb suggest show` explain, and where they run."""

    checkpoint: str = DEFAULT_CHECKPOINT
    device: str = DEFAULT_DEVICE


def validate_eval_config(config: EvalConfig) -> None:
    _check(config.part in PARTS, f"Unknown part {config.part!r}", f"choose one of {', '.join(PARTS)}")
    _check(config.fill in FILLS, f"Unknown --fill {config.fill!r}", f"choose one of {', '.join(FILLS)}")
    _check_checkpoint(config.checkpoint)
    _check_device(config.device)
    _check(config.bootstrap >= 0, "--bootstrap must be >= 0")
    _check(config.batch_size >= 1, "--batch-size must be at least 1")


def validate_cam_config(config: CamConfig) -> None:
    _check_checkpoint(config.checkpoint)
    _check_device(config.device)


# --- planted shortcut (wb stress plant) ---------------------------------------------------------

@dataclass(frozen=True)
class PlantConfig:
    """What `wb stress plant` plants. Written beside the copy (stress_config.json)."""

    split: str | None = None  # whose parts decide train/val (correlated) and test (reversed); None = newest
    shape: str = "mixed"  # square | disc | ring | cross | letter | mixed (one drawn per image)
    size: float = 0.06  # marker side, a fraction of the image's shorter side
    place: str = "anywhere"  # anywhere outside the box | corners | margin (centre of the widest margin)
    rate_positive: float = 0.9  # share of PNEUMONIA images marked in train/val (of NORMAL images in test)
    rate_negative: float = 0.1  # share of NORMAL images marked in train/val (of PNEUMONIA images in test)
    intensity: int = 255  # grey level of the marker
    seed: int = 0
    boxes_from: int | None = None  # detector run for images without an annotated chest box


def validate_plant_config(config: PlantConfig) -> None:
    _check(config.shape in (*MARKER_SHAPES, "mixed"), f"Unknown --shape {config.shape!r}",
           f"choose one of {', '.join(MARKER_SHAPES)}, mixed")
    _check(config.place in MARKER_PLACES, f"Unknown --place {config.place!r}", f"choose one of {', '.join(MARKER_PLACES)}")
    _check(0.0 < config.size <= 0.5, "--size must be in (0, 0.5] (a fraction of the shorter side)")
    _check(0 <= config.intensity <= 255, "--intensity must be in [0, 255]")
    for name in ("rate_positive", "rate_negative"):
        _check(0.0 <= getattr(config, name) <= 1.0, f"--{name.replace('_', '-')} must be in [0, 1]")


# --- simulate -----------------------------------------------------------------------------------

SIMULATE_STRATEGIES: dict[str, dict[str, float] | None] = {  # strategy -> suggest weights (None: random)
    "random": None,
    "uncertainty": {"uncertainty": 1.0},
    "off_lung": {"off_lung": 1.0},
    "reliance": {"off_chest_reliance": 1.0},
    "combined": dict(DEFAULT_WEIGHTS),
}
STEERS = ("guide", "chest-crop", "chest-mask")  # how bought boxes reach the classifier in wb simulate


@dataclass(frozen=True)
class SimulateConfig:
    """One box-buying benchmark. Defaults: the small CPU configuration (reduced image sizes, subsets).

    Every pool image's class is known (as in Kermany); the budget is chest boxes. Each round the
    detector trains on the boxed images and the classifier on every pool image, steered by the
    boxes (`steer`).
    """

    split: str | None = None
    strategies: tuple[str, ...] = tuple(SIMULATE_STRATEGIES)
    seeds: tuple[int, ...] = (0, 1, 2)
    rounds: int = 3  # suggestion rounds after the seed set
    seed_size: int = 20  # boxes bought before round 1 (half per class)
    batch: int = 20  # boxes bought per round
    pool_limit: int | None = 300  # random subset of the boxed train part (None = all)
    test_limit: int | None = 300  # random subset of the boxed test part (None = all)
    det_backbone: str = "mobilenet_v2"
    det_size: int = 160
    members: tuple[str, ...] = ("mobilenet_v2",)
    head: str = "fc2"
    cls_size: int = 128
    # guide: input-gradient penalty outside bought boxes | chest-crop | chest-mask (the detector's boxes elsewhere)
    steer: str = "guide"
    guide_weight: float = 10.0
    epochs: int = 3
    min_steps: int = 120  # at least this many optimiser steps per training from ImageNet (small sets get more epochs)
    warm_start: bool = True  # rounds >= 1 fine-tune the previous round's models instead of starting afresh
    warm_steps: int = 40  # at least this many steps per warm-started training
    batch_size: int = 8
    det_lr: float = 0.005  # SGD, momentum 0.9
    cls_lr: float = 3e-4  # Adam
    weights: str = "imagenet"
    allow_fallback: bool = True
    full_reference: bool = True  # also train with every pool image boxed (the full budget)
    fill: str = "blur"  # the reliance component's fill (as `wb suggest --fill`)
    device: str = DEFAULT_DEVICE


def validate_simulate_config(config: SimulateConfig) -> None:
    unknown = [s for s in config.strategies if s not in SIMULATE_STRATEGIES]
    _check(not unknown and bool(config.strategies), f"Unknown strategy {unknown[0] if unknown else '(none)'!r}",
           f"choose from {', '.join(SIMULATE_STRATEGIES)}")
    for name in ("rounds", "seed_size", "batch", "epochs", "batch_size"):
        _check(getattr(config, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")
    for name in ("min_steps", "warm_steps"):
        _check(getattr(config, name) >= 0, f"--{name.replace('_', '-')} must be at least 0")
    _check(bool(config.seeds), "Give at least one seed")
    _check(config.steer in STEERS, f"Unknown --steer {config.steer!r}", f"choose one of {', '.join(STEERS)}")
    _check(config.fill in FILLS, f"Unknown --fill {config.fill!r}", f"choose one of {', '.join(FILLS)}")
    _check(config.guide_weight >= 0, "--guide-weight must be >= 0")
    _check_device(config.device)
