"""Analysis commands: audit (dataset traps, with numbers) and eda (the seed study's figures)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli import app
from workbench.cli.common import JsonOption, SplitOption, print_json, workspace


@app.command()
def audit(ctx: typer.Context, split: SplitOption = None, json_: JsonOption = False) -> None:
    """Report the dataset's traps: exact and near duplicates, patients shared between split parts,
    and how well image size and mode alone predict the label (the resolution shortcut).

    Perceptual hashes are computed once and stored. Without --split every split is checked.

    Example: wb audit --split grouped --json
    """
    from workbench.analysis import audit_dataset  # numpy, sklearn: only when a command runs

    report = audit_dataset(workspace(ctx).db, split)
    if json_:
        print_json(report)
        return
    _print_audit(report)


def _print_audit(r: dict) -> None:
    labels = ", ".join(f"{k} {v}" for k, v in r["labels"].items())
    typer.echo(f"Audit of {r['images']} readable images ({labels})")
    ex = r["exact_duplicates"]
    typer.echo(f"Exact duplicates: {ex['copies']} file(s) equal to an earlier file ({ex['groups']} group(s)); "
               f"{ex['cross_label']} with another label")
    for e in ex["examples"]:
        typer.echo(f"  {e['copy']} = {e['of']}")
    nd = r["near_duplicates"]
    typer.echo(
        f"Near duplicates (phash, {nd['hash_bits']} bits, within {nd['threshold_bits']}): {nd['groups']} group(s), "
        f"{nd['images_in_groups']} images; {nd['groups_beyond_exact']} not explained by exact copies; "
        f"{nd['cross_label_groups']} mixing labels"
    )
    if r["phash"]["computed_now"]:
        typer.echo(f"  (hashed {r['phash']['computed_now']} image(s) now; stored for next time)")
    for sp in r["splits"]:
        pairs = ", ".join(f"{k} {v}" for k, v in sp["by_pair"].items())
        typer.echo(
            f"Split {sp['name']} ({sp['strategy']}): {sp['shared_patients']} of {sp['patients']} patients in more than "
            f"one part ({sp['shared_images']} images; {pairs}); duplicate groups across parts: exact "
            f"{sp['exact_duplicate_groups_across_parts']}, near {sp['near_duplicate_groups_across_parts']}"
        )
        if sp["examples"]:
            typer.echo(f"  e.g. {', '.join(sp['examples'])}")
    if not r["splits"]:
        typer.echo("Splits: none yet (run `wb split` to check patient overlap)")
    sc = r["shortcut"]
    if sc["auc"] is None:
        typer.echo(f"Metadata shortcut: not computed ({sc.get('skipped')})")
    else:
        typer.echo(f"Metadata shortcut: width+height+mode -> label, ROC-AUC {sc['auc']:.3f} +- {sc['auc_std']:.3f} "
                   f"({sc['folds']}-fold, patient-grouped; 0.5 = no shortcut)")
        for name, f in sc["features"].items():
            typer.echo(f"  {name:<6} alone: AUC {f['auc_alone']:.3f}, higher in {f['higher_in']}")
    for label, c in sc["per_class"].items():
        typer.echo(f"  {label:<10} n {c['n']:>5}  median {c['median_width']:.0f}x{c['median_height']:.0f} px  "
                   f"aspect h/w {c['median_aspect']:.2f}  RGB {100 * c['rgb_fraction']:.1f}%")
    for w in r["warnings"]:
        typer.secho(f"WARNING: {w}", fg="yellow")
    if not r["warnings"]:
        typer.echo("No warnings.")


@app.command()
def eda(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the PNGs and index.html (default: <workspace>/eda).")] = None,
    json_: JsonOption = False,
) -> None:
    """Draw the seed study's exploratory figures: size scatter with fitted slopes, raw and 299x299
    image grids, mean image per class, their difference, and per-pixel variance.

    Example: wb eda --out reports/eda && open reports/eda/index.html
    """
    from workbench.analysis import make_eda  # numpy, matplotlib: only when a command runs

    ws = workspace(ctx)
    result = make_eda(ws.db, out or ws.folder("eda"))
    if json_:
        print_json(result)
        return
    typer.echo(f"Figures from {result['images']} images (" + ", ".join(f"{k} {v}" for k, v in result["per_class"].items()) + ")")
    for label, fit in result["slopes"].items():
        if fit["slope"] is None:
            typer.echo(f"  {label:<10} too few distinct widths to fit a line (n={fit['n']})")
        else:
            typer.echo(f"  {label:<10} height = {fit['slope']:.3f} x width {fit['intercept']:+.1f}  (n={fit['n']})")
    for label, peak in result["variance_peaks"].items():
        typer.echo(f"  {label:<10} variance max {peak['max']} at x={peak['col']}, y={peak['row']}")
    if result["unreadable"]:
        typer.echo(f"  {len(result['unreadable'])} image(s) could not be read and were left out")
    typer.echo(f"Index: {result['index']}")
