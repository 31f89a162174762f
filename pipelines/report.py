"""Report figures (matplotlib, Agg) and a report folder: index.md and index.html with PNGs.

Figures: loss and accuracy per epoch (the study's figures 9 and 10), confusion matrix, ROC,
detection overlays (figure 12) and CAM grids (figure 11).
"""
from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from numpy.typing import NDArray
from sklearn.metrics import roc_curve  # noqa: E402


def plot_curves(history: list[dict[str, Any]], path: Path) -> Path:
    """history[i]: {"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy"}."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for part in ("train", "val"):
            values = [h.get(f"{part}_{key}") for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], marker="o", label=part)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(f"{key} per epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(cm: Sequence[Sequence[int]], path: Path, labels: Sequence[str] = ("NORMAL", "PNEUMONIA")) -> Path:
    counts = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(counts, cmap="Blues")
    for (i, j), v in np.ndenumerate(counts):
        ax.text(j, i, str(v), ha="center", va="center", color="black")
    ax.set_xticks([0, 1], labels)
    ax.set_yticks([0, 1], labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_roc(y_true: NDArray[Any] | Sequence[int], y_score: NDArray[Any] | Sequence[float], path: Path,
             auc: float | None) -> Path:
    fig, ax = plt.subplots(figsize=(4, 4))
    if len(set(np.asarray(y_true).tolist())) == 2:
        fpr, tpr, _ = roc_curve(y_true, y_score)
        ax.plot(fpr, tpr, label=f"AUC {auc:.3f}" if auc is not None else None)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (pneumonia)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_image_grid(images: list[NDArray[Any]], titles: list[str], path: Path, *, boxes: list[list[Any]] | None = None,
                    cols: int = 4) -> Path:
    """Images uint8 [H, W, 3]; boxes[i]: list of (xyxy, colour, text) drawn on image i."""
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (img, title) in enumerate(zip(images, titles, strict=True)):
        ax = axes.ravel()[i]
        ax.imshow(img)
        ax.set_title(title, fontsize=8)
        for (x0, y0, x1, y1), colour, text in (boxes[i] if boxes else []):
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
            if text:
                ax.text(x0, y0, text, color=colour, fontsize=7, va="bottom")
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")  # multi-line titles are not clipped
    plt.close(fig)
    return path


def _fmt(metrics: dict[str, Any], key: str) -> str:
    value = metrics.get(key)
    if value is None:
        return "n/a"
    ci = (metrics.get("ci") or {}).get(key)
    return f"{value:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def write_report(folder: Path, title: str, metrics: dict[str, Any], figures: dict[str, str], *,
                 config: dict[str, Any] | None = None,
                 tables: dict[str, tuple[list[str], list[list[str]]]] | None = None) -> Path:
    """Write index.md and index.html in `folder` (figures: caption -> PNG file name there;
    tables: caption -> (header, rows of cells), shown after the metrics)."""
    keys = [k for k in ("accuracy", "f1", "precision", "recall", "specificity", "roc_auc", "map50", "map50_95", "mean_iou")
            if k in metrics]
    md = [f"# {title}", "", "| metric | value (95% bootstrap CI) |", "|---|---|"]
    md += [f"| {k} | {_fmt(metrics, k)} |" for k in keys]
    if "confusion_matrix" in metrics:
        md += ["", f"Confusion matrix [[tn, fp], [fn, tp]] (pneumonia positive): `{metrics['confusion_matrix']}`"]
    for caption, (header, table_rows) in (tables or {}).items():
        md += ["", f"## {caption}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in table_rows]
    for caption, name in figures.items():
        md += ["", f"## {caption}", "", f"![{caption}]({name})"]
    if config:
        md += ["", "## Configuration", "", "```json", json.dumps(config, indent=2), "```"]
    (folder / "index.md").write_text("\n".join(md) + "\n")
    rows = "".join(f"<tr><td>{k}</td><td>{html.escape(_fmt(metrics, k))}</td></tr>" for k in keys)
    extra = "".join(
        f"<h2>{html.escape(c)}</h2><table border='1'><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in table_rows) + "</table>"
        for c, (header, table_rows) in (tables or {}).items())
    figs = "".join(f"<h2>{html.escape(c)}</h2><img src='{html.escape(n)}' alt='{html.escape(c)}'>" for c, n in figures.items())
    cm = (f"<p>Confusion matrix [[tn, fp], [fn, tp]]: {metrics.get('confusion_matrix')}</p>"
          if "confusion_matrix" in metrics else "")
    cfg = f"<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=2))}</pre>" if config else ""
    (folder / "index.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><table border='1'><tr><th>metric</th><th>value (95% CI)</th></tr>{rows}</table>"
        f"{cm}{extra}{figs}{cfg}</body></html>\n"
    )
    return folder / "index.html"


METRIC_TITLES = {"map50": "chest box mAP@0.5", "map50_95": "chest box mAP@[.5:.95]", "accuracy": "accuracy",
                 "f1": "F1 (pneumonia positive)", "roc_auc": "ROC-AUC", "off_chest_auc": "off_chest_auc (0.5 = none)"}


def plot_learning_curves(table: Sequence[dict[str, Any]], full: dict[str, float | None], metrics: Sequence[str],
                         path: Path, *, budget: str = "boxes", budget_label: str = "chest boxes bought") -> Path:
    """One panel per metric: mean ± std over seeds per strategy against the budget; the full-budget reference dashed."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        for strategy in dict.fromkeys(e["strategy"] for e in table):
            pts = [e for e in table if e["strategy"] == strategy and e[m] is not None]
            x = np.array([e[budget] for e in pts])
            y = np.array([e[m] for e in pts])
            s = np.array([e[f"{m}_std"] for e in pts])
            ax.plot(x, y, marker="o", label=strategy)
            ax.fill_between(x, y - s, y + s, alpha=0.15)
        if full.get(m) is not None:
            ax.axhline(full[m], color="grey", linestyle="--", label="full budget")
        ax.set_xlabel(budget_label)
        ax.set_title(METRIC_TITLES.get(m, m))
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def strategy_table(title: str, per_strategy: dict[str, dict[str, Any]], metrics: Sequence[str],
                   cell: Any) -> list[str]:
    """Markdown lines: `title`, then one row per strategy with `cell(value)` per metric."""
    lines = ["", title, "", "| strategy | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for strategy, per in per_strategy.items():
        lines.append(f"| {strategy} | " + " | ".join(cell(per.get(m)) for m in metrics) + " |")
    return lines


def rounds_table(table: Sequence[dict[str, Any]], metrics: Sequence[str], *, budget: str = "boxes") -> list[str]:
    """Markdown lines: one row per (strategy, round) with mean ± std of each metric."""
    lines = [f"| strategy | round | {budget} | " + " | ".join(metrics) + " |", "|---|---|---|" + "---|" * len(metrics)]
    for e in table:
        cells = ["n/a" if e[m] is None else f"{e[m]:.3f} ± {e[f'{m}_std']:.3f}" for m in metrics]
        lines.append(f"| {e['strategy']} | {e['round']} | {e[budget]} | " + " | ".join(cells) + " |")
    return lines
