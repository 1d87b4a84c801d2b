"""β-VAE training checkpoints every epoch and resumes after Ctrl-C, SIGTERM or a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from enrich.embed import train as train_mod  # noqa: E402
from enrich.embed.train import train_betavae  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


@pytest.fixture(scope="module")
def xray() -> np.ndarray:
    from enrich.preprocess import resize

    with np.load(DATA) as data:
        raw = data["train_images"][::40][:60].astype(np.float32) / 255.0
    return np.stack([resize(im, 64) for im in raw]).clip(0, 1).astype(np.float32)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


OPTS = {
    "latent_dim": 4,
    "max_epochs": 5,
    "patience": 50,
    "min_epoch_images": 0,
    "device": "cpu",
    "progress": False,
    "seed": 3,
}


def _weights(model: torch.nn.Module) -> list[np.ndarray]:
    return [v.detach().numpy().copy() for v in model.state_dict().values()]


def test_an_interrupted_training_resumes_to_the_same_model(
    xray: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, ref_result = train_betavae(xray, **OPTS)
    ckpt = tmp_path / "ckpt.pt"
    real_write = train_mod._write_checkpoint
    writes: list[int] = []

    def write_then_interrupt(path: str, state: dict) -> None:
        real_write(path, state)
        writes.append(len(state["history"]))
        if len(writes) == 2:
            raise KeyboardInterrupt  # Ctrl-C right after epoch 2 was saved

    monkeypatch.setattr(train_mod, "_write_checkpoint", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_betavae(xray, checkpoint=ckpt, **OPTS)
    assert ckpt.is_file() and writes == [1, 2]
    monkeypatch.setattr(train_mod, "_write_checkpoint", real_write)

    resumed, result = train_betavae(xray, checkpoint=ckpt, **OPTS)
    assert result.resumed_from_epoch == 2
    assert result.epochs == ref_result.epochs == 5
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    for a, b in zip(_weights(resumed), _weights(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not ckpt.exists()  # training ended: the checkpoint is gone


def test_a_checkpoint_of_other_images_or_options_is_not_resumed(
    xray: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    ckpt = tmp_path / "ckpt.pt"
    real_write = train_mod._write_checkpoint

    def write_then_interrupt(path: str, state: dict) -> None:
        real_write(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "_write_checkpoint", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train_betavae(xray, checkpoint=ckpt, **OPTS)
    monkeypatch.setattr(train_mod, "_write_checkpoint", real_write)
    _, result = train_betavae(xray, checkpoint=ckpt, **{**OPTS, "seed": 4, "max_epochs": 1})
    assert result.resumed_from_epoch == 0
    assert "training from scratch" in capsys.readouterr().err
    ckpt.write_bytes(b"not a checkpoint")  # a torn file: ignored, not a crash
    _, result = train_betavae(xray, checkpoint=ckpt, **{**OPTS, "max_epochs": 1})
    assert result.resumed_from_epoch == 0 and result.epochs == 1


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_killed_embed_resumes_when_run_again(tmp_path: Path, sig: signal.Signals) -> None:
    """A real `enrich embed` process, stopped by a signal mid-training, then run again."""
    images = tmp_path / "images.npz"
    with np.load(DATA) as data:
        np.savez(images, train_images=data["train_images"][:60])
    ws = tmp_path / "ws"
    argv = [
        sys.executable,
        "-m",
        "enrich",
        "embed",
        str(images),
        "-w",
        str(ws),
        "--latent-dim",
        "8",
        "--patience",
        "500",
        "--epoch-images",
        "0",
        "--threads",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # 500 epochs: the signal surely lands mid-training; the rerun (checkpoints are keyed on
    # the images and training options, not on when to stop) then ends after epoch 3.
    proc = subprocess.Popen(
        [*argv, "--epochs", "500"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    ckpt = ws / "model" / "training-checkpoint.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ckpt.exists(), proc.communicate()[1].decode()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in err.decode()
    assert "run the same command again to resume" in err.decode()
    assert ckpt.exists() and not (ws / "embeddings.npz").exists()

    done = subprocess.run(
        [*argv, "--epochs", "3"], env=env, capture_output=True, timeout=600, check=True
    )
    assert "resuming from epoch" in done.stderr.decode()
    import json

    fit = json.loads((ws / "model" / "config.json").read_text())["fit"]
    assert fit["resumed_from_epoch"] >= 1
    assert fit["epochs"] == max(3, fit["resumed_from_epoch"])
    assert fit["threads"] == 1
    assert (ws / "embeddings.npz").exists() and not ckpt.exists()
