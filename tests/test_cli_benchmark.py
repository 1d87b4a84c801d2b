"""``enrich benchmark`` end to end, in-process, on a tiny real workspace (PneumoniaMNIST)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enrich.cli import main

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

REPO = Path(__file__).resolve().parents[1]
PNEUMONIA = REPO / "data" / "pneumoniamnist" / "pneumoniamnist.npz"

TINY_YAML = """
task: classification
seed: 3
initializations: 2
models: 1
initial: 6
sizes: [6, 12]
model: {input_size: 16, block_inplanes: [4, 8, 8, 8], layers: [1, 1, 1, 1]}
train: {epochs: 1, batch_size: 16, patience: 1}
"""


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_workspace(
    root: Path, *, n_train: int = 40, n_val: int = 10, n_test: int = 16, labels: bool = True
) -> Path:
    """A workspace of real PneumoniaMNIST images (both classes, official split), built with
    the project's own readers; embeddings are the 8×8 pixels."""
    from enrich.embeddings import Embeddings
    from enrich.io import discover, read_frames
    from enrich.preprocess import Preprocess
    from enrich.workspace import Workspace

    d = np.load(PNEUMONIA)
    arrays = {}
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        y = d[f"{split}_labels"].ravel()
        take = np.concatenate(
            [rng.choice(np.flatnonzero(y == c), n // 2, replace=False) for c in (0, 1)]
        )
        arrays[f"{split}_images"] = d[f"{split}_images"][take]
        if labels:
            arrays[f"{split}_labels"] = d[f"{split}_labels"][take]
    src = root / "src"
    src.mkdir()
    np.savez(src / "tiny_pneumonia.npz", **arrays)
    found = discover(src)
    ws = Workspace.create(root / "ws")
    ids, vecs = [], []
    for image_id, img in read_frames(found.manifest, preprocess=Preprocess(size=8)):
        ids.append(image_id)
        vecs.append(img.ravel() + 1e-3)
    ws.write_embeddings(Embeddings(np.array(ids), np.stack(vecs).astype(np.float32)))
    ws.write_manifest(found.manifest)
    return ws.path


@pytest.fixture
def workspace(tmp_path):
    return make_workspace(tmp_path)


@pytest.mark.slow
def test_benchmark_cli_tiny_real_run(tmp_path, workspace, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_YAML)
    out = tmp_path / "runs" / "tiny"
    rc = main(
        [
            "benchmark",
            "--workspace",
            str(workspace),
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 2 * 2 * 2 + 2 and (rows.status == "ok").all()
    assert set(rows.strategy) == {"enrich", "random", "full"}
    assert rows["value"].between(0, 1).all()
    meta = json.loads((out / "meta.json").read_text())
    # the official split of the npz: val rows are the early-stopping set
    assert (meta["n_train"], meta["n_val"], meta["n_test"]) == (40, 10, 16)
    assert meta["split"]["source"] == "column:split"
    assert meta["config"]["seed"] == 3 and meta["versions"]["torch"]
    sub = pd.read_parquet(out / "subsets.parquet")
    assert list(sub.columns[:4]) == ["strategy", "init", "size", "id"]
    split = pd.read_parquet(out / "split.parquet")
    assert set(sub["id"]) <= set(split.loc[split.split == "train", "id"])
    assert f"results: {out / 'results.csv'}" in captured.out
    try:
        import enrich.report.html  # noqa: F401
    except ImportError:
        assert "report module" in captured.err
    else:
        assert (out / "report.html").is_file()
        assert f"report: {out / 'report.html'}" in captured.out
    # the same command again resumes: nothing left to train
    rc = main(
        [
            "benchmark",
            "--workspace",
            str(workspace),
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--quiet",
            "--no-report",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and "10 of 10 models already done" in err
    assert len(pd.read_csv(out / "results.csv")) == 10


def test_benchmark_cli_set_overrides_and_default_out(workspace, capsys):
    rc = main(
        [
            "benchmark",
            "-w",
            str(workspace),
            "--config",
            "quick",
            "--quiet",
            "--no-report",
            "--set",
            "initializations=1",
            "--set",
            "models=1",
            "--set",
            "sizes=[0.3]",
            "--set",
            "initial=0.2",
            "--set",
            "full=false",
            "--set",
            "model.input_size=16",
            "--set",
            "model.block_inplanes=[4,8,8,8]",
            "--set",
            "train.epochs=1",
            "--set",
            "train.min_steps=0",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    out = workspace / "runs" / "benchmark-quick"
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 2 and set(rows["size"]) == {12}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["model"]["input_size"] == 16 and meta["config"]["train"]["min_steps"] == 0


def _one_line_error(capsys, rc: int, match: str) -> None:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], err


def test_benchmark_cli_without_labels_is_one_line_error(tmp_path, capsys):
    ws = make_workspace(tmp_path, labels=False)
    rc = main(["benchmark", "--workspace", str(ws), "--out", str(tmp_path / "o"), "--quiet"])
    _one_line_error(capsys, rc, "no labels")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--config", "nope.yaml"], "no such config file"),
        (["--set", "train.epochs"], "expected KEY=VALUE"),
        (["--set", "sizes=[2.0]"], "fraction"),
        (["--set", "bogus.key=1"], "not a config section"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_benchmark_cli_bad_arguments(workspace, tmp_path, capsys, args, match):
    rc = main(
        ["benchmark", "--workspace", str(workspace), "--out", str(tmp_path / "o"), "--quiet", *args]
    )
    _one_line_error(capsys, rc, match)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_benchmark_cli_cuda_without_a_gpu(workspace, tmp_path, capsys):
    rc = main(["benchmark", "-w", str(workspace), "--out", str(tmp_path / "o"), "--device", "cuda"])
    _one_line_error(capsys, rc, "no CUDA GPU")


def test_benchmark_cli_missing_workspace(tmp_path, capsys):
    rc = main(["benchmark", "--workspace", str(tmp_path / "none"), "--quiet"])
    _one_line_error(capsys, rc, "no such workspace")
