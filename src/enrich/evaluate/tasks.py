"""Train one model on one subset and score it on the test set (MONAI networks, torch).

- classification: MONAI's 2-D ``ResNet`` (basic blocks, 1 input channel), cross-entropy,
  no augmentation (as in the paper); metric ROC AUC (binary, or one-vs-rest macro);
- segmentation: MONAI's 2-D ``UNet``, Dice + cross-entropy, random flips and small affine
  transforms; metric mean Jaccard over the foreground classes.

Both use Adam, optional early stopping on the validation loss (the best weights are kept),
and fail loudly on divergence: a non-finite loss raises :class:`Diverged`, which the protocol
records as a failed model.

Examples
--------
>>> import numpy as np
>>> from enrich.evaluate.config import protocol_config
>>> cfg = protocol_config({"model": {"input_size": 16, "block_inplanes": [4, 8, 8, 8],
...     "layers": [1, 1, 1, 1]}, "train": {"epochs": 1, "patience": None, "batch_size": 8}})
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(32, 16, 16)).astype(np.float32); y = np.arange(32) % 2
>>> r = train_and_score(cfg, x, y, None, None, x, y, n_classes=2, seed=0, device="cpu")
>>> 0.0 <= r.value <= 1.0
True
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from enrich.errors import EnrichError, MissingExtraError
from enrich.evaluate.config import ModelConfig, ProtocolConfig
from enrich.evaluate.metrics import jaccard_counts, macro_auc, mean_jaccard

if TYPE_CHECKING:
    import torch

__all__ = [
    "MODELS",
    "Diverged",
    "TrainResult",
    "build_model",
    "deterministic",
    "resolve_device",
    "train_and_score",
]


class Diverged(RuntimeError):
    """Training produced a non-finite loss or non-finite predictions."""


@dataclass(frozen=True)
class TrainResult:
    """One trained model's test score and how training went.

    Attributes
    ----------
    value : float
        Test AUC (classification) or mean foreground Jaccard (segmentation).
    epochs : int
        Epochs run (fewer than configured when early stopping fired).
    best_epoch : int
        The epoch whose weights were kept (1-based; the last one without early stopping).
    train_loss : float
        Mean training loss over the last epoch.
    val_loss : float
        Validation loss of the kept weights (NaN without a validation set).
    """

    value: float
    epochs: int
    best_epoch: int
    train_loss: float
    val_loss: float


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise MissingExtraError("torch", "torch") from None
    return torch


def resolve_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU errors."""
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EnrichError(f"--device {device}: no CUDA GPU is visible to torch; use cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise EnrichError(f"--device {device!r}: expected cpu, cuda or auto")
    return device


@contextmanager
def deterministic(threads: int = 1) -> Iterator[None]:
    """Run torch with `threads` intra-op threads and deterministic algorithms, then restore.

    A model's float reductions (convolution gradients, batch norm) are summed in an order
    that depends on the thread count, and ~1e-5 differences in a validation loss move early
    stopping to another epoch: so every model trains with the same, fixed thread count
    whatever the process it runs in. ``torch.use_deterministic_algorithms`` (warn-only: a
    few CUDA kernels, e.g. adaptive average pooling's backward, have no deterministic
    version) and cuDNN's deterministic mode cover the GPU; on a GPU, cuBLAS also needs
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before CUDA starts (the benchmark runner sets it).

    >>> import torch
    >>> with deterministic(1):
    ...     torch.get_num_threads()
    1
    """
    torch = _torch()
    before = (
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.set_num_threads(max(1, int(threads)))
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deterministic implementation.*")
            yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])
        torch.backends.cudnn.deterministic = before[3]
        torch.backends.cudnn.benchmark = before[4]


def _resnet(cfg: ModelConfig, n_classes: int, task: str) -> torch.nn.Module:
    from monai.networks.nets import ResNet

    if task != "classification":
        raise EnrichError(f"model.name=resnet is a classifier; task {task!r} needs unet")
    if len(cfg.block_inplanes) != 4 or len(cfg.layers) != 4:
        raise EnrichError(
            f"model.block_inplanes={list(cfg.block_inplanes)} and model.layers="
            f"{list(cfg.layers)}: expected 4 values each (one per ResNet stage)"
        )
    return ResNet(
        block="basic",
        layers=list(cfg.layers),
        block_inplanes=list(cfg.block_inplanes),
        spatial_dims=2,
        n_input_channels=1,
        conv1_t_stride=cfg.conv1_stride,
        num_classes=n_classes,
    )


def _unet(cfg: ModelConfig, n_classes: int, task: str) -> torch.nn.Module:
    from monai.networks.nets import UNet

    if task != "segmentation":
        raise EnrichError(f"model.name=unet is a segmenter; task {task!r} needs resnet")
    if len(cfg.strides) != len(cfg.channels) - 1:
        raise EnrichError(
            f"model.strides={list(cfg.strides)} needs one value fewer than "
            f"model.channels={list(cfg.channels)}"
        )
    factor = int(np.prod(cfg.strides))
    if cfg.input_size % factor:
        raise EnrichError(
            f"model.input_size={cfg.input_size} must be divisible by {factor} (the product of "
            "model.strides) for the U-Net"
        )
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=n_classes,
        channels=list(cfg.channels),
        strides=list(cfg.strides),
        num_res_units=cfg.num_res_units,
    )


#: model name -> builder ``(model_config, n_classes, task) -> torch.nn.Module``.
MODELS: dict[str, Callable[[ModelConfig, int, str], Any]] = {"resnet": _resnet, "unet": _unet}


def build_model(cfg: ModelConfig, n_classes: int, task: str) -> torch.nn.Module:
    """The configured network, from :data:`MODELS`."""
    _torch()
    if cfg.name not in MODELS:
        raise EnrichError(f"model.name={cfg.name!r}: expected one of {', '.join(MODELS)}")
    return MODELS[cfg.name](cfg, n_classes, task)


def _augment(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip, rotation ±10°, scale 0.9–1.1, shift ±5%; masks nearest.

    x : (B, 1, H, W) float; y : (B, 1, H, W) float class indices.
    """
    torch = _torch()
    import torch.nn.functional as F

    b = x.shape[0]
    u = torch.rand((b, 5), generator=gen).to(x.device)
    flip = torch.where(u[:, 0] < 0.5, -1.0, 1.0)
    angle = (u[:, 1] - 0.5) * (2 * math.pi / 18)
    scale = 0.9 + 0.2 * u[:, 2]
    tx, ty = (u[:, 3] - 0.5) * 0.1, (u[:, 4] - 0.5) * 0.1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = F.grid_sample(y, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return x, y


def _batches(n: int, batch_size: int, perm: torch.Tensor) -> list[torch.Tensor]:
    """Index batches over a permutation; a trailing batch of 1 joins the previous one
    (BatchNorm cannot train on a single image)."""
    out = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(out) > 1 and len(out[-1]) == 1:
        torch = _torch()
        out[-2] = torch.cat([out[-2], out[-1]])
        out.pop()
    return out


def train_and_score(
    cfg: ProtocolConfig,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    n_classes: int,
    seed: int,
    device: str = "cpu",
) -> TrainResult:
    """Train one model from scratch and score it on the test set.

    Parameters
    ----------
    cfg : ProtocolConfig
        Task, model and training settings.
    train_x : ndarray of shape (n_train, H, W), float32
        Normalised training images at the model's input size.
    train_y : ndarray of shape (n_train,) int (classification) or (n_train, H, W) int (masks)
    val_x, val_y : like ``train_x``/``train_y`` or None
        Validation set for early stopping (ignored when ``cfg.train.patience`` is None).
    test_x, test_y : like ``train_x``/``train_y``
    n_classes : int
        Classes (segmentation: including background).
    seed : int
        Seeds weight initialisation, batch order and augmentation. Global RNG state is
        saved and restored around the model's construction.
    device : str
        ``cpu`` or ``cuda[:k]``.

    Raises
    ------
    Diverged
        On a non-finite training loss or non-finite test predictions.

    Notes
    -----
    The model trains with ``cfg.train.threads`` torch threads and deterministic algorithms
    (:func:`deterministic`), so the same seed gives the same result in any process, whatever
    its own thread settings.
    """
    with deterministic(cfg.train.threads):
        return _train_and_score(
            cfg,
            train_x,
            train_y,
            val_x,
            val_y,
            test_x,
            test_y,
            n_classes=n_classes,
            seed=seed,
            device=device,
        )


def _train_and_score(
    cfg: ProtocolConfig,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    n_classes: int,
    seed: int,
    device: str,
) -> TrainResult:
    torch = _torch()
    import torch.nn.functional as F

    task = cfg.task
    tc = cfg.train
    dev = torch.device(device)
    fork_devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model = build_model(cfg.model, n_classes, task).to(dev)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    if task == "segmentation":
        from monai.losses import DiceCELoss

        seg_loss = DiceCELoss(to_onehot_y=True, softmax=True)

        def loss_fn(out: Any, y: Any) -> Any:
            return seg_loss(out, y.unsqueeze(1))

    else:

        def loss_fn(out: Any, y: Any) -> Any:
            return F.cross_entropy(out, y)

    xt = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32)).unsqueeze(1)
    yt = torch.from_numpy(np.ascontiguousarray(train_y).astype(np.int64))
    if dev.type == "cuda":
        # The subset fits on the GPU (46k images at 80×80 are 1.2 GB): copy it once.
        xt, yt = xt.to(dev), yt.to(dev)
    n = len(xt)
    if n < 2:
        raise EnrichError(f"cannot train on {n} image(s); need at least 2")
    steps_per_epoch = len(_batches(n, tc.batch_size, torch.arange(n)))
    epochs = tc.epochs
    if tc.min_steps:
        epochs = max(epochs, math.ceil(tc.min_steps / steps_per_epoch))
    use_val = tc.patience is not None and val_x is not None and len(val_x) > 0
    augment = cfg.augment

    best_state: dict[str, Any] | None = None
    best_val = math.inf
    best_epoch = 0
    bad_epochs = 0
    train_loss = math.nan
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for step, idx in enumerate(_batches(n, tc.batch_size, perm)):
            idx = idx.to(xt.device)
            xb, yb = xt[idx], yt[idx]
            if augment:
                if task == "segmentation":
                    xb, yf = _augment(xb, yb.unsqueeze(1).float(), gen)
                    yb = yf.squeeze(1).round().long()
                else:
                    xb, _ = _augment(xb, xb, gen)
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            if not torch.isfinite(loss):
                raise Diverged(f"loss became {loss.item()} at epoch {epoch}, step {step + 1}")
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        train_loss = total / max(count, 1)
        if use_val:
            assert val_x is not None and val_y is not None
            vloss = _eval_loss(model, loss_fn, val_x, val_y, tc.batch_size, dev)
            if vloss < best_val:
                best_val, best_epoch, bad_epochs = vloss, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_epochs += 1
                if tc.patience is not None and bad_epochs >= tc.patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epoch
    value = _score(
        model, test_x, test_y, task=task, n_classes=n_classes, batch_size=tc.batch_size, dev=dev
    )
    return TrainResult(
        value=value,
        epochs=epoch,
        best_epoch=best_epoch,
        train_loss=train_loss,
        val_loss=best_val if use_val else math.nan,
    )


def _predict(model: Any, x: np.ndarray, batch_size: int, dev: Any) -> Any:
    """Yield (start, logits) over ``x`` in eval mode."""
    torch = _torch()
    model.eval()
    bs = max(batch_size, 64)
    with torch.no_grad():
        for i in range(0, len(x), bs):
            # a copy: `x` may be a read-only memory map (parallel workers)
            xb = torch.from_numpy(np.array(x[i : i + bs], dtype=np.float32))
            yield i, model(xb.unsqueeze(1).to(dev)).float()


def _eval_loss(model: Any, loss_fn: Any, x: np.ndarray, y: np.ndarray, bs: int, dev: Any) -> float:
    torch = _torch()
    total = 0.0
    for i, out in _predict(model, x, bs, dev):
        yb = torch.from_numpy(np.ascontiguousarray(y[i : i + len(out)]).astype(np.int64)).to(dev)
        total += float(loss_fn(out, yb)) * len(out)
    loss = total / max(len(x), 1)
    if not math.isfinite(loss):
        raise Diverged(f"validation loss became {loss}")
    return loss


def _score(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    n_classes: int,
    batch_size: int,
    dev: Any,
) -> float:
    torch = _torch()
    if task == "classification":
        probs = []
        for _, out in _predict(model, x, batch_size, dev):
            probs.append(torch.softmax(out, dim=1).cpu().numpy())
        p = np.concatenate(probs)
        if not np.isfinite(p).all():
            raise Diverged("the model's test predictions are not finite")
        return macro_auc(np.asarray(y), p)
    counts = np.zeros((n_classes, 2), dtype=np.int64)
    for i, out in _predict(model, x, batch_size, dev):
        if not torch.isfinite(out).all():
            raise Diverged("the model's test predictions are not finite")
        pred = out.argmax(1).cpu().numpy()
        counts += jaccard_counts(pred, y[i : i + len(out)], n_classes)
    return mean_jaccard(counts)
