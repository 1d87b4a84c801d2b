"""Round trip through a real Label Studio server (scripts/check_labelstudio.sh).

Label Studio pins many packages, so it lives in its own venv and the check takes minutes:
it runs only when ENRICH_CHECK_LABELSTUDIO=1 (LS_VENV names the venv; the script installs
Label Studio there if it is missing).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("ENRICH_CHECK_LABELSTUDIO") != "1",
    reason="set ENRICH_CHECK_LABELSTUDIO=1 to start a real Label Studio (minutes)",
)
def test_label_studio_serves_the_enrich_order_and_labels_come_back() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_labelstudio.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "tasks imported and served in ENRICH order" in r.stdout
    assert "every label came back to its image id" in r.stdout
