from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the synthetic-data generators are shared with the benchmarks
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def client():
    """A Dask client on a LocalCluster of 2 single-threaded worker processes, one per test
    module (the distributed tests import `distributed` with pytest.importorskip first)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c
