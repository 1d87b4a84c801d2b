"""The ``betavae`` embedder: the paper's β-VAE, the embedding being the latent mean.

This module imports torch only when a model is fitted, loaded or used, so the registry
(and ``enrich embed --embedder pixels``) works without torch installed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich._atomic import atomic_path
from enrich.embed.base import Embedder
from enrich.errors import EnrichError, MissingExtraError

if TYPE_CHECKING:
    from enrich.embed.betavae import BetaVAE

__all__ = ["BetaVAEEmbedder"]

WEIGHTS_FILE = "betavae.pt"


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingExtraError("torch", "torch") from None


class BetaVAEEmbedder(Embedder):
    """β-VAE embeddings (Burgess et al. 2018): the posterior mean of a 64×64 image.

    Parameters
    ----------
    latent_dim : int
        Embedding length (the paper: 128).
    beta : float
        Weight of the KL term.
    likelihood : {"gaussian", "bernoulli"}
        Reconstruction term. "gaussian" (default) is a decoder with a calibrated shared
        variance; "bernoulli" (binary cross-entropy) collapses the latent code on grayscale
        medical images at β = 4 (see :mod:`enrich.embed.betavae`).
    seed : int
        Initial weights, validation split, batch order and noise; same seed → same
        embeddings on CPU.
    max_epochs, patience : int
        Early stopping on the held-out validation loss.
    min_epoch_images : int
        An epoch is at least this many images, or 8 passes over a smaller set, so small
        datasets get enough gradient steps before early stopping can end training.
    val_fraction, batch_size, lr : float, int, float
        Training options (see :func:`enrich.embed.train.train_betavae`).
    max_seconds : float, optional
        Wall-clock cap on training.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``. Not part of the model's
        identity: a model trained on GPU is reused on CPU.
    progress : bool
        Show training progress on stderr (a bar on a terminal, plain lines in a log).
    checkpoint : str, optional
        Save the training state here every epoch and resume an interrupted training from it
        (see :func:`enrich.embed.train.train_betavae`). Not part of the model's identity.

    Examples
    --------
    >>> X = np.random.default_rng(0).random((20, 64, 64), dtype=np.float32)
    >>> emb = BetaVAEEmbedder(latent_dim=8, max_epochs=1, progress=False).fit(X)
    >>> emb.transform(X[:2]).shape
    (2, 8)
    """

    name = "betavae"

    def __init__(
        self,
        *,
        latent_dim: int = 128,
        beta: float = 4.0,
        likelihood: str = "gaussian",
        seed: int = 0,
        max_epochs: int = 100,
        patience: int = 5,
        min_epoch_images: int = 4096,
        val_fraction: float = 0.1,
        batch_size: int = 64,
        lr: float = 1e-3,
        max_seconds: float | None = None,
        device: str = "auto",
        progress: bool = True,
        encode_batch_size: int = 64,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.latent_dim = latent_dim
        self.beta = beta
        self.likelihood = likelihood
        self.max_epochs = max_epochs
        self.patience = patience
        self.min_epoch_images = min_epoch_images
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.lr = lr
        self.max_seconds = max_seconds
        self.device = device
        self.progress = progress
        self.encode_batch_size = encode_batch_size
        self.checkpoint = checkpoint
        self.model_: BetaVAE | None = None
        self._device: Any = None  # torch.device used for encoding, resolved lazily

    def params(self) -> dict[str, Any]:
        # The options that change the model. device/progress/batch sizes for encoding do not.
        return {
            "latent_dim": self.latent_dim,
            "beta": self.beta,
            "likelihood": self.likelihood,
            "seed": self.seed,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "min_epoch_images": self.min_epoch_images,
            "val_fraction": self.val_fraction,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "max_seconds": self.max_seconds,
        }

    @property
    def dim(self) -> int:
        return int(self.latent_dim)

    def _fit(self, images: np.ndarray) -> None:
        _require_torch()
        from enrich.embed.train import train_betavae

        if self.latent_dim < 1:
            raise EnrichError(f"latent_dim={self.latent_dim}: expected a positive integer")
        if not self.beta >= 0:
            raise EnrichError(f"beta={self.beta}: expected a number >= 0")
        model, result = train_betavae(
            images,
            latent_dim=self.latent_dim,
            beta=self.beta,
            likelihood=self.likelihood,
            seed=self.seed,
            val_fraction=self.val_fraction,
            batch_size=self.batch_size,
            lr=self.lr,
            max_epochs=self.max_epochs,
            patience=self.patience,
            min_epoch_images=self.min_epoch_images,
            max_seconds=self.max_seconds,
            device=self.device,
            progress=self.progress,
            checkpoint=self.checkpoint,
        )
        self._set_model(model)
        self.fit_info_ = {"n_train": len(images), **result.to_dict()}  # n_train = n_fit + n_val

    def _set_model(self, model: BetaVAE) -> None:
        import torch

        from enrich.embed.train import resolve_device

        self._device = resolve_device(self.device)
        model = model.to(self._device).eval()
        if self._device.type == "cpu":
            # Small convolutions run about twice as fast channels-last on CPU.
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model_ = model

    def _transform(self, images: np.ndarray) -> np.ndarray:
        from enrich.embed.train import encode

        assert self.model_ is not None
        return encode(self.model_, images, device=self._device, batch_size=self.encode_batch_size)

    def _save_weights(self, folder: Path) -> None:
        import torch

        assert self.model_ is not None
        state = {k: v.detach().cpu().contiguous() for k, v in self.model_.state_dict().items()}
        with atomic_path(folder / WEIGHTS_FILE, suffix=".pt") as tmp:
            torch.save(state, tmp)

    def _load_weights(self, folder: Path) -> None:
        _require_torch()
        import torch

        from enrich.embed.betavae import BetaVAE

        path = folder / WEIGHTS_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model = BetaVAE(self.latent_dim)
            model.load_state_dict(state)
        except (
            OSError,
            RuntimeError,
            KeyError,
            EOFError,
            ValueError,
            pickle.UnpicklingError,
        ) as exc:
            raise EnrichError(f"{path}: cannot read the β-VAE weights ({exc})") from None
        self._set_model(model)
