#!/usr/bin/env bash
# The CVAT and MONAI Label exports checked against the real packages, each in its own venv
# (neither goes into the project's venv):
#   - cvat-sdk: tests/test_loop.py builds cvat_sdk's DataRequest and TaskWriteRequest from the
#     exported data.json / task.json (ENRICH_CVAT_PYTHON names the interpreter);
#   - monailabel: tests/test_monailabel.py loads the exported datastore with MONAI Label's
#     LocalDatastore and runs EnrichStrategy / EnrichScoring on it. monailabel's full
#     dependency set pulls a CUDA torch, so it is installed --no-deps on top of the project's
#     venv (which has torch and monai) plus the few packages its datastore imports.
# Usage: scripts/check_cvat_monailabel.sh   (PYTHON defaults to the project .venv)
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"
CVAT_VENV="${CVAT_VENV:-/tmp/cvatvenv}"
ML_VENV="${ML_VENV:-/tmp/mlvenv}"

if [ ! -x "$CVAT_VENV/bin/python" ] || ! "$CVAT_VENV/bin/python" -c "import cvat_sdk" 2>/dev/null; then
  python3 -m venv "$CVAT_VENV" && "$CVAT_VENV/bin/pip" install -q cvat-sdk
fi
if [ ! -x "$ML_VENV/bin/python" ] || ! "$ML_VENV/bin/python" -c "import monailabel" 2>/dev/null; then
  "$PYTHON" -m venv "$ML_VENV"
  SITE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  ML_SITE="$("$ML_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$SITE" > "$ML_SITE/zz_enrich_venv.pth"
  "$ML_VENV/bin/pip" install -q --no-deps monailabel
  "$ML_VENV/bin/pip" install -q pydantic pydantic-settings watchdog filelock python-dotenv
fi
cd "$HERE"
ENRICH_CVAT_PYTHON="$CVAT_VENV/bin/python" PYTHONPATH="$HERE/src" \
  "$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/test_loop.py -k cvat
PYTHONPATH="$HERE/src:$HERE/tests" "$ML_VENV/bin/python" -m pytest -q -rs -p no:cacheprovider \
  tests/test_monailabel.py
echo "OK: CVAT spec validated by cvat-sdk; MONAI Label datastore + EnrichStrategy checked"
