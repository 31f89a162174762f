#!/usr/bin/env bash
# The main job on the 48-image sample shipped in sample/: import -> split -> annotations -> audit/eda
# -> train -> eval (with shortcut reliance) -> cam -> a chest-crop classifier -> suggest -> a planted stress set.
# Outputs go to $WB_WORKSPACE (default wb-workspace/demo); the DB to $WB_DB (default <workspace>/wb.db).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${WB_WORKSPACE:=$PWD/wb-workspace/demo}"
export WB_WORKSPACE
mkdir -p "$WB_WORKSPACE"
if [ -z "${WB_DB:-}" ]; then
  # Our own default DB: start it afresh. A DB the caller named is added to, never deleted.
  export WB_DB="$WB_WORKSPACE/wb.db"
  rm -f "$WB_DB" "$WB_DB-wal" "$WB_DB-shm"
fi

wb import sample/kermany
wb split --strategy source --name demo --replace --batch-per-class 12
wb annotations import annotations/sample_boxes.json
wb status
wb audit
wb eda --out "$WB_WORKSPACE/eda"

# Train a tiny Faster R-CNN (MobileNetV2) and ensemble classifier on the sample, evaluate both on
# the test part (metrics with bootstrap CIs, report folders) and draw CAMs: about a minute of CPU.
# ImageNet MobileNetV2 weights come from $TORCH_HOME when present (../shared/torch-cache here);
# --allow-fallback starts from random weights where they cannot be had.
if [ -z "${TORCH_HOME:-}" ] && [ -d ../shared/torch-cache ]; then export TORCH_HOME="$(cd ../shared/torch-cache && pwd)"; fi
run_id() { python -c "import json,sys; print(json.load(sys.stdin)['run_id'])"; }
DET_RUN=$(wb train detector --backbone mobilenet_v2 --epochs 6 --lr 0.01 --image-size 160 --batch-size 4 --allow-fallback --threads 1 --json | run_id)
wb eval "$DET_RUN" --part test
wb cam "$DET_RUN" --images sample/kermany/chest_xray/test/PNEUMONIA/person65_virus_123.jpeg
CLS_RUN=$(wb train classifier --members mobilenet_v2 --head fc2 --epochs 2 --image-size 160 --batch-size 8 --lr 0.0003 --allow-fallback --threads 1 --json | run_id)
wb eval "$CLS_RUN" --part test
wb cam "$CLS_RUN" --images sample/kermany/chest_xray/test/PNEUMONIA/person65_virus_123.jpeg

# Boxes steer the classifier: train and predict on the chest crop (annotated boxes, else the
# detector's); eval reports how much each model relies on what lies outside the chest box.
CROP_RUN=$(wb train classifier --members mobilenet_v2 --head fc2 --epochs 2 --image-size 160 --batch-size 8 --lr 0.0003 --input chest-crop --margin 0.05 --boxes-from "$DET_RUN" --allow-fallback --threads 1 --json | run_id)
wb eval "$CROP_RUN" --part test

# wb suggest: rank the sample with those two runs. Every sample image has a box, so
# --include-annotated ranks them all (an audit of where the classifier looks), then draw the top one.
wb suggest --detector "$DET_RUN" --classifier "$CLS_RUN" -k 5 --include-annotated --parts train,val --csv "$WB_WORKSPACE/suggestions.csv"
SUGGEST_RUN=$(wb status --json | python -c "import json,sys; print([r['id'] for r in json.load(sys.stdin)['runs'] if r['kind']=='suggest'][-1])")
TOP_IMAGE=$(python -c "import csv,sys; print(next(csv.DictReader(open(sys.argv[1])))['image'])" "$WB_WORKSPACE/suggestions.csv")
wb suggest show "$SUGGEST_RUN" "$TOP_IMAGE"

# A planted-shortcut copy of the sample (markers outside the chest box, reversed in test).
rm -rf "$WB_WORKSPACE/planted"
wb stress plant "$WB_WORKSPACE/planted" --size 0.08

echo
echo "Demo outputs: database $WB_DB, workspace $WB_WORKSPACE"
