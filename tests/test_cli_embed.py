"""``enrich embed``, in-process: a folder of real PNGs → workspace → rank → redundancy."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enrich.cli import main
from enrich.workspace import Workspace

DATA = Path(__file__).resolve().parents[1] / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 real chest X-rays as PNGs in two sub-folders, plus one corrupt PNG."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pngs")
    with np.load(DATA) as data:
        images = data["train_images"][::70][:60]
    for k, im in enumerate(images):
        sub = root / ("normal" if k % 2 else "other")
        sub.mkdir(exist_ok=True)
        Image.fromarray(im).save(sub / f"x{k:03d}.png")
    (root / "other" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("error: ")
    return lines[0]


def test_embed_pixels_writes_a_workspace(
    png_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    rc = main(
        [
            "embed",
            str(png_folder),
            "--workspace",
            str(ws),
            "--embedder",
            "pixels",
            "--latent-dim",
            "12",
            "--seed",
            "3",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("embedded 60 images (60 new, 1 skipped → ")
    assert str(ws / "skipped.csv") in lines[0] and str(ws / "embeddings.npz") in lines[0]
    w = Workspace.open(ws)
    emb = w.embeddings()
    assert emb.vectors.shape == (60, 12)
    assert set(emb.ids) == {f"{'normal' if k % 2 else 'other'}/x{k:03d}.png" for k in range(60)}
    assert w.skipped()["source_path"].str.endswith("broken.png").tolist() == [True]
    config = json.loads((w.model_dir / "config.json").read_text())
    assert config["embedder"] == "pixels" and config["params"]["seed"] == 3
    assert config["data_fingerprint"].startswith("sha256:")
    assert config["pipeline"]["preprocess"]["crop"] == "center"

    # Run again on the same folder: the model is reused and nothing is embedded again.
    rc = main(
        [
            "embed",
            str(png_folder),
            "-w",
            str(ws),
            "--embedder",
            "pixels",
            "--latent-dim",
            "12",
            "--seed",
            "3",
        ]
    )
    out, _ = capsys.readouterr()
    assert rc == 0 and "(0 new, 1 skipped" in out and "reused model" in out


@pytest.mark.slow
def test_folder_to_embed_to_rank_to_redundancy(
    png_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ws = tmp_path / "ws"
        rc = main(
            [
                "embed",
                str(png_folder),
                "--workspace",
                str(ws),
                "--epochs",
                "2",
                "--epoch-images",
                "80",
                "--latent-dim",
                "16",
                "--max-train",
                "40",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        out, err = capsys.readouterr()
    finally:
        torch.set_num_threads(threads)
    assert rc == 0, err
    assert "with betavae (trained on 40, d=16)" in out
    w = Workspace.open(ws)
    assert w.embeddings().vectors.shape == (60, 16)
    assert (w.model_dir / "betavae.pt").is_file()
    fit = json.loads((w.model_dir / "config.json").read_text())["fit"]
    assert fit["n_train"] == 40 and fit["epochs"] == 2
    assert json.loads((w.model_dir / "config.json").read_text())["params"]["min_epoch_images"] == 80

    if importlib.util.find_spec("enrich.cli.rank") is None:
        pytest.skip("enrich rank is not there yet")
    labeled = tmp_path / "labeled.txt"
    last = w.manifest().iloc[-1]
    assert last["id"].startswith("other/")
    labeled.write_text(f"{last['source_path']}\nnormal/x001.png\n")  # a path and an id
    order_csv = tmp_path / "order.csv"
    rc = main(["rank", "--workspace", str(ws), "--labeled", str(labeled), "-o", str(order_csv)])
    _, err = capsys.readouterr()
    assert rc == 0, err
    order = pd.read_csv(order_csv)
    assert len(order) == 60 and sorted(order["id"]) == sorted(w.manifest()["id"])
    assert {"path", "patient_id", "clip_id"} <= set(order.columns)
    assert set(order["id"][:2]) == {last["id"], "normal/x001.png"}
    assert order["path"].iloc[0].startswith(str(png_folder))

    if importlib.util.find_spec("enrich.cli.redundancy") is None:
        pytest.skip("enrich redundancy is not there yet")
    rc = main(["redundancy", "--workspace", str(ws), "--out", str(tmp_path / "red")])
    _, err = capsys.readouterr()
    assert rc == 0, err
    assert any((tmp_path / "red").iterdir())


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["{missing}"], "does not exist"),
        (["{empty}"], "no images found"),
        (["{pngs}", "--latent-dim", "0"], "--latent-dim 0: expected an integer >= 1"),
        (["{pngs}", "--max-train", "1"], "--max-train 1: expected an integer >= 2"),
        (["{pngs}", "--beta", "-1"], "--beta -1.0: expected a number >= 0"),
        (["{pngs}", "--lr", "0"], "--lr 0.0: expected a number > 0"),
        (["{pngs}", "--epoch-images", "-1"], "--epoch-images -1: expected an integer >= 0"),
        (["{pngs}", "--workspace", "{pngs}"], "non-empty folder that is not an enrich workspace"),
    ],
)
def test_embed_errors_are_one_line(
    argv: list[str],
    match: str,
    png_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "empty").mkdir()
    fill = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "pngs": png_folder}
    args = [a.format(**fill) for a in argv]
    if "--workspace" not in args:
        args += ["--workspace", str(tmp_path / "ws")]
    rc = main(["embed", *args, "--embedder", "pixels"])
    _, err = capsys.readouterr()
    assert rc == 2
    assert match in one_error_line(err)
    assert not (tmp_path / "ws").exists()


def test_cuda_without_a_gpu_is_one_line(
    png_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    rc = main(["embed", str(png_folder), "-w", str(tmp_path / "ws"), "--device", "cuda"])
    assert rc == 2
    assert "CUDA is not available" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "ws").exists()


def test_embed_help_lists_the_embedders(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["embed", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "{betavae,pixels}" in out and "--workspace" in out and "--oct-white-edge" in out
