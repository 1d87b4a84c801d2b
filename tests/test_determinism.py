"""The same seeds give the same models whatever ``--workers`` and the thread count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from enrich.evaluate.config import protocol_config  # noqa: E402
from enrich.evaluate.data import BenchmarkData  # noqa: E402
from enrich.evaluate.protocol import auto_workers, run_benchmark  # noqa: E402
from enrich.evaluate.tasks import deterministic, train_and_score  # noqa: E402

# Wide enough (32×32, 8–16 channels) that torch splits its reductions among threads, with
# early stopping, which a ~1e-6 change in the validation loss moves to another epoch.
CFG = {
    "initializations": 1,
    "models": 2,
    "initial": 8,
    "sizes": [16],
    "model": {"input_size": 32, "block_inplanes": [8, 16, 16, 16], "layers": [1, 1, 1, 1]},
    "train": {"epochs": 4, "patience": 1, "batch_size": 16},
    "split": {"test_fraction": 0.25, "validation_fraction": 0.2},
}
EXACT = ["value", "epochs", "best_epoch", "train_loss", "val_loss"]
KEY = ["strategy", "init", "size", "model"]


def data(n: int = 80) -> BenchmarkData:
    rng = np.random.default_rng(1)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 32, 32)).astype(np.float32)
    x[y == 1, 8:24, 8:24] += 0.4
    vec = x.reshape(n, -1)[:, ::16] + rng.normal(scale=0.1, size=(n, 64))
    return BenchmarkData.from_arrays(x, labels=y, vectors=vec)


def rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").sort_values(KEY).reset_index(drop=True)


def run(out: Path, *, workers: int, ambient_threads: int) -> pd.DataFrame:
    before = torch.get_num_threads()
    torch.set_num_threads(ambient_threads)
    try:
        r = run_benchmark(data(), CFG, out, workers=workers, progress=False, report=False)
    finally:
        torch.set_num_threads(before)
    assert r.n_failed == 0 and r.n_ok == 6  # enrich, random, full × 2 models
    return rows(out)


def test_train_and_score_ignores_the_callers_thread_count():
    cfg = protocol_config(CFG)
    d = data()
    x, y = d.load_images(np.arange(80), size=32), np.arange(80) % 2
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(
                train_and_score(
                    cfg, x[:48], y[:48], x[48:64], y[48:64], x[64:], y[64:], n_classes=2, seed=5
                )
            )
            assert torch.get_num_threads() == threads  # restored afterwards
    finally:
        torch.set_num_threads(before)
    assert results[0] == results[1] == results[2]  # every field, bit for bit


def test_deterministic_restores_torch_settings():
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    with deterministic(1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


def test_auto_workers():
    assert auto_workers(10) == 1  # small runs stay in-process
    assert auto_workers(1000, device="cuda") == 1
    assert 1 <= auto_workers(1000) <= 8
    assert auto_workers(1000, threads=1000) == 1


@pytest.mark.slow
def test_results_identical_with_1_and_2_workers_and_any_thread_count(tmp_path):
    serial_1 = run(tmp_path / "s1", workers=1, ambient_threads=1)
    serial_2 = run(tmp_path / "s2", workers=1, ambient_threads=2)
    parallel = run(tmp_path / "p2", workers=2, ambient_threads=2)
    for other in (serial_2, parallel):
        pd.testing.assert_frame_equal(serial_1[[*KEY, "seed"]], other[[*KEY, "seed"]])
        pd.testing.assert_frame_equal(serial_1[EXACT], other[EXACT], check_exact=True)
    import json

    meta = json.loads((tmp_path / "p2" / "meta.json").read_text())
    assert meta["determinism"]["threads_per_model"] == 1
    assert meta["config"]["train"]["threads"] == 1


def test_threads_is_part_of_the_config(tmp_path):
    from enrich.errors import EnrichError

    assert protocol_config({}).train.threads == 1
    with pytest.raises(EnrichError, match=r"train.threads=0: expected an integer >= 1"):
        protocol_config({"train": {"threads": 0}})
    with pytest.raises(EnrichError, match="threads=0: expected an integer >= 1"):
        run_benchmark(data(), CFG, tmp_path / "x", threads=0, progress=False, report=False)
    with pytest.raises(EnrichError, match="--workers 'many': expected an integer >= 1 or auto"):
        run_benchmark(data(), CFG, tmp_path / "y", workers="many", progress=False, report=False)


def test_cli_workers_option():
    from enrich.cli.benchmark import _workers
    from enrich.errors import EnrichError

    assert _workers("auto") == "auto" and _workers("AUTO") == "auto"
    assert _workers("3") == 3
    for bad in ("0", "-1", "many", "1.5"):
        with pytest.raises(EnrichError, match=f"--workers {bad}: expected an integer >= 1 or auto"):
            _workers(bad)
