"""``enrich embed SOURCE... --workspace WS``: images in, embeddings out.

Reads folders, files or CSV manifests, preprocesses as in the paper (grayscale, crop,
64×64), trains the β-VAE (or the ``pixels`` baseline) on up to 5,000 images chosen by
seed, embeds every image and writes the workspace. Run again on a grown folder: only the
new images are embedded, with the same model.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from enrich._threads import parse_threads

__all__ = ["add_arguments", "run"]

# Kept in sync with enrich.embed.EMBEDDERS (not imported here: it would import numpy at
# parser-build time); run() checks the name against the registry.
_EMBEDDER_CHOICES = ("betavae", "pixels")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="image folder (recursive), image/DICOM/NIfTI/video file, or CSV manifest "
        "with a 'path' column",
    )
    parser.add_argument(
        "--workspace",
        "-w",
        required=True,
        metavar="WS",
        help="workspace folder to create or update",
    )
    parser.add_argument(
        "--embedder",
        choices=_EMBEDDER_CHOICES,
        default="betavae",
        help="betavae (the paper's β-VAE, default) or pixels (fast baseline)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="chooses the training subset and seeds the model (default 0)",
    )
    parser.add_argument(
        "--latent-dim",
        type=int,
        default=128,
        metavar="D",
        help="embedding length (default 128, as the paper)",
    )
    parser.add_argument("--beta", type=float, default=4.0, help="β-VAE KL weight (default 4)")
    parser.add_argument(
        "--likelihood",
        choices=("gaussian", "bernoulli"),
        default="gaussian",
        help="β-VAE reconstruction term: gaussian (calibrated, default) or bernoulli",
    )
    parser.add_argument(
        "--max-train",
        type=int,
        default=5000,
        metavar="N",
        help="train on at most N images (default 5000, as the paper)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=100,
        metavar="N",
        help="maximum β-VAE epochs; early stopping usually ends sooner",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        metavar="LR",
        help="β-VAE Adam learning rate (default 1e-3)",
    )
    parser.add_argument(
        "--epoch-images",
        type=int,
        default=4096,
        metavar="N",
        help="an epoch is at least N images, or 8 passes over a smaller set (default 4096)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=5,
        metavar="N",
        help="stop after N epochs without validation improvement (default 5)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the β-VAE runs (default: CUDA when available)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=256,
        metavar="B",
        help="images read and embedded per batch (default 256)",
    )
    parser.add_argument(
        "--crop",
        choices=("center", "auto", "none"),
        default="center",
        help="center square, auto (cut constant borders, then center), or none",
    )
    parser.add_argument(
        "--oct-white-edge",
        action="store_true",
        help="remove OCT white-edge artifacts first (the paper's OCT step)",
    )
    parser.add_argument(
        "--intensity",
        choices=("auto", "dtype", "minmax", "percentile"),
        default="auto",
        help="intensity rescale to [0, 1] (default auto)",
    )
    parser.add_argument(
        "--nifti-axis",
        type=int,
        default=None,
        metavar="AXIS",
        help="slice NIfTI volumes along this axis (default: the readers' choice)",
    )
    parser.add_argument(
        "--video-step",
        type=int,
        default=None,
        metavar="K",
        help="keep every K-th video frame (default: every frame)",
    )
    _add_id_arguments(parser)
    parser.add_argument(
        "--modality",
        default=None,
        metavar="CT,MR",
        help="embed only DICOM files of these modalities (comma-separated); "
        "other files are listed in skipped.csv",
    )
    parser.add_argument(
        "--include-sop",
        default=None,
        metavar="SEG,RTDOSE",
        help="also embed these non-image DICOM objects, skipped by default: "
        "SEG, RTDOSE (the others hold no image), a SOP Class UID, or 'all'",
    )
    parser.add_argument(
        "--labels-from-folder",
        action="store_true",
        help="label each image with the name of the folder holding it "
        "(normal/a.png → normal); stored in the manifest's label column",
    )
    parser.add_argument(
        "--threads",
        type=parse_threads,
        default="auto",
        metavar="N",
        help="CPU threads for the β-VAE (default auto: the cores free now, from the "
        "affinity mask and the load average)",
    )
    parser.add_argument(
        "--model-from",
        metavar="DIR",
        help="use the model saved in DIR (e.g. another workspace's model/) instead of "
        "training, when it was trained on the same images with the same options",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train a new model from scratch even if the workspace's (or --model-from) "
        "model matches, discarding an interrupted training's checkpoint",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="no progress (bars or log lines)"
    )
    from enrich.distributed import add_engine_arguments

    add_engine_arguments(parser)


def _add_id_arguments(parser: argparse.ArgumentParser) -> None:
    ids = parser.add_argument_group("ids and labels from file names and side tables")
    ids.add_argument(
        "--id-pattern",
        metavar="REGEX",
        default=None,
        help="regular expression searched in each file's path; its named groups patient_id, "
        "clip_id, label fill the manifest (a CSV manifest's values still win)",
    )
    ids.add_argument(
        "--id-pattern-missing",
        choices=("error", "skip"),
        default="error",
        help="a file the pattern does not match: stop (default) or list it in skipped.csv",
    )
    ids.add_argument(
        "--labels",
        metavar="FILE.csv",
        default=None,
        help="side table of labels, joined on --labels-key so that every frame gets its label",
    )
    ids.add_argument(
        "--labels-key",
        choices=("clip_id", "patient_id", "id", "source_path"),
        default="clip_id",
        help="manifest column the side table is keyed by (default clip_id)",
    )
    ids.add_argument(
        "--labels-columns",
        metavar="COL=NAME,...",
        default=None,
        help="rename side-table columns, e.g. 'video_file=clip_id,B-lines=label'",
    )
    ids.add_argument(
        "--labels-missing",
        choices=("error", "skip"),
        default="error",
        help="an image with no label in the side table: stop (default) or list it in skipped.csv",
    )


def run(args: argparse.Namespace) -> int:
    from enrich._outputs import check_seed
    from enrich.embed import EMBEDDERS
    from enrich.embed.api import embed_sources
    from enrich.errors import EnrichError
    from enrich.preprocess import Preprocess
    from enrich.workspace import Workspace

    check_seed(args.seed, name="--seed")
    if args.embedder not in EMBEDDERS:  # the choices above and the registry disagree
        raise EnrichError(f"--embedder {args.embedder!r}: expected one of {sorted(EMBEDDERS)}")
    for flag, value, low in (
        ("--latent-dim", args.latent_dim, 1),
        ("--max-train", args.max_train, 2),
        ("--epochs", args.epochs, 1),
        ("--patience", args.patience, 1),
        ("--epoch-images", args.epoch_images, 0),
        ("--batch-size", args.batch_size, 1),
        ("--video-step", args.video_step, 1),
    ):
        if value is not None and value < low:
            raise EnrichError(f"{flag} {value}: expected an integer >= {low}")
    if args.beta < 0:
        raise EnrichError(f"--beta {args.beta}: expected a number >= 0")
    if not args.lr > 0:
        raise EnrichError(f"--lr {args.lr}: expected a number > 0")

    preprocess = Preprocess(
        crop=None if args.crop == "none" else args.crop,
        oct_white_edge=args.oct_white_edge,
        intensity=args.intensity,
        size=64,
    )
    if args.embedder == "betavae":
        options = {
            "latent_dim": args.latent_dim,
            "beta": args.beta,
            "likelihood": args.likelihood,
            "lr": args.lr,
            "max_epochs": args.epochs,
            "patience": args.patience,
            "min_epoch_images": args.epoch_images,
        }
    else:
        options = {"latent_dim": args.latent_dim}
    discover_options: dict[str, object] = {}
    if args.nifti_axis is not None:
        discover_options["nifti_axis"] = args.nifti_axis
    if args.video_step is not None:
        discover_options["video_step"] = args.video_step
    if args.modality is not None:
        discover_options["modality"] = args.modality
    if args.include_sop is not None:
        discover_options["include_sop"] = args.include_sop

    from enrich.distributed import engine_from_args

    scheduler = engine_from_args(args)
    shard_map = None
    if scheduler is not None:  # training here; embedding on the Dask workers
        from enrich.distributed.embed import shard_map_on

        shard_map = shard_map_on(scheduler, device=args.device)
    id_options: dict[str, object] = {}
    if args.id_pattern is not None:
        from enrich.io._ids import compile_id_pattern

        compile_id_pattern(args.id_pattern)  # a bad pattern fails before any work
        id_options.update(id_pattern=args.id_pattern, id_pattern_missing=args.id_pattern_missing)
    if args.labels is not None:
        from enrich.io._ids import parse_label_columns

        id_options.update(
            labels=args.labels,
            labels_key=args.labels_key,
            labels_columns=parse_label_columns(args.labels_columns),
            labels_missing=args.labels_missing,
        )
    elif args.labels_columns is not None:
        raise EnrichError("--labels-columns needs --labels FILE.csv")

    # One writer per workspace: the model, embeddings and manifest come from one run. A
    # workspace this run created is removed again if the run fails before writing into it.
    ws = Workspace(args.workspace)
    ws.check_creatable()
    existed, folder_existed = ws.is_workspace(), ws.path.is_dir()
    ws = Workspace.create(ws.path)
    try:
        with ws.lock(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            summary = embed_sources(
                args.sources,
                ws,
                embedder=args.embedder,
                seed=args.seed,
                max_train=args.max_train,
                preprocess=preprocess,
                embedder_options=options,
                discover_options=discover_options,
                id_options=id_options,
                device=args.device,
                batch_size=args.batch_size,
                retrain=args.retrain,
                progress=not args.quiet,
                shard_map=shard_map,
                threads=args.threads,
                model_from=args.model_from,
                labels_from_folder=args.labels_from_folder,
            )
    except BaseException:
        if not existed:
            ws.remove_if_unused(keep_folder=folder_existed)
        raise
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    print(summary.line())
    return 0
