"""``enrich export``: an order or a batch for Label Studio, CVAT or MONAI Label."""

from __future__ import annotations

import argparse

from enrich.errors import EnrichError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from enrich.loop.export import EXPORT_FORMATS

    parser.description = (
        "Write an order (order.csv from `enrich rank`) or a batch (batch.csv from `enrich next`, "
        "a batch record, or a batch number with --workspace) in a labeling tool's import format, "
        "keeping the labeling order."
    )
    parser.add_argument(
        "order",
        metavar="ORDER_OR_BATCH",
        help="order.csv, batch.csv, WS/runs/batches/batch-NNNN.json, or N / latest with -w",
    )
    parser.add_argument("--format", "-f", required=True, choices=EXPORT_FORMATS)
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--workspace", "-w", metavar="DIR", help="the workspace (found if omitted)")
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="paths are written relative to this folder: Label Studio's document root "
        "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) or CVAT's share",
    )
    parser.add_argument(
        "--url-prefix",
        metavar="URL",
        help="Label Studio: image URLs are URL + the path relative to --root",
    )
    parser.add_argument(
        "--job-size",
        type=int,
        default=50,
        metavar="N",
        help="CVAT: images per job; each job holds consecutive ranks (default 50)",
    )
    parser.add_argument(
        "--extract-frames",
        action="store_true",
        help="write a PNG per frame of a multi-frame file (DICOM cine, video, NIfTI slice) "
        "instead of the file plus its frame index",
    )
    parser.add_argument(
        "--classes",
        metavar="A,B,...",
        help="label names for the Label Studio config and the CVAT task (default: the "
        "workspace's labels)",
    )
    parser.add_argument(
        "--copy",
        action="store_true",
        help="MONAI Label: copy the images into the datastore instead of linking them",
    )
    parser.add_argument("--name", default="enrich", help="CVAT task name (default: enrich)")


def run(args: argparse.Namespace) -> int:
    from enrich.loop.export import export_order, load_order

    if args.url_prefix is not None and args.format != "labelstudio":
        raise EnrichError("--url-prefix is for --format labelstudio")
    table, ws = load_order(args.order, workspace=args.workspace)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    result = export_order(
        table,
        args.out,
        format=args.format,
        ws=ws,
        root=args.root,
        url_prefix=args.url_prefix,
        job_size=args.job_size,
        extract_frames=args.extract_frames,
        classes=classes,
        copy=args.copy,
        name=args.name,
    )
    print(
        f"exported {result.n_images} image(s) in labeling order for {result.format} -> "
        + ", ".join(str(f) for f in result.files)
    )
    for note in result.notes:
        print(f"note: {note}")
    return 0
