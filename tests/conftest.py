from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the synthetic-data generators are shared with the benchmarks
sys.path.insert(0, str(ROOT / "benchmarks"))
