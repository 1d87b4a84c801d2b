"""Training the β-VAE: a held-out split, early stopping on validation loss, progress, resume.

Progress goes to stderr: a bar on a terminal, plain lines every few seconds in a log
(:class:`enrich._progress.Progress`), so a long training shows life even inside an epoch.

With ``checkpoint=PATH`` the whole training state (weights, optimizer, best epoch so far,
history, the random generators' states) is written atomically at the end of every epoch. A
run stopped by Ctrl-C, SIGTERM or a crash leaves the last complete epoch there, and calling
again with the same data and options resumes from it, giving the same model as a run that
was never stopped. The checkpoint is keyed on the training data and options: anything else
starts afresh. It is deleted once training ends.

Everything random (initial weights, the validation split, the batch order, the
reparameterisation noise) comes from the one ``seed``, through ``torch.Generator`` and
``np.random.default_rng``; torch's global random state is never touched. On CPU the same
seed gives the same weights, so the same embeddings.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from enrich._atomic import atomic_path
from enrich._progress import Progress
from enrich.embed.betavae import LIKELIHOODS, BetaVAE, betavae_loss
from enrich.errors import EnrichError

__all__ = ["TrainResult", "encode", "resolve_device", "train_betavae"]

# Most passes over the training set in one epoch (see `min_epoch_images`).
_MAX_PASSES = 8


@dataclass
class TrainResult:
    """What happened during training (saved in ``model/config.json`` under ``fit``)."""

    epochs: int
    best_epoch: int
    best_val_loss: float
    stopped: str  # "early_stopping", "max_epochs" or "time_limit"
    seconds: float  # this call's training time, plus the interrupted runs' it resumed from
    device: str
    n_fit: int  # images the gradient steps saw
    n_val: int  # held-out images for early stopping
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0  # the epochs a checkpoint supplied (0: trained from scratch)
    threads: int = 0  # torch intra-op threads during training

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EnrichError(f"device={name!r}: CUDA is not available here; use 'cpu' or 'auto'")
    try:
        return torch.device(name)
    except RuntimeError:
        raise EnrichError(f"device={name!r}: expected 'auto', 'cpu' or 'cuda'") from None


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def train_betavae(
    images: np.ndarray,
    *,
    latent_dim: int = 128,
    beta: float = 4.0,
    likelihood: str = "gaussian",
    seed: int = 0,
    val_fraction: float = 0.1,
    batch_size: int = 64,
    lr: float = 1e-3,
    max_epochs: int = 100,
    patience: int = 5,
    min_delta: float = 1e-3,
    min_epoch_images: int = 4096,
    max_seconds: float | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
) -> tuple[BetaVAE, TrainResult]:
    """Train a :class:`BetaVAE` with early stopping on a held-out split.

    Parameters
    ----------
    images : ndarray of shape (n_images, 64, 64)
        float32 in [0, 1]; at least 2 images (one is held out).
    latent_dim, beta : int, float
        Latent size and KL weight.
    likelihood : {"gaussian", "bernoulli"}
        The reconstruction term (:func:`enrich.embed.betavae.betavae_loss`).
    seed : int
        Decides the initial weights, the validation split, batch order and sampling noise.
    val_fraction : float
        Share of images held out for early stopping (at least one image).
    batch_size, lr : int, float
        Adam mini-batch size and learning rate. Burgess et al. used 64 and 5e-4; at 5e-4 the
        5,000-image PneumoniaMNIST run was still improving after 100 epochs (333 s on 2 CPU
        cores), while 1e-3 reached early stopping in 59 epochs (197 s) with a similar code.
    max_epochs, patience, min_delta : int, int, float
        Stop after ``patience`` epochs without a relative improvement of ``min_delta`` in
        validation loss, or after ``max_epochs``.
    min_epoch_images : int
        An epoch is at least this many images, or 8 passes over a smaller training set (each
        pass freshly shuffled). Then a 900-image dataset gets as many gradient steps between
        early-stopping checks as a 5,000-image one, instead of being stopped after a few
        hundred steps, before its latent code has formed; a 100-frame clip is not passed over
        forty times per epoch.
    max_seconds : float, optional
        Also stop once training has run this long.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    progress : bool
        Show progress on stderr: a bar on a terminal, plain lines in a log.
    checkpoint : path, optional
        Write the training state here after every epoch, and resume from it when it holds
        an earlier, interrupted call on the same images with the same options. Deleted when
        training ends.

    Returns
    -------
    model : BetaVAE
        In eval mode, on CPU, with the weights of the best validation epoch.
    result : TrainResult
    """
    images = np.ascontiguousarray(images, dtype=np.float32)
    n = len(images)
    if n < 2:
        raise EnrichError(f"{n} training image(s): the β-VAE needs at least 2 (one is held out)")
    if likelihood not in LIKELIHOODS:
        raise EnrichError(f"likelihood={likelihood!r}: expected one of {', '.join(LIKELIHOODS)}")
    if not 0 < val_fraction < 1:
        raise EnrichError(f"val_fraction={val_fraction}: expected a number in (0, 1)")
    if max_epochs < 1 or patience < 1 or batch_size < 1:
        raise EnrichError(
            f"max_epochs={max_epochs}, patience={patience}, batch_size={batch_size}: "
            "expected positive integers"
        )
    dev = resolve_device(device)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    x_train = torch.from_numpy(images[train_idx]).unsqueeze(1).to(dev)  # (n_train, 1, 64, 64)
    x_val = torch.from_numpy(images[val_idx]).unsqueeze(1).to(dev)  # (n_val, 1, 64, 64)

    init_gen = torch.Generator().manual_seed(int(seed))
    model = BetaVAE(latent_dim, generator=init_gen).to(dev)
    if dev.type == "cpu":
        # ~15% faster steps for these small convolutions on CPU; the same seed still gives
        # the same weights. (A 1-channel batch is laid out identically either way.)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    shuffle_gen = torch.Generator().manual_seed(int(seed) + 1)
    noise_gen = _generator(dev, int(seed) + 2)

    passes = min(_MAX_PASSES, max(1, math.ceil(min_epoch_images / len(x_train))))  # per epoch
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    stopped, since_best = "max_epochs", 0
    ckpt = None if checkpoint is None else os.fspath(checkpoint)
    key = _checkpoint_key(
        images,
        latent_dim=latent_dim,
        beta=beta,
        likelihood=likelihood,
        seed=seed,
        val_fraction=val_fraction,
        batch_size=batch_size,
        lr=lr,
        min_epoch_images=min_epoch_images,
    )
    done_before, seconds_before = 0, 0.0
    state = _read_checkpoint(ckpt, key) if ckpt is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best_state = state["best_state"]
        best_loss, best_epoch = float(state["best_loss"]), int(state["best_epoch"])
        since_best, history = int(state["since_best"]), list(state["history"])
        shuffle_gen.set_state(state["shuffle_gen"])
        noise_gen.set_state(state["noise_gen"])
        done_before, seconds_before = len(history), float(state["seconds"])
    start = time.perf_counter()
    bar = Progress(max_epochs, "β-VAE", "epochs", enabled=progress, initial=done_before)
    if done_before:
        _note(progress, f"β-VAE: resuming from epoch {done_before} of an interrupted run ({ckpt})")
    epoch = done_before
    try:
        with _sigterm_as_interrupt():
            # A resumed run that had already met a stopping rule goes straight to the end.
            finished = done_before > 0 and (
                since_best >= patience
                or (max_seconds is not None and seconds_before >= max_seconds)
            )
            if finished:
                stopped = "early_stopping" if since_best >= patience else "time_limit"
            for epoch in range(done_before + 1, max_epochs + 1):
                if finished:
                    break
                model.train()
                order = torch.cat(
                    [torch.randperm(len(x_train), generator=shuffle_gen) for _ in range(passes)]
                ).to(dev)
                total, count = 0.0, 0
                for b in range(0, len(order), batch_size):
                    xb = x_train[order[b : b + batch_size]]
                    logits, mu, logvar = model(xb, generator=noise_gen)
                    loss, _, _ = betavae_loss(
                        logits, xb, mu, logvar, beta=beta, likelihood=likelihood
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(xb)
                    count += len(xb)
                    bar.poll(f"epoch {epoch}: {count:,}/{len(order):,} images")
                train_loss = total / count
                val_loss, val_recon, val_kl = _evaluate(
                    model,
                    x_val,
                    beta=beta,
                    likelihood=likelihood,
                    batch_size=256,
                    generator=_generator(dev, int(seed) + 3),
                )
                history.append(
                    {
                        "epoch": epoch,
                        "train_loss": train_loss,
                        "val_loss": val_loss,
                        "val_recon": val_recon,
                        "val_kl": val_kl,
                    }
                )
                threshold = min_delta * abs(best_loss if math.isfinite(best_loss) else 0)
                if val_loss < best_loss - threshold:
                    best_loss, best_epoch, since_best = val_loss, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    since_best += 1
                bar.update(
                    1, note=f"train {train_loss:.1f}, val {val_loss:.1f}, best epoch {best_epoch}"
                )
                if not math.isfinite(train_loss):
                    raise EnrichError(
                        f"β-VAE training diverged at epoch {epoch} (loss {train_loss}); "
                        "try a smaller beta or check the images are in [0, 1]"
                    )
                elapsed = seconds_before + time.perf_counter() - start
                if ckpt is not None:
                    _write_checkpoint(
                        ckpt,
                        {
                            "key": key,
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "best_state": best_state,
                            "best_loss": best_loss,
                            "best_epoch": best_epoch,
                            "since_best": since_best,
                            "history": history,
                            "shuffle_gen": shuffle_gen.get_state(),
                            "noise_gen": noise_gen.get_state(),
                            "seconds": elapsed,
                        },
                    )
                if since_best >= patience:
                    stopped = "early_stopping"
                    break
                if max_seconds is not None and elapsed >= max_seconds:
                    stopped = "time_limit"
                    break
    except KeyboardInterrupt:
        if ckpt is not None and len(history) > 0:
            _note(
                True,
                f"β-VAE training stopped during epoch {epoch}; epochs 1-{len(history)} are saved "
                f"in {ckpt}: run the same command again to resume",
            )
        raise
    finally:
        bar.close()
    model.load_state_dict(best_state)
    model = model.cpu().eval()
    result = TrainResult(
        epochs=len(history),
        best_epoch=best_epoch,
        best_val_loss=float(best_loss),
        stopped=stopped,
        seconds=round(seconds_before + time.perf_counter() - start, 3),
        device=str(dev),
        n_fit=len(train_idx),
        n_val=n_val,
        history=history,
        resumed_from_epoch=done_before,
        threads=torch.get_num_threads(),
    )
    if ckpt is not None:
        with contextlib.suppress(OSError):
            os.unlink(ckpt)
    return model, result


# -- checkpoints -------------------------------------------------------------------------------
_CHECKPOINT_VERSION = 1


def _checkpoint_key(images: np.ndarray, **options: Any) -> str:
    """What a checkpoint must match to be resumed: the images and every training option.

    ``max_epochs``, ``patience``, ``min_delta`` and ``max_seconds`` are left out: they only
    say when to stop, so a run may be resumed with a longer budget.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"v": _CHECKPOINT_VERSION, **options}, sort_keys=True).encode())
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).reshape(-1).view(np.uint8).data)
    return h.hexdigest()[:24]


def _read_checkpoint(path: str, key: str) -> dict[str, Any] | None:
    """The saved state if `path` holds a checkpoint of this training, else None."""
    if not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: start afresh, say so
        print(f"β-VAE: ignoring unreadable checkpoint {path} ({exc})", file=sys.stderr)
        return None
    if not isinstance(state, dict) or state.get("key") != key:
        print(
            f"β-VAE: {path} is a checkpoint of other images or options; training from scratch",
            file=sys.stderr,
        )
        return None
    return state


def _write_checkpoint(path: str, state: dict[str, Any]) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a job scheduler, ``timeout``) raises KeyboardInterrupt while training,
    so it stops as cleanly as Ctrl-C: the last epoch's checkpoint is complete either way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # not allowed here (e.g. an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _note(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


@torch.no_grad()
def _evaluate(
    model: BetaVAE,
    x: torch.Tensor,
    *,
    beta: float,
    likelihood: str,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[float, float, float]:
    """Mean validation loss per image: the training objective (−ELBO with β), on held-out images.

    The latent is sampled as in training, with the same noise every epoch (a freshly seeded
    `generator`), so epochs compare on equal terms. Decoding the posterior mean instead is
    not the objective: a decoder trained on noisy codes reconstructs worse from the mean
    while the posterior is still nearly the prior, and early stopping then fires on noise.
    """
    model.train()  # sampling on; the model has no dropout or batch norm
    sums = np.zeros(3)
    for b in range(0, len(x), batch_size):
        xb = x[b : b + batch_size]
        logits, mu, logvar = model(xb, generator=generator)
        loss, recon, kl = betavae_loss(logits, xb, mu, logvar, beta=beta, likelihood=likelihood)
        sums += np.array([float(loss), float(recon), float(kl)]) * len(xb)
    loss, recon, kl = (sums / len(x)).tolist()
    return loss, recon, kl


@torch.inference_mode()
def encode(
    model: BetaVAE,
    images: np.ndarray,
    *,
    device: torch.device | None = None,
    batch_size: int = 128,
) -> np.ndarray:
    """Latent means ``(n, latent_dim)`` float32 of images ``(n, 64, 64)``.

    On CPU the input is laid out channels-last, which is about twice as fast for these
    small convolutions; the result is the same up to float rounding.
    """
    dev = device if device is not None else next(model.parameters()).device
    out = np.empty((len(images), model.latent_dim), np.float32)
    for b in range(0, len(images), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(images[b : b + batch_size])).unsqueeze(1)
        if dev.type == "cpu":
            xb = xb.contiguous(memory_format=torch.channels_last)
        mu, _ = model.encode(xb.to(dev, non_blocking=True))
        out[b : b + len(xb)] = mu.float().cpu().numpy()
    return out
