"""Label Studio sync speed on the 2,260-image kermany subset, beside the raw SDK calls.

    .venv/bin/python benchmarks/ls_sync.py [--subset ../shared/data/kermany-subset] [--annotations 400]

Starts its own server the way `wb ls serve` does (temp workspace, free 127.0.0.1 port; the first
start takes about a minute), imports the subset, then measures:

1. push all images as tasks (`wb ls push`) vs one raw `projects.import_tasks` call with the
   same task payloads into another project, both into an existing project, repeated with the
   order alternating (requirement: wb's median rate >= 80 % of raw); the first push, which
   also creates the project, is shown apart;
2. a pull with nothing new on that project (requirement: < 1 s);
3. a pull of N new annotations (made one by one through the SDK, as annotators would) vs the
   raw `tasks.list` calls that list the same tasks (requirement: wb's rate >= 50 % of raw).

Prints one table with both sides and the ratios. The server is stopped at the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import select  # noqa: E402

from annotations.client import annotated_query, updated_after_query  # noqa: E402
from annotations.convert import CHEST_LABEL, PixelBox, rectangle_result  # noqa: E402
from annotations.pull import OVERLAP_S  # noqa: E402
from annotations.server import load_credentials  # noqa: E402
from annotations.sync import local_files_url, task_data  # noqa: E402
from db.models import Image  # noqa: E402
from db.models.labels import LsProject, LsTask  # noqa: E402
from workbench import labelling  # noqa: E402
from workbench.importing import import_dataset  # noqa: E402
from workbench.workspace import Workspace  # noqa: E402

PAUSE_S = 2.0  # idle time before each timed push: the server finishes the previous import's work


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def raw_list(sdk, project: int, query: str) -> int:
    """The raw SDK calls a pull needs: every page of tasks (with annotations) for the query."""
    n, page = 0, 1
    while True:
        resp = sdk.tasks.list(project=project, query=query, fields="all", page=page, page_size=1000)
        items = resp.items or []
        n += len(items)
        if not items or page * 1000 >= (resp.response.total or 0):
            return n
        page += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subset", type=Path, default=REPO.parent / "shared" / "data" / "kermany-subset")
    ap.add_argument("--annotations", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=4, help="push repetitions per side, order alternating")
    ap.add_argument("--workspace", type=Path, default=None, help="default: a temp folder, removed at the end")
    args = ap.parse_args()
    for var in ("WB_LS_URL", "WB_LS_TOKEN", "WB_LS_DOCUMENT_ROOT", "WB_DB"):
        os.environ.pop(var, None)

    from label_studio_sdk import LabelStudio

    tmp = tempfile.TemporaryDirectory(prefix="wb-ls-bench-") if args.workspace is None else None
    ws = Workspace.from_options(workspace=str(args.workspace or tmp.name))
    t_import, _ = timed(import_dataset, ws.db, args.subset, progress=False)
    with ws.db.session() as s:
        images = list(s.scalars(select(Image).where(Image.status == "ok").order_by(Image.id)))
        for im in images:
            im.root  # noqa: B018 (load before the session closes: abs_path needs it)
    print(f"imported {len(images)} images in {t_import:.1f} s", file=sys.stderr)
    t_serve, served = timed(labelling.serve, ws)
    print(f"server {served.url} answered after {t_serve:.1f} s", file=sys.stderr)
    rows = []
    try:
        sdk = LabelStudio(base_url=served.url, api_key=load_credentials(labelling.ls_folder(ws)).token)
        ids = [str(im.id) for im in images]

        # 1. push. The server keeps working for a moment after answering an import, which slows
        # whatever comes next: pause before each timed call and alternate which side goes first.
        config = (REPO / "annotations" / "label_config.xml").read_text()
        payload = [{"data": task_data(im, local_files_url(im.abs_path, served.document_root))} for im in images]
        raw_times, wb_times = [], []

        def raw_push() -> float:
            raw_project = sdk.projects.create(title="raw import", label_config=config).id
            time.sleep(PAUSE_S)
            t, resp = timed(sdk.projects.import_tasks, id=raw_project, request=payload, return_task_ids=True)
            assert len(resp.task_ids) == len(images)
            return t

        def wb_push(new_project: bool) -> float:
            if new_project:
                labelling.prepare_project(ws, new_project=True)  # like the raw side: the project exists
            time.sleep(PAUSE_S)
            t, pushed = timed(labelling.push, ws, images=ids)
            assert pushed["created"] == len(images), pushed
            return t

        t_first = wb_push(False)  # the first push also creates the project and its storage: shown apart
        t_raw_first = raw_push()
        for rep in range(args.repeats):
            if rep % 2:
                wb_times.append(wb_push(True))
                raw_times.append(raw_push())
            else:
                raw_times.append(raw_push())
                wb_times.append(wb_push(True))
        t_raw_push, t_push = statistics.median(raw_times), statistics.median(wb_times)
        print(f"push times: raw {[f'{t:.3f}' for t in raw_times]}, wb {[f'{t:.3f}' for t in wb_times]}", file=sys.stderr)
        rows.append((f"push {len(images)} tasks, project exists (median of {len(wb_times)})", t_push, t_raw_push,
                     t_raw_push / t_push, ">= 0.80"))
        rows.append((f"first push {len(images)} tasks, creating project + storage", t_first, t_raw_first,
                     t_raw_first / t_first, "(info)"))
        time.sleep(PAUSE_S)

        # 2. a pull with nothing new (no annotations yet), then one annotation to set the cursor.
        t_empty0, out = timed(labelling.pull, ws, progress=False)
        rows.append(("pull, nothing new (no annotations)", t_empty0, None, None, "< 1 s"))
        with ws.db.session() as s:
            project_row = s.scalars(select(LsProject).where(LsProject.gone.is_(False))).one()
            task_of = {t.image_id: t.ls_task_id for t in s.scalars(select(LsTask).where(LsTask.ls_project_id == project_row.id))}
        by_label = {"NORMAL": [], "PNEUMONIA": []}
        for im in images:
            by_label[im.label].append(im)
        chosen = by_label["NORMAL"][: args.annotations // 2] + by_label["PNEUMONIA"][: args.annotations - args.annotations // 2]
        first, rest = chosen[0], chosen[1:] + [by_label["PNEUMONIA"][args.annotations]]

        def annotate(im):
            box = PixelBox(im.width * 0.1, im.height * 0.1, im.width * 0.9, im.height * 0.9)
            result = [rectangle_result(box, CHEST_LABEL, im.width, im.height)]
            sdk.annotations.create(id=task_of[im.id], result=result)

        time.sleep(OVERLAP_S + 1)  # annotators start later than the push: keep the fresh tasks out of the overlap
        annotate(first)
        labelling.pull(ws, progress=False)

        # 3. N new annotations, then wb's pull vs the raw listing of the same tasks.
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(annotate, rest))
        print(f"made {len(rest)} annotations in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        with ws.db.session() as s:
            cursor = s.get(LsProject, project_row.id).last_updated_at
        query = updated_after_query(cursor, OVERLAP_S) if cursor else annotated_query()
        t_raw_pull, n_listed = timed(raw_list, sdk, project_row.project_id, query)
        t_pull, out = timed(labelling.pull, ws, progress=False)
        assert out["created"] == len(rest) and out["by_status"] == {"valid": len(rest)}, out
        rows.append((f"pull {len(rest)} new annotations ({n_listed} tasks listed)", t_pull, t_raw_pull,
                     t_raw_pull / t_pull, ">= 0.50"))
        t_empty, out = timed(labelling.pull, ws, progress=False)
        assert out["created"] == out["updated"] == out["deleted"] == 0, out
        rows.append((f"pull, nothing new ({out['tasks_seen']} tasks in the overlap)", t_empty, None, None, "< 1 s"))
    finally:
        labelling.stop(ws)
        ws.db.dispose()
        if tmp is not None:
            tmp.cleanup()

    print(f"\nLabel Studio sync on {args.subset.name} ({len(images)} images), 2-core machine")
    print(f"{'operation':<60} {'wb (s)':>8} {'raw SDK (s)':>12} {'ratio':>7}  requirement")
    for name, ours, raw, ratio, req in rows:
        raw_s = f"{raw:.3f}" if raw is not None else "-"
        ratio_s = f"{ratio:.2f}" if ratio is not None else "-"
        if req == "(info)":
            verdict = ""
        else:
            verdict = "ok" if ((ratio >= float(req.split()[1])) if ratio is not None else (ours < 1.0)) else "FAIL"
        print(f"{name:<60} {ours:>8.3f} {raw_s:>12} {ratio_s:>7}  {req} {verdict}")
    print("ratio = wb's rate / the raw SDK call's rate (= raw time / wb time)")


if __name__ == "__main__":
    main()
