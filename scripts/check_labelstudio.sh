#!/usr/bin/env bash
# Round trip through a real Label Studio server, started as a user would start it:
#   enrich next -> enrich export --format labelstudio -> Label Studio project (sequential
#   sampling, local files) -> the annotator's task stream is the ENRICH order, the image URLs
#   resolve to the right bytes -> Label Studio JSON export -> enrich labels import.
#
# Label Studio pins many packages, so it lives in its own venv (never the project's):
#   LS_VENV=/tmp/lsvenv  (created with `pip install label-studio` if missing)
# Usage: scripts/check_labelstudio.sh            (PYTHON defaults to the project .venv)
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"
LS_VENV="${LS_VENV:-/tmp/lsvenv}"
PORT="${PORT:-8089}"
WORK="$(mktemp -d /tmp/enrich-ls-check.XXXXXX)"
export PYTHONPATH="$HERE/src${PYTHONPATH:+:$PYTHONPATH}"

if [ ! -x "$LS_VENV/bin/label-studio" ]; then
  echo "installing label-studio into $LS_VENV (a few minutes)" >&2
  python3 -m venv "$LS_VENV"
  "$LS_VENV/bin/pip" install -q label-studio
fi

DOCROOT="$WORK/docroot"
mkdir -p "$DOCROOT/images"
# 40 small real PNGs in 8 patients, with a look-alike pair so the order is not the file order
"$PYTHON" - "$DOCROOT/images" "$WORK/ws" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
folder = Path(sys.argv[1])
rng = np.random.default_rng(0)
for i in range(40):
    base = rng.random((32, 32)) if i % 5 else np.ones((32, 32)) * (i / 40)
    Image.fromarray((base * 255).astype(np.uint8)).save(folder / f"p{i % 8}_img{i:02d}.png")
with open(folder.parent / "labels.csv", "w") as f:
    f.write("path,patient_id\n")
    for i in range(40):
        f.write(f"images/p{i % 8}_img{i:02d}.png,P{i % 8}\n")
EOF
"$PYTHON" -m enrich embed "$DOCROOT/labels.csv" --workspace "$WORK/ws" --embedder pixels >/dev/null
"$PYTHON" -m enrich next --workspace "$WORK/ws" --budget 12 --out "$WORK/batch1"
"$PYTHON" -m enrich export "$WORK/batch1/batch.csv" --format labelstudio --root "$DOCROOT" \
  --classes normal,abnormal --out "$WORK/ls"

TOKEN="enrichcheck0123456789abcdef0123456789abcd"
export LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true
export LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$DOCROOT"
export LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK=true
"$LS_VENV/bin/label-studio" start --no-browser --host 127.0.0.1 --internal-host 127.0.0.1 \
  --port "$PORT" --data-dir "$WORK/lsdata" --username check@enrich.local \
  --password enrich-check-pw --user-token "$TOKEN" --enable-legacy-api-token \
  >"$WORK/labelstudio.log" 2>&1 &
LS_PID=$!
trap 'kill $LS_PID 2>/dev/null || true' EXIT

"$LS_VENV/bin/python" - "$PORT" "$TOKEN" "$WORK" "$DOCROOT" <<'EOF'
import json, sys, time
from pathlib import Path
from urllib.parse import unquote
import requests

port, token, work, docroot = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
base = f"http://127.0.0.1:{port}"
s = requests.Session()
s.headers["Authorization"] = f"Token {token}"
for _ in range(300):  # first start migrates the database: a minute or two
    try:
        if s.get(f"{base}/api/projects", timeout=5).status_code == 200:
            break
    except requests.ConnectionError:
        pass
    time.sleep(2)
else:
    sys.exit("Label Studio did not come up; see labelstudio.log")
tasks = json.loads((work / "ls" / "tasks.json").read_text())
config = (work / "ls" / "label_config.xml").read_text()
# the recipe of the README: sequential sampling, one annotation per task
p = s.post(f"{base}/api/projects", json={
    "title": "enrich check", "label_config": config,
    "sampling": "Sequential sampling", "maximum_annotations": 1}).json()
pid = p["id"]
r = s.post(f"{base}/api/storages/localfiles", json={
    "project": pid, "path": str(docroot / "images"), "title": "images", "use_blob_urls": False})
assert r.status_code in (200, 201), r.text
r = s.post(f"{base}/api/projects/{pid}/import", json=tasks)
assert r.status_code in (200, 201), r.text
got = s.get(f"{base}/api/tasks", params={"project": pid, "page_size": 1000}).json()["tasks"]
got.sort(key=lambda t: t["id"])
ranks = [t["data"]["enrich_rank"] for t in got]
assert ranks == list(range(len(tasks))), f"import order broken: {ranks}"
assert [t["meta"]["id"] for t in got] == [t["meta"]["id"] for t in tasks], "meta lost"
# the annotator's stream: label each task the server hands out, in turn
served = []
for k in range(len(tasks)):
    nxt = s.get(f"{base}/api/projects/{pid}/next").json()
    served.append(nxt["data"]["enrich_rank"])
    url = nxt["data"]["image"]
    img = s.get(f"{base}{url}")
    want = (docroot / unquote(url.split("?d=", 1)[1])).read_bytes()
    assert img.status_code == 200 and img.content == want, f"{url}: {img.status_code}"
    s.post(f"{base}/api/tasks/{nxt['id']}/annotations", json={"result": [{
        "from_name": "label", "to_name": "image", "type": "choices",
        "value": {"choices": ["abnormal" if k % 3 == 0 else "normal"]}}]})
assert served == list(range(len(tasks))), f"Label Studio served {served}"
export = s.get(f"{base}/api/projects/{pid}/export", params={"exportType": "JSON"})
(work / "export.json").write_bytes(export.content)
print(f"label-studio: {len(tasks)} tasks imported and served in ENRICH order; "
      f"{len(tasks)} image URLs resolved to the right bytes")
EOF

"$PYTHON" -m enrich labels import "$WORK/export.json" --workspace "$WORK/ws"
"$PYTHON" - "$WORK" <<'EOF'
import sys
import pandas as pd
from pathlib import Path
work = Path(sys.argv[1])
m = pd.read_parquet(work / "ws" / "manifest.parquet").set_index("id")
batch = pd.read_csv(work / "batch1" / "batch.csv")
want = ["abnormal" if k % 3 == 0 else "normal" for k in range(len(batch))]
assert m.loc[batch["id"], "label"].tolist() == want, "labels did not come back"
assert m.loc[batch["id"], "labeled_at"].notna().all()
print("labels import: every label came back to its image id")
EOF
"$PYTHON" -m enrich next --workspace "$WORK/ws" --budget 5 --out "$WORK/batch2"
echo "OK: Label Studio round trip passed ($WORK)"
