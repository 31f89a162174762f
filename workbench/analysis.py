"""`wb audit` and `wb eda`: the dataset's known traps, with numbers, and the seed study's figures.

Both read readable images only. Exact copies (Image.duplicate_of_id set) are left out of the
statistics and figures so a duplicated film does not count twice.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select, update

from db import Database
from db.models import DatasetRoot, Image, ImageStatus, Split, SplitMember
from pipelines import audit as A
from pipelines.imagecheck import DECODE_ERRORS
from pipelines.progress import progress_bar
from workbench.errors import InputError
from workbench.splitting import resolve_split

HASH_CHUNK = 256  # hashes per transaction: an interrupted audit keeps what it finished


@dataclass(frozen=True)
class AuditConfig:
    """Thresholds of `wb audit`."""

    near_duplicate_bits: int = 6  # of 121 phash bits; exact copies sit at 0, distinct films at 10+
    shortcut_warn_auc: float = 0.75  # metadata-only ROC-AUC above this earns a warning
    folds: int = 5
    seed: int = 0
    examples: int = 5


@dataclass(frozen=True)
class EdaConfig:
    """What `wb eda` draws."""

    per_class: int = 8  # images per class in the grids
    size: int = 299  # the seed study's input size (pixels, square)
    seed: int = 0


def _rows(session, *, first_copies: bool = False) -> list:
    query = (
        select(Image.id, Image.label, Image.width, Image.height, Image.mode, Image.patient_key,
               Image.sha256, Image.duplicate_of_id, Image.phash, Image.rel_path, DatasetRoot.path.label("root"))
        .join(DatasetRoot, Image.root_id == DatasetRoot.id)
        .where(Image.status == ImageStatus.OK)
        .order_by(Image.id)
    )
    if first_copies:
        query = query.where(Image.duplicate_of_id.is_(None))
    return session.execute(query).all()


def _require_images(rows: list) -> None:
    if not rows:
        raise InputError("No readable images in the workspace", "run `wb import PATH` first")


def compute_missing_phashes(db: Database, *, progress: bool = True) -> dict:
    """Store Image.phash for readable images that lack one (or hold one of another size).

    Returns {"computed": n, "failed": [{"path", "reason"}]}; a file that vanished since import
    is listed, not fatal.
    """
    with db.session() as s:
        todo = [r for r in _rows(s) if r.phash is None or len(r.phash) != A.PHASH_HEX_LEN]
    failed = []
    computed = 0
    bar = progress_bar(total=len(todo), desc="phash", unit="img", disable=None if progress else True)
    try:
        for start in range(0, len(todo), HASH_CHUNK):
            values = []
            for r in todo[start : start + HASH_CHUNK]:
                try:
                    values.append({"id": r.id, "phash": A.phash_hex(f"{r.root}/{r.rel_path}")})
                except DECODE_ERRORS as exc:
                    failed.append({"path": r.rel_path, "reason": str(exc)})
                bar.update(1)
            if values:
                with db.session() as s:
                    s.execute(update(Image), values)
                computed += len(values)
    finally:
        bar.close()
    return {"computed": computed, "failed": failed}


def _exact_duplicates(rows: list, examples: int) -> dict:
    by_id = {r.id: r for r in rows}
    copies = [r for r in rows if r.duplicate_of_id is not None]
    cross_label = [r for r in copies if r.duplicate_of_id in by_id and by_id[r.duplicate_of_id].label != r.label]
    return {
        "copies": len(copies),
        "groups": len({r.duplicate_of_id for r in copies}),
        "cross_label": len(cross_label),
        "examples": [
            {"copy": r.rel_path, "of": by_id[r.duplicate_of_id].rel_path}
            for r in copies[:examples] if r.duplicate_of_id in by_id
        ],
    }


def _near_duplicates(rows: list, config: AuditConfig) -> tuple[dict, list[list[int]]]:
    """Summary, and the groups (image ids) that hold two or more different files."""
    hashed = [r for r in rows if r.phash is not None and len(r.phash) == A.PHASH_HEX_LEN]
    groups = A.near_duplicate_groups([r.phash for r in hashed], config.near_duplicate_bits)
    id_groups = [[hashed[i].id for i in g] for g in groups]
    by_id = {r.id: r for r in hashed}
    # A group whose members all share one sha256 is just exact copies, already reported above.
    near_only = [g for g in id_groups if len({by_id[i].sha256 for i in g}) > 1]
    info = {
        "threshold_bits": config.near_duplicate_bits,
        "hash_bits": A.PHASH_SIZE * A.PHASH_SIZE,
        "hashed": len(hashed),
        "groups": len(id_groups),
        "images_in_groups": sum(len(g) for g in id_groups),
        "groups_beyond_exact": len(near_only),
        "cross_label_groups": sum(len({by_id[i].label for i in g}) > 1 for g in id_groups),
        "examples": [[by_id[i].rel_path for i in g] for g in (near_only or id_groups)[: config.examples]],
    }
    return info, near_only


def _split_report(session, split: Split, rows_by_id: dict, near_groups: list[list[int]], examples: int) -> dict:
    parts = dict(session.execute(select(SplitMember.image_id, SplitMember.part).where(SplitMember.split_id == split.id)).all())
    members = [i for i in parts if i in rows_by_id]
    overlap = A.patient_overlap([rows_by_id[i].patient_key for i in members], [parts[i] for i in members], examples=examples)
    exact: dict[str, list[int]] = defaultdict(list)
    for i in members:
        exact[rows_by_id[i].sha256].append(i)
    exact_groups = [g for g in exact.values() if len(g) > 1]
    return {
        "name": split.name,
        "strategy": split.strategy,
        "images": len(members),
        **overlap,
        "exact_duplicate_groups_across_parts": len(A.groups_across_parts(exact_groups, _lookup(parts, exact_groups))),
        "near_duplicate_groups_across_parts": len(A.groups_across_parts(near_groups, _lookup(parts, near_groups))),
    }


def _lookup(parts: dict[int, str], groups: list[list[int]]) -> dict[int, str | None]:
    """groups_across_parts indexes parts by image id: hand it a dict restricted to those ids."""
    return {i: parts.get(i) for g in groups for i in g}


def audit_dataset(db: Database, split_name: str | None = None, *, config: AuditConfig = AuditConfig(),
                  progress: bool = True) -> dict:
    """Report exact and near duplicates, patients shared between split parts, and the metadata shortcut.

    split_name None audits every split; a name audits that one only. Computes missing phashes
    first (stored, so the next audit is quick). Returns one JSON-ready dict with a "warnings" list.
    """
    with db.session() as s:
        _require_images(_rows(s))
        splits = [resolve_split(s, split_name)] if split_name else list(s.scalars(select(Split).order_by(Split.id)))
    hashing = compute_missing_phashes(db, progress=progress)
    with db.session() as s:
        rows = _rows(s)
        rows_by_id = {r.id: r for r in rows}
        exact = _exact_duplicates(rows, config.examples)
        near, near_groups = _near_duplicates(rows, config)
        split_reports = [_split_report(s, sp, rows_by_id, near_groups, config.examples) for sp in splits]
    firsts = [r for r in rows if r.duplicate_of_id is None]
    shortcut = A.metadata_shortcut(
        [r.width for r in firsts], [r.height for r in firsts], [r.mode for r in firsts], [r.label for r in firsts],
        groups=[r.patient_key for r in firsts], folds=config.folds, seed=config.seed,
    )
    shortcut["warn_above"] = config.shortcut_warn_auc
    warnings = _warnings(exact, near, split_reports, shortcut, hashing, config)
    return {
        "images": len(rows),
        "labels": dict(sorted(Counter(r.label for r in rows).items())),
        "config": asdict(config),
        "phash": {"computed_now": hashing["computed"], "failed": hashing["failed"][: config.examples],
                  "failed_total": len(hashing["failed"])},
        "exact_duplicates": exact,
        "near_duplicates": near,
        "splits": split_reports,
        "shortcut": shortcut,
        "warnings": warnings,
    }


def _warnings(exact, near, split_reports, shortcut, hashing, config: AuditConfig) -> list[str]:
    out = []
    auc = shortcut.get("auc")
    if auc is not None and auc > config.shortcut_warn_auc:
        pc = shortcut["per_class"]
        sizes = ", ".join(f"{k} median {v['median_width']:.0f}x{v['median_height']:.0f}" for k, v in pc.items())
        out.append(
            f"metadata shortcut: width/height/mode alone predict the label with ROC-AUC {auc:.2f} "
            f"(> {config.shortcut_warn_auc}); {sizes}. A model can learn image size instead of the lungs: "
            "resize to a fixed size and check Grad-CAM."
        )
    if exact["cross_label"]:
        out.append(f"{exact['cross_label']} exact duplicate(s) carry a different label than their first copy")
    if near["groups_beyond_exact"]:
        out.append(f"{near['groups_beyond_exact']} near-duplicate group(s) of different files (phash within "
                   f"{config.near_duplicate_bits} bits)")
    for rep in split_reports:
        if rep["shared_patients"]:
            out.append(f"split {rep['name']!r}: {rep['shared_patients']} patient(s) ({rep['shared_images']} images) "
                       "appear in more than one part: test scores will be optimistic"
                       + (" (the dataset's own test folder shares patient numbers with train/val)"
                          if rep["strategy"] == "source" else ""))
        leaks = rep["exact_duplicate_groups_across_parts"] + rep["near_duplicate_groups_across_parts"]
        if leaks:
            out.append(f"split {rep['name']!r}: {leaks} duplicate group(s) span more than one part")
    if hashing["failed"]:
        out.append(f"{len(hashing['failed'])} image(s) could not be hashed (moved or changed since import?)")
    return out


def make_eda(db: Database, out_dir: Path, *, config: EdaConfig = EdaConfig(), progress: bool = True) -> dict:
    """Write the seed study's six figures and index.html into out_dir.

    Uses readable first copies. Mean and variance are accumulated one image at a time.
    Returns {"out_dir", "index", "figures": {name: path}, "slopes", "variance_peaks", ...}.
    """
    from pipelines import eda as E  # matplotlib: loaded only when figures are drawn

    out_dir = Path(out_dir)
    with db.session() as s:
        rows = _rows(s, first_copies=True)
    _require_images(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_label: dict[str, list] = defaultdict(list)
    for r in rows:
        by_label[r.label].append(r)
    labels = sorted(by_label)
    figures = {}

    figures["size_scatter"] = out_dir / "1_size_scatter.png"
    slopes = E.plot_size_scatter({k: ([r.width for r in v], [r.height for r in v]) for k, v in by_label.items()},
                                 figures["size_scatter"])

    rng = random.Random(config.seed)
    picks = {k: sorted(rng.sample(v, min(config.per_class, len(v))), key=lambda r: r.id) for k, v in sorted(by_label.items())}
    square = (config.size, config.size)
    raw = {k: [E.load_grey(f"{r.root}/{r.rel_path}") for r in v] for k, v in picks.items()}
    caps = {k: [f"{Path(r.rel_path).stem[:24]}\n{r.width}x{r.height}" for r in v] for k, v in picks.items()}
    figures["raw_grid"] = out_dir / "2_raw_grid.png"
    E.plot_image_grid(raw, caps, figures["raw_grid"], same_scale=True,
                      title=f"{config.per_class} random images per class, as stored (one pixel scale)")
    resized = {k: [E.load_grey(f"{r.root}/{r.rel_path}", square) for r in v] for k, v in picks.items()}
    figures["resized_grid"] = out_dir / "3_resized_grid.png"
    E.plot_image_grid(resized, caps, figures["resized_grid"],
                      f"The same images resized to {config.size}x{config.size} (aspect ratio lost)")

    moments = {k: E.RunningMoments((config.size, config.size)) for k in labels}
    unreadable = []
    for r in progress_bar(rows, desc="mean/variance", unit="img", disable=None if progress else True):
        try:
            moments[r.label].add(E.load_grey(f"{r.root}/{r.rel_path}", square))
        except DECODE_ERRORS as exc:
            unreadable.append({"path": r.rel_path, "reason": str(exc)})
    counts = {k: m.n for k, m in moments.items()}
    figures["mean_images"] = out_dir / "4_mean_images.png"
    E.plot_mean_images({k: m.mean for k, m in moments.items()}, counts, figures["mean_images"])
    difference = None
    if {"NORMAL", "PNEUMONIA"} <= set(labels):
        figures["mean_difference"] = out_dir / "5_mean_difference.png"
        difference = E.plot_difference(moments["PNEUMONIA"].mean, moments["NORMAL"].mean, "PNEUMONIA", "NORMAL",
                                       figures["mean_difference"])
    figures["variance"] = out_dir / "6_variance.png"
    peaks = E.plot_variance({k: m.variance for k, m in moments.items()}, figures["variance"])

    index = out_dir / "index.html"
    E.write_index(index, "wb eda: Kermany chest X-rays", _index_sections(figures, slopes, difference, peaks, counts, config))
    return {
        "out_dir": str(out_dir),
        "index": str(index),
        "figures": {k: str(v) for k, v in figures.items()},
        "images": len(rows),
        "per_class": counts,
        "slopes": slopes,
        "mean_difference": difference,
        "variance_peaks": peaks,
        "samples": {k: [r.rel_path for r in v] for k, v in picks.items()},
        "unreadable": unreadable,
        "config": asdict(config),
    }


def _index_sections(figures, slopes, difference, peaks, counts, config: EdaConfig) -> list[tuple[str, str, str]]:
    slope_text = "; ".join(f"{k}: slope {v['slope']} (n={v['n']})" for k, v in slopes.items())
    peak_text = "; ".join(f"{k}: max {v['max']} at x={v['col']}, y={v['row']}" for k, v in peaks.items())
    n_text = ", ".join(f"{k} {v}" for k, v in counts.items())
    s = config.size
    sections = [
        ("1. Width vs height", "size_scatter",
         f"Least-squares height = slope x width + b per class. {slope_text}. The seed study reports ~0.86 "
         "(pneumonia) and ~0.99 (normal) on the full set."),
        ("2. Raw images", "raw_grid", f"{config.per_class} images per class drawn with seed {config.seed}, as stored."),
        ("3. Resized", "resized_grid", f"The same images at {s}x{s}, as the seed study fed them."),
        ("4. Mean image per class", "mean_images", f"Greyscale, {s}x{s}, over {n_text} images (exact copies left out)."),
        ("5. Difference of means", "mean_difference",
         f"mean PNEUMONIA - mean NORMAL in grey levels: min {difference['min']}, max {difference['max']}, "
         f"mean |difference| {difference['mean_abs']}; red is brighter in PNEUMONIA." if difference else ""),
        ("6. Per-pixel variance", "variance",
         f"Population variance per pixel; the ring marks the maximum (often on the border). {peak_text}."),
    ]
    return [(h, figures[key].name, caption) for h, key, caption in sections if key in figures]
