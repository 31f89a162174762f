#!/usr/bin/env bash
# The main job on the 48-image sample shipped in sample/: import -> split -> status.
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

echo
echo "Demo outputs: database $WB_DB, workspace $WB_WORKSPACE"
