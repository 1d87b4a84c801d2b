"""A new user's first hour: labels from folders, ignored files listed, threads recorded,
progress that reaches a log, a model trained elsewhere, the small-training warning, and the
smaller fixes (plot_cdf, dir(enrich), a fast `rank --help`, the README example, the name)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enrich._progress import Progress, format_seconds
from enrich._threads import free_cores, parse_threads, resolve_threads
from enrich.cli import main
from enrich.errors import EnrichError, MissingExtraError
from enrich.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 real chest X-rays as PNGs in normal/ and pneumonia/, plus two non-image files."""
    from PIL import Image

    root = tmp_path_factory.mktemp("classes")
    with np.load(DATA) as data:
        images, labels = data["train_images"], data["train_labels"].ravel()
    for name, value in (("normal", 0), ("pneumonia", 1)):
        (root / name).mkdir()
        for k, i in enumerate(np.flatnonzero(labels == value)[:20]):
            Image.fromarray(images[i]).save(root / name / f"{name}{k:02d}.png")
    (root / "notes.txt").write_text("reader notes")
    (root / "normal" / "export.xlsx").write_bytes(b"PK\x03\x04 not an image")
    (root / ".DS_Store").write_bytes(b"\0")  # hidden: not listed
    return root


def _embed(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["embed", *args])
    out, err = capsys.readouterr()
    return rc, out, err


# -- labels from folders, ignored files, threads ------------------------------------------------
def test_labels_from_folder_and_ignored_files(
    class_folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    base = [str(class_folders), "-w", str(ws), "--embedder", "pixels", "--latent-dim", "4"]
    rc, out, err = _embed([*base, "--labels-from-folder", "--threads", "1"], capsys)
    assert rc == 0, err
    assert "40 images (40 new, 0 skipped, 2 ignored (not an image format) → " in out
    man = Workspace.open(ws).manifest()
    expected = man["source_path"].map(lambda p: Path(p).parent.name)
    assert (man["label"] == expected).all()
    assert set(man["label"]) == {"normal", "pneumonia"}
    skipped = pd.read_csv(ws / "skipped.csv")
    assert sorted(Path(p).name for p in skipped["source_path"]) == ["export.xlsx", "notes.txt"]
    assert set(skipped["reason"]) == {"not an image format"}
    info = json.loads((ws / "embeddings.json").read_text())
    assert info["n_ignored"] == 2 and info["n_skipped"] == 0
    assert info["threads"] == 1 and info["labels_from_folder"] is True

    # Without the option the labels are not invented.
    rc, _, err = _embed([*base, "--retrain"], capsys)
    assert rc == 0, err
    assert Workspace.open(ws).manifest()["label"].isna().all()


def test_labels_from_a_single_folder_warn(
    class_folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    rc, _, err = _embed(
        [str(class_folders / "normal"), "-w", str(ws), "--embedder", "pixels", "--latent-dim", "4",
         "--labels-from-folder"],
        capsys,
    )  # fmt: skip
    assert rc == 0
    assert "warning: labels from folders: every image is in a folder named ['normal']" in err


def test_the_benchmark_hint_names_the_option() -> None:
    text = (ROOT / "src" / "enrich" / "evaluate" / "protocol.py").read_text(encoding="utf-8")
    assert "--labels-from-folder" in text


def test_threads() -> None:
    assert free_cores(allowed=2, load=9.5) == 1
    assert free_cores(allowed=8, load=2.2) == 6
    assert free_cores(allowed=4, load=0.0) == 4
    assert 1 <= free_cores() <= (len(__import__("os").sched_getaffinity(0)))
    assert resolve_threads(3) == 3 and resolve_threads("auto") >= 1
    assert parse_threads("auto") == "auto" and parse_threads("2") == 2
    for bad in ("0", "-1", "two"):
        with pytest.raises(Exception, match="positive integer"):
            parse_threads(bad)
    with pytest.raises(EnrichError, match="threads=0"):
        resolve_threads(0)


def test_embed_rejects_bad_threads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["embed", str(tmp_path), "-w", str(tmp_path / "ws"), "--threads", "0"])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err


# -- progress -----------------------------------------------------------------------------------
def test_progress_prints_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = Progress(3, "work", "items", stream=stream, every=0.0)
    for k in range(3):
        bar.update(1, note=f"step {k}")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("work: 1/3 items, step 0, ")
    assert "left" in lines[0] and "\r" not in stream.getvalue()
    assert lines[-1].startswith("work: 3/3 items, done, step 2, ")


def test_progress_heartbeat_shows_life_within_a_slow_unit() -> None:
    stream = io.StringIO()
    bar = Progress(2, "slow", "models", stream=stream, every=0.05)
    bar.poll("model 1: epoch 3")
    deadline = time.monotonic() + 10
    while stream.getvalue().count("\n") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # no update: only the heartbeat thread prints
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3
    assert all(ln.startswith("slow: 0/2 models") for ln in lines[:2])
    assert "model 1: epoch 3" in lines[0]


def test_progress_is_silent_when_disabled() -> None:
    stream = io.StringIO()
    with Progress(2, "x", stream=stream, every=0.0, enabled=False) as bar:
        bar.update(2)
    assert stream.getvalue() == ""
    assert format_seconds(59.4) == "59s" and format_seconds(60) == "1m00s"


# -- the β-VAE: small training sets, a model from elsewhere ---------------------------------------
torch_missing = pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None, reason="needs torch"
)


@torch_missing
def test_a_small_betavae_warns_and_a_matching_model_is_reused(
    class_folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opts = ["--latent-dim", "4", "--epochs", "1", "--epoch-images", "0", "--threads", "1"]
    first = tmp_path / "first"
    rc, out, err = _embed([str(class_folders), "-w", str(first), *opts, "-q"], capsys)
    assert rc == 0, err
    assert "warning: the β-VAE was trained on only 40 images (fewer than 1,000" in err
    info = json.loads((first / "embeddings.json").read_text())
    assert info["small_training_set"] is True and info["min_reliable_train"] == 1000
    assert len(info["warnings"]) == 1

    # Same images, same options: the model is taken from `first`, not trained again.
    second = tmp_path / "second"
    rc, out, err = _embed(
        [str(class_folders), "-w", str(second), *opts, "--model-from", str(first / "model")],
        capsys,
    )
    assert rc == 0, err
    assert f"model from {first / 'model'}" in out
    a = np.load(first / "embeddings.npz")["vectors"]
    b = np.load(second / "embeddings.npz")["vectors"]
    np.testing.assert_array_equal(a, b)
    assert json.loads((second / "model" / "config.json").read_text())["copied_from"] == str(
        first / "model"
    )

    # Other images (one folder only): the fingerprint differs, so it trains and says why.
    third = tmp_path / "third"
    rc, out, err = _embed(
        [str(class_folders / "normal"), "-w", str(third), *opts, "--model-from",
         str(first / "model")],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    assert "data fingerprint differs" in err and "trained on 20" in out

    # Other options: not used either.
    fourth = tmp_path / "fourth"
    rc, out, err = _embed(
        [str(class_folders), "-w", str(fourth), *opts, "--beta", "2", "--model-from",
         str(first / "model")],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    assert "its options differ" in err and "trained on 40" in out

    # --retrain ignores --model-from.
    rc, out, err = _embed(
        [str(class_folders), "-w", str(second), *opts, "--model-from", str(first / "model"),
         "--retrain"],
        capsys,
    )  # fmt: skip
    assert rc == 0 and "trained on 40" in out


SHIPPED = ROOT / "data" / "demo_models"


@torch_missing
@pytest.mark.skipif(not (SHIPPED / "echo" / "config.json").is_file(), reason="no shipped model")
def test_the_shipped_echo_model_matches_the_demo_data(tmp_path: Path) -> None:
    pydicom_data = pytest.importorskip("pydicom.data")
    from enrich.embed.api import embed_sources

    clip = pydicom_data.get_testdata_file("color3d_jpeg_baseline.dcm")
    summary = embed_sources([clip], tmp_path / "ws", model_from=SHIPPED / "echo", progress=False)
    assert summary.model_source == str(SHIPPED / "echo") and summary.n_images == 120


@torch_missing
@pytest.mark.slow
@pytest.mark.parametrize(
    ("ws", "source"),
    [
        ("xray", ROOT / "data" / "pneumoniamnist" / "pneumoniamnist.npz"),
        ("cifar", ROOT / "data/cifar10_airplane_truck_2k/cifar10_airplane_truck_2k.npz"),
    ],
)
def test_the_shipped_models_match_the_demo_data(ws: str, source: Path, tmp_path: Path) -> None:
    if not (SHIPPED / ws / "config.json").is_file():
        pytest.skip("no shipped model")
    from enrich.embed.api import embed_sources

    summary = embed_sources([source], tmp_path / "ws", model_from=SHIPPED / ws, progress=False)
    assert summary.model_source == str(SHIPPED / ws)


def test_shipped_models_stay_small() -> None:
    files = [p for p in SHIPPED.rglob("*") if p.is_file()] if SHIPPED.exists() else []
    assert sum(p.stat().st_size for p in files) < 12 * 2**20


# -- smaller items -----------------------------------------------------------------------------
def test_plot_cdf_through_the_package_in_any_import_order() -> None:
    code = (
        "import numpy as np\n"
        "from enrich.redundancy import RedundancyResult\n"  # the submodule first
        "import enrich\n"
        "X = np.random.default_rng(0).normal(size=(30, 4))\n"
        "r = enrich.redundancy(X)\n"
        "assert isinstance(r, RedundancyResult)\n"
        "fig = enrich.redundancy.plot_cdf({'a': r, 'b': r.max_similarity})\n"
        "print(type(fig).__name__, len(fig.axes[0].get_lines()))\n"
    )
    for prefix in ("", "import enrich\nenrich.redundancy\n"):  # and the function first
        done = subprocess.run(
            [sys.executable, "-c", prefix + code],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg", "PATH": ""},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[0] == "Figure"


def test_dir_lists_the_public_names() -> None:
    import enrich

    names = [n for n in dir(enrich) if not n.startswith("_")]
    assert names == sorted(n for n in enrich.__all__ if not n.startswith("_"))
    for name in names:
        getattr(enrich, name)


def test_rank_help_does_not_load_numba() -> None:
    """`enrich rank --help` lists every registered strategy without loading numba."""
    check = (
        "import sys, argparse\n"
        "from enrich.cli import rank\n"
        "p = argparse.ArgumentParser(); rank.add_arguments(p); text = p.format_help()\n"
        "from enrich.select import SELECTORS\n"
        "print('numba' in sys.modules, all(name in text for name in SELECTORS))\n"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": ""}
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "False True"


def test_the_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import enrich

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## In five lines\n+```python\n(.*?)```", readme, re.S)
    assert block is not None
    X = np.random.default_rng(0).normal(size=(80, 6)).astype(np.float32)
    (tmp_path / "ws").mkdir()
    ids = np.array([f"im{i}" for i in range(80)])
    enrich.save_embeddings(tmp_path / "ws" / "embeddings.npz", enrich.Embeddings(ids, X))
    monkeypatch.chdir(tmp_path)
    exec(compile(block.group(1), "README.md", "exec"), {})


def test_install_hints_use_the_distribution_name() -> None:
    import tomllib

    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert name == "enrich-imaging"
    texts = [ROOT / "README.md", *sorted((ROOT / "src").rglob("*.py"))]
    for path in texts:
        text = path.read_text(encoding="utf-8")
        assert "pip install 'enrich[" not in text, path
        assert "enrich[" not in text.replace(f"{name}[", ""), path
    msg = str(MissingExtraError("torch", "torch"))
    assert "download.pytorch.org/whl/cpu" in msg and "enrich-imaging[torch]" in msg
    assert "pip install 'enrich-imaging[dicom]'" in str(MissingExtraError("pydicom", "dicom"))


@torch_missing
def test_benchmark_threads_are_set_and_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("monai")
    import torch

    from test_cli_benchmark import make_workspace

    ws = make_workspace(tmp_path)
    before = torch.get_num_threads()
    try:
        rc = main(
            ["benchmark", "-w", str(ws), "--no-report", "--threads", "1", "--out",
             str(tmp_path / "run"), "--set", "initializations=1", "--set", "models=1",
             "--set", "sizes=[0.3]", "--set", "initial=0.2", "--set", "full=false",
             "--set", "model.input_size=16", "--set", "model.block_inplanes=[4,8,8,8]",
             "--set", "train.epochs=1", "--set", "train.min_steps=0"]
        )  # fmt: skip
        assert rc == 0, capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
    err = capsys.readouterr().err
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["threads"] == 1 and meta["config"]["train"]["threads"] == 1
    # Not a terminal: plain progress lines, ending with the count of models.
    assert "benchmark: 2/2 models, done" in err and "\r" not in err
