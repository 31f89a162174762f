"""`wb suggest`: rank the unlabelled pool and pick the next images to annotate; `wb suggest show`."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines import active
from pipelines.registry import FILLS
from workbench.cli import app
from workbench.cli.common import CheckpointOption, DeviceOption, JsonOption, SplitOption, config_option, print_json, workspace
from workbench.configs import SuggestConfig, fill, parse_weights
from workbench.errors import InputError

suggest_app = typer.Typer()  # help: the callback's docstring
app.add_typer(suggest_app, name="suggest")

_TABLE = (("det_confidence", "conf"), ("det_ambiguity", "ambig"), ("det_instability", "flip"),
          ("cls_entropy", "entropy"), ("cls_disagreement", "disagree"), ("off_lung", "off-lung"),
          ("off_chest_reliance", "reliance"))


def _fmt(value) -> str:
    return "  n/a" if value is None else f"{value:5.2f}"


def _option(name: str, text: str, *flags: str) -> Any:
    return config_option(SuggestConfig, name, text, *flags)


def _write_csv(path: Path, rows: list[dict]) -> None:
    names = list(active.COMPONENTS)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["rank", "image", "image_id", "label", "score", *names, "reason"])
        for r in rows:
            out.writerow([r["rank"], r["image"], r["image_id"], r["label"], r["score"],
                          *(r["components"].get(n) for n in names), r["reason"]])


@suggest_app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    detector: Annotated[int | None, typer.Option("--detector", metavar="RUN", help="Detector run to score with.")] = None,
    classifier: Annotated[int | None, typer.Option(
        "--classifier", metavar="RUN", help="Classifier (ensemble) run to score with.")] = None,
    k: Annotated[int | None, _option("k", "How many images to suggest.", "-k")] = None,
    weights: Annotated[str | None, _option("weights", "Weights on the components' normalised ranks, name=weight,... "
                                           f"Components: {', '.join(active.COMPONENTS)}.")] = None,
    split: SplitOption = None,
    parts: Annotated[str | None, _option("parts", "Split parts to draw candidates from, comma-separated.")] = None,
    per_patient: Annotated[int | None, _option("per_patient", "At most N images of one patient (0 = no cap).")] = None,
    phash_distance: Annotated[int | None, _option(
        "phash_distance", "Perceptual hashes this close (bits) are near-duplicates; -1 = off.")] = None,
    balance: Annotated[bool, typer.Option(
        "--balance", help="At most half the batch from one label (NORMAL/PNEUMONIA), then fill by rank.")] = False,
    diversity: Annotated[bool, typer.Option(
        "--diversity", help="Spread the batch: k-center greedy over the classifier's embeddings within the top 3k.")] = False,
    include_annotated: Annotated[bool, typer.Option(
        "--include-annotated", help="Also rank images already annotated, batched or pushed (an audit).")] = False,
    limit: Annotated[int | None, typer.Option(help="Score at most N candidates (a random subset by --seed).")] = None,
    seed: Annotated[int | None, _option("seed", "Random seed (ties, --limit).")] = None,
    batch_size: Annotated[int | None, _option("batch_size", "Images per scoring batch.")] = None,
    fill_: Annotated[str | None, _option(
        "fill", f"What replaces the outside of the chest box for off_chest_reliance: {', '.join(FILLS)}.", "--fill")] = None,
    device: DeviceOption = None,
    checkpoint: CheckpointOption = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", metavar="FILE", help="Also write the batch as CSV.")] = None,
    push: Annotated[bool, typer.Option(
        "--push", help="Send the batch to Label Studio in rank order, detector boxes as pre-annotations.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the batch as a JSON list.")] = False,
) -> None:
    """Rank candidates (no valid chest box, not pushed) by detector uncertainty, classifier uncertainty,
    attention outside the chest (LayerCAM at stride 16) and off-chest reliance (how much each
    member's P(pneumonia) moves when everything outside the chest box is replaced); store a
    suggest run. Running the same command again after an interruption resumes the scoring.

    Example: wb suggest --detector 1 --classifier 2 -k 20 --weights uncertainty=1,off_lung=1 --csv batch.csv
    """
    if ctx.invoked_subcommand is not None:
        return
    from workbench.suggesting import suggest  # torch: only when a command runs

    if detector is None or classifier is None:
        raise typer.BadParameter("give --detector RUN and --classifier RUN (see `wb status` for runs)")
    config = fill(
        SuggestConfig, detector_run=detector, classifier_run=classifier, k=k, split=split,
        parts=tuple(p.strip() for p in parts.split(",") if p.strip()) if parts is not None else None,
        weights=parse_weights(weights) if weights is not None else None,
        per_patient=per_patient, phash_distance=phash_distance, balance=balance or None, diversity=diversity or None,
        seed=seed, include_annotated=include_annotated or None, limit=limit, batch_size=batch_size, device=device,
        checkpoint=checkpoint, fill=fill_,
    )
    result = suggest(workspace(ctx), config, push=push, progress=not json_)
    if csv_file is not None:
        try:
            _write_csv(csv_file, result.rows)
        except OSError as exc:
            raise InputError(f"Cannot write {csv_file}: {exc.strerror}") from None
    if json_:
        print_json(result.rows)
        return
    typer.echo(f"Suggest run {result.run_id}: {len(result.rows)} of {result.candidates} candidates "
               f"({result.resumed} scores resumed, {result.seconds:.1f}s)")
    typer.echo(f"{'rank':>4}  {'score':>5}  " + "  ".join(f"{h:>8}" for _, h in _TABLE) + "  image  (reason)")
    for r in result.rows:
        c = r["components"]
        typer.echo(f"{r['rank']:>4}  {r['score']:5.2f}  " + "  ".join(f"{_fmt(c.get(n)):>8}" for n, _ in _TABLE)
                   + f"  {r['image']}  ({r['reason']})")
    if csv_file is not None:
        typer.echo(f"Wrote {csv_file}")
    if result.pushed is not None:
        typer.echo(f"Pushed to {result.pushed.get('url')}: {result.pushed}")
    typer.echo(f"Next: wb suggest show {result.run_id} IMAGE")


@suggest_app.command("show")
def show(
    ctx: typer.Context,
    run: Annotated[int, typer.Argument(help="A suggest run id.")],
    image: Annotated[str, typer.Argument(help="Image id or path (as `wb suggest --json` prints it).")],
    out: Annotated[Path | None, typer.Option(help="PNG to write (default: <run folder>/show/<image>.png).")] = None,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Render the image with the chest box and each member's Grad-CAM, so a person sees why it was picked.

    Example: wb suggest show 3 chest_xray/train/PNEUMONIA/person1_bacteria_1.jpeg
    """
    from workbench.explaining import show_suggestion

    info = show_suggestion(workspace(ctx), run, image, out=out, **({"device": device} if device else {}))
    if json_:
        print_json(info)
        return
    typer.echo(f"Wrote {info['file']}")
