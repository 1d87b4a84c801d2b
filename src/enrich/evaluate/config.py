"""The benchmark protocol's configuration: one YAML file, validated into frozen dataclasses.

A config names the task, the strategies, how many initializations and models, the subset
sizes, how to split train/test and how to train each model. The packaged configs ``quick``
and ``paper`` live in ``enrich/experiments/``; any other value is a path to a YAML file.

Sizes and the initial subset are *fractions* of the training pool when written as floats
``<= 1.0`` (``0.02``) and *counts* when written as integers (``1000``).

Examples
--------
>>> cfg = protocol_config({"task": "classification", "sizes": [0.1, 0.2], "initial": 0.05})
>>> cfg.task, cfg.sizes, cfg.metric
('classification', (0.1, 0.2), 'auc')
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enrich.errors import EnrichError

__all__ = [
    "MODEL_NAMES",
    "PACKAGED_CONFIGS",
    "ModelConfig",
    "ProtocolConfig",
    "SplitConfig",
    "TrainConfig",
    "load_config",
    "protocol_config",
]

TASKS = ("classification", "segmentation")
PACKAGED_CONFIGS = ("quick", "paper")
SECONDS_PER_IMAGE = {"classification": 3.0, "segmentation": 300.0}  # paper, Methods
#: The networks of :data:`enrich.evaluate.tasks.MODELS` (kept equal by a test; tasks imports
#: this module, so the names live here to be checked before any data is read).
MODEL_NAMES = ("resnet", "unet")


@dataclass(frozen=True)
class SplitConfig:
    """How images are split into the training pool, a validation set and the test set.

    Attributes
    ----------
    column : str
        Manifest column with ``train``/``test`` (and ``val``) values; used when it has values.
    val : str
        What to do with ``val`` rows of that column: ``validation`` (early stopping),
        ``train`` (join the pool), ``test`` (join the test set) or ``drop``.
    group_by : str
        ``auto`` (``patient_id``, else ``clip_id``, else ``subject_id``), a column name,
        or ``none`` (each image its own group; only when no ids exist).
    test_fraction, validation_fraction : float
        Share of images sent to test / validation when splitting by group ourselves.
    """

    column: str = "split"
    val: str = "validation"
    group_by: str = "auto"
    test_fraction: float = 0.2
    validation_fraction: float = 0.1


@dataclass(frozen=True)
class ModelConfig:
    """The network. ``resnet`` for classification, ``unet`` for segmentation.

    Attributes
    ----------
    name : str
        A key of :data:`enrich.evaluate.tasks.MODELS` (``resnet``, ``unet``).
    input_size : int
        Images are resized to ``input_size × input_size`` (the paper: 80 for classification).
    block_inplanes, layers, conv1_stride : ResNet widths, blocks per stage, stem stride.
    channels, strides, num_res_units : U-Net widths, down-sampling strides, residual units.
    """

    name: str = "resnet"
    input_size: int = 80
    block_inplanes: tuple[int, ...] = (64, 128, 256, 512)
    layers: tuple[int, ...] = (2, 2, 2, 2)
    conv1_stride: int = 2
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = 2


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained.

    Attributes
    ----------
    epochs : int
        Maximum number of epochs.
    min_steps : int
        At least this many optimizer steps in total (small subsets get more epochs so that
        every model sees enough updates); 0 = plain epochs.
    batch_size : int
    lr, weight_decay : float
        Adam learning rate and weight decay.
    patience : int or None
        Early stopping: stop after ``patience`` epochs without a better validation score and
        keep the best weights. ``None`` trains all epochs and needs no validation set.
    augment : bool or None
        Random flips and small affine transforms. ``None``: on for segmentation, off for
        classification (as in the paper).
    threads : int
        torch threads per model (default 1). Results are identical for any number of
        parallel workers and any ambient thread count, but a different ``threads`` changes
        the order of float reductions and so the last digits of every loss, which can move
        early stopping: it is part of the config (and of ``meta.json``) for that reason.
    """

    epochs: int = 30
    min_steps: int = 0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int | None = 5
    augment: bool | None = None
    threads: int = 1


@dataclass(frozen=True)
class ProtocolConfig:
    """The whole protocol. See the module docstring for the YAML layout.

    Attributes
    ----------
    task : str
        ``classification`` (metric AUC) or ``segmentation`` (mean Jaccard over foreground).
    seed : int
        The one seed every other seed is derived from (recorded in ``meta.json``).
    strategies : tuple of str
        Names in :data:`enrich.select.SELECTORS`.
    initializations, models : int
        Random seed subsets, and models trained per (strategy, initialization, size).
    initial : float or int
        The random initial subset (fraction of the pool, or a count).
    sizes : tuple of float or int
        Subset sizes (fractions of the pool, or counts).
    full : bool
        Also train ``initializations × models`` models on the whole pool (strategy ``full``).
    n_classes : int or None
        Segmentation classes including background; ``None``: from the masks.
    seconds_per_image : float or None
        Labeling time per image for the report; ``None``: 3 s (classification), 300 s.
    label_map : dict
        Classification only: merge or rename classes before training, ``{value: class}``
        (e.g. ``{0: low, 1: low, 2: high, 3: high}`` for severity >= 2 vs < 2). Every label
        in the data must be a key (numbers match numbers: ``2`` matches ``"2.0"``); an empty
        map (the default) keeps the labels as they are.
    preprocess : dict
        Options of :class:`enrich.preprocess.Preprocess` for the models' input (``crop``,
        ``intensity``, ``oct_white_edge``); the size is ``model.input_size``.
    """

    task: str = "classification"
    seed: int = 0
    strategies: tuple[str, ...] = ("enrich", "random")
    initializations: int = 3
    models: int = 10
    initial: float | int = 0.02
    sizes: tuple[float | int, ...] = (0.02, 0.07, 0.11, 0.22, 0.33, 0.44, 0.55, 0.66, 0.77, 0.88)
    full: bool = True
    n_classes: int | None = None
    seconds_per_image: float | None = None
    label_map: dict[Any, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=lambda: {"crop": "center"})
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def metric(self) -> str:
        return "auc" if self.task == "classification" else "mean_jaccard"

    @property
    def labeling_seconds(self) -> float:
        if self.seconds_per_image is not None:
            return float(self.seconds_per_image)
        return SECONDS_PER_IMAGE[self.task]

    @property
    def augment(self) -> bool:
        if self.train.augment is not None:
            return bool(self.train.augment)
        return self.task == "segmentation"

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict (tuples become lists) that :func:`protocol_config` reads back.

        An empty ``label_map`` is left out, so runs recorded before it existed still resume.
        """
        out: dict[str, Any] = _plain(dataclasses.asdict(self))
        if not out["label_map"]:
            del out["label_map"]
        else:
            out["label_map"] = {str(k): str(v) for k, v in out["label_map"].items()}
        return out


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise EnrichError(f"config {where}: expected a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise EnrichError(
            f"config {where}: unknown key(s) {', '.join(map(str, unknown))}; "
            f"expected some of {', '.join(names)}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _check_size(value: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EnrichError(f"config {where}={value!r}: expected a fraction (0, 1] or a count >= 1")
    if isinstance(value, float):
        if not 0.0 < value <= 1.0:
            raise EnrichError(
                f"config {where}={value!r}: a float is a fraction of the pool, expected (0, 1]; "
                "write counts as integers"
            )
        return value
    if value < 1:
        raise EnrichError(f"config {where}={value!r}: expected a count >= 1")
    return int(value)


def _positive_int(value: Any, where: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise EnrichError(f"config {where}={value!r}: expected an integer >= {minimum}")
    return value


def protocol_config(
    data: dict[str, Any] | None = None, *, source: str = "config"
) -> ProtocolConfig:
    """Validate a config mapping (as read from YAML) into a :class:`ProtocolConfig`.

    Parameters
    ----------
    data : dict or None
        Keys of :class:`ProtocolConfig`; ``split``, ``model`` and ``train`` are mappings.
        Missing keys take the paper's defaults.
    source : str
        Where the mapping came from, for error messages.
    """
    data = dict(data or {})
    if not isinstance(data, dict):
        raise EnrichError(f"{source}: expected a mapping at the top level")
    model_data = data.pop("model", None)
    if data.get("task") == "segmentation" and (
        model_data is None or (isinstance(model_data, dict) and "name" not in model_data)
    ):
        model_data = {**(model_data or {}), "name": "unet"}
    sub = {
        "split": _build(SplitConfig, data.pop("split", None), f"{source}: split"),
        "model": _build(ModelConfig, model_data, f"{source}: model"),
        "train": _build(TrainConfig, data.pop("train", None), f"{source}: train"),
    }
    cfg: ProtocolConfig = _build(ProtocolConfig, data, source)
    cfg = dataclasses.replace(cfg, **sub)
    if cfg.task not in TASKS:
        raise EnrichError(f"{source}: task={cfg.task!r}, expected one of {', '.join(TASKS)}")
    if isinstance(cfg.strategies, str):
        cfg = dataclasses.replace(cfg, strategies=(cfg.strategies,))
    if not cfg.strategies or len(set(cfg.strategies)) != len(cfg.strategies):
        raise EnrichError(f"{source}: strategies={list(cfg.strategies)} must be distinct names")
    if "full" in cfg.strategies:
        raise EnrichError(f"{source}: 'full' is the reference, set `full: true` instead")
    _positive_int(cfg.seed, f"{source}: seed", minimum=0)
    _positive_int(cfg.initializations, f"{source}: initializations")
    _positive_int(cfg.models, f"{source}: models")
    _check_size(cfg.initial, f"{source}: initial")
    if isinstance(cfg.sizes, (int, float)):
        cfg = dataclasses.replace(cfg, sizes=(cfg.sizes,))
    if not cfg.sizes:
        raise EnrichError(f"{source}: sizes is empty; expected fractions or counts")
    for s in cfg.sizes:
        _check_size(s, f"{source}: sizes")
    if cfg.n_classes is not None:
        _positive_int(cfg.n_classes, f"{source}: n_classes", minimum=2)
    if cfg.seconds_per_image is not None and not cfg.seconds_per_image > 0:
        raise EnrichError(f"{source}: seconds_per_image={cfg.seconds_per_image!r}, expected > 0")
    if not isinstance(cfg.preprocess, dict):
        raise EnrichError(f"{source}: preprocess must be a mapping of Preprocess options")
    if not isinstance(cfg.label_map, dict):
        raise EnrichError(
            f"{source}: label_map={cfg.label_map!r}, expected a mapping {{label: class}}"
        )
    if cfg.label_map and cfg.task != "classification":
        raise EnrichError(f"{source}: label_map applies to classification, not {cfg.task}")
    for k, v in cfg.label_map.items():
        if v is None or isinstance(v, (dict, list, tuple)) or str(v).strip() == "":
            raise EnrichError(f"{source}: label_map[{k!r}]={v!r}, expected a class name")
    from enrich.preprocess import Preprocess

    try:
        Preprocess.from_dict({**cfg.preprocess, "size": 8})
    except (EnrichError, TypeError) as exc:
        raise EnrichError(f"{source}: preprocess: {exc}") from None
    if cfg.task == "segmentation" and cfg.preprocess.get("crop", "center") == "auto":
        raise EnrichError(f"{source}: preprocess.crop=auto cannot be applied to masks; use center")
    sp = cfg.split
    if sp.val not in ("validation", "train", "test", "drop"):
        raise EnrichError(
            f"{source}: split.val={sp.val!r}, expected validation, train, test or drop"
        )
    for name in ("test_fraction", "validation_fraction"):
        v = getattr(sp, name)
        lo = 0.0 if name == "validation_fraction" else 1e-9
        if not isinstance(v, (int, float)) or not lo <= v < 1.0:
            raise EnrichError(f"{source}: split.{name}={v!r}, expected a fraction in [0, 1)")
    m = cfg.model
    if m.name not in MODEL_NAMES:
        raise EnrichError(
            f"{source}: model.name={m.name!r}, expected one of {', '.join(MODEL_NAMES)}"
        )
    _positive_int(m.input_size, f"{source}: model.input_size", minimum=8)
    _positive_int(m.conv1_stride, f"{source}: model.conv1_stride")
    _positive_int(m.num_res_units, f"{source}: model.num_res_units", minimum=0)
    for key in ("block_inplanes", "layers", "channels", "strides"):
        values = getattr(m, key)
        if not isinstance(values, tuple) or not values:
            raise EnrichError(f"{source}: model.{key}={values!r}, expected a list of integers")
        for v in values:
            _positive_int(v, f"{source}: model.{key}")
    tr = cfg.train
    _positive_int(tr.epochs, f"{source}: train.epochs")
    _positive_int(tr.min_steps, f"{source}: train.min_steps", minimum=0)
    _positive_int(tr.batch_size, f"{source}: train.batch_size")
    _positive_int(tr.threads, f"{source}: train.threads")
    if tr.patience is not None:
        _positive_int(tr.patience, f"{source}: train.patience")
    if not (isinstance(tr.lr, (int, float)) and tr.lr > 0):
        raise EnrichError(f"{source}: train.lr={tr.lr!r}, expected > 0")
    if isinstance(tr.weight_decay, bool) or not (
        isinstance(tr.weight_decay, (int, float)) and tr.weight_decay >= 0
    ):
        raise EnrichError(f"{source}: train.weight_decay={tr.weight_decay!r}, expected >= 0")
    if tr.augment is not None and not isinstance(tr.augment, bool):
        raise EnrichError(f"{source}: train.augment={tr.augment!r}, expected true, false or null")
    return cfg


def load_config(spec: str | os.PathLike[str] | dict[str, Any] | ProtocolConfig) -> ProtocolConfig:
    """Read a protocol config: a packaged name (``quick``, ``paper``), a YAML path or a mapping.

    Examples
    --------
    >>> load_config("quick").initializations
    2
    """
    if isinstance(spec, ProtocolConfig):
        return spec
    if isinstance(spec, dict):
        return protocol_config(spec)
    import yaml

    text_spec = os.fspath(spec)
    if text_spec in PACKAGED_CONFIGS:
        path = Path(__file__).resolve().parent.parent / "experiments" / f"{text_spec}.yaml"
    else:
        path = Path(text_spec)
        if not path.exists():
            raise EnrichError(
                f"{path}: no such config file; expected a YAML path or one of "
                f"{', '.join(PACKAGED_CONFIGS)}"
            )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EnrichError(f"{path}: cannot read YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EnrichError(f"{path}: expected a mapping of config keys at the top level")
    return protocol_config(data, source=str(path))
