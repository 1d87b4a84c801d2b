"""Running ``enrich`` on a Dask cluster when one machine is not enough.

``--engine dask`` sends the heavy work of ``enrich redundancy`` and ``enrich rank`` to Dask
workers; ``--scheduler`` says which cluster:

- ``ADDRESS`` (``tcp://host:8786`` or ``host:8786``): an existing ``dask.distributed``
  scheduler;
- ``local`` or ``local:N``: a ``LocalCluster`` of N single-threaded worker processes on this
  machine (default: one per core);
- ``slurm`` or ``slurm:FILE.yaml``: a ``dask_jobqueue.SLURMCluster`` described by a small
  YAML (queue, account, cores, memory, walltime, jobs); ``slurm`` alone uses Dask's own
  ``jobqueue.slurm`` configuration.

This module imports nothing from Dask, so ``enrich --help`` stays instant; the client is made
in :mod:`enrich.distributed._client`, only when a command asks for it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from enrich.errors import EnrichError

__all__ = [
    "ENGINES",
    "SchedulerSpec",
    "add_engine_arguments",
    "engine_from_args",
    "parse_scheduler",
]

ENGINES = ("local", "dask")


@dataclass(frozen=True)
class SchedulerSpec:
    """Where the Dask work runs, parsed from ``--scheduler``.

    Attributes
    ----------
    kind : {"address", "local", "slurm"}
    address : str, optional
        The scheduler's address (kind "address").
    n_workers : int, optional
        Workers of a LocalCluster (kind "local"; None: one per core).
    config : str, optional
        The SLURM YAML (kind "slurm"; None: Dask's ``jobqueue.slurm`` configuration).
    """

    kind: str
    address: str | None = None
    n_workers: int | None = None
    config: str | None = None

    def __str__(self) -> str:
        if self.kind == "address":
            return str(self.address)
        if self.kind == "local":
            return "local" if self.n_workers is None else f"local:{self.n_workers}"
        return "slurm" if self.config is None else f"slurm:{self.config}"


def parse_scheduler(text: str) -> SchedulerSpec:
    """Parse a ``--scheduler`` value.

    >>> parse_scheduler("local:2")
    SchedulerSpec(kind='local', address=None, n_workers=2, config=None)
    >>> parse_scheduler("tcp://10.0.0.5:8786").address
    'tcp://10.0.0.5:8786'
    """
    text = text.strip()
    if not text:
        raise EnrichError("--scheduler is empty: expected ADDRESS, local[:N] or slurm[:FILE.yaml]")
    head, _, tail = text.partition(":")
    if head == "local":
        if not tail:
            return SchedulerSpec("local")
        try:
            n = int(tail)
        except ValueError:
            n = 0
        if n < 1:
            raise EnrichError(
                f"--scheduler {text!r}: expected local:N with N a whole number of workers >= 1"
            )
        return SchedulerSpec("local", n_workers=n)
    if head == "slurm":
        return SchedulerSpec("slurm", config=tail or None)
    return SchedulerSpec("address", address=text)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and ``--scheduler``, shared by the commands that can run on Dask."""
    group = parser.add_argument_group("engine (more than one machine)")
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="local: this process (default); dask: Dask workers (needs enrich-imaging[dask])",
    )
    group.add_argument(
        "--scheduler",
        metavar="SPEC",
        help="with --engine dask: ADDRESS of a running scheduler (tcp://host:8786), "
        "local[:N] (a LocalCluster of N worker processes; default) or slurm[:FILE.yaml] "
        "(a SLURMCluster); giving it implies --engine dask",
    )


def engine_from_args(args: argparse.Namespace) -> SchedulerSpec | None:
    """None for the in-process engine, else where the Dask work runs."""
    engine = getattr(args, "engine", None)
    scheduler = getattr(args, "scheduler", None)
    if engine == "local":
        if scheduler is not None:
            raise EnrichError("--scheduler needs --engine dask (or leave --engine out)")
        return None
    if engine is None and scheduler is None:
        return None
    return parse_scheduler(scheduler if scheduler is not None else "local")
