"""Dask clients from a :class:`~enrich.distributed.SchedulerSpec` (imports Dask)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enrich.distributed import SchedulerSpec
from enrich.errors import EnrichError, MissingExtraError

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["SLURM_KEYS", "connect", "n_workers", "slurm_cluster", "slurm_options"]

# Options of the SLURM YAML, passed to dask_jobqueue.SLURMCluster as they are; "jobs" is how
# many SLURM jobs (each `processes` workers) to ask for.
SLURM_KEYS = (
    "queue",
    "account",
    "cores",
    "processes",
    "memory",
    "walltime",
    "job_extra_directives",
    "job_script_prologue",
    "local_directory",
    "log_directory",
    "interface",
    "python",
)
CONNECT_TIMEOUT = "10s"
# How long to wait for the first SLURM job to start a worker (the YAML's `start_timeout`).
SLURM_START_TIMEOUT = 600.0


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise MissingExtraError("dask.distributed", "dask") from None
    return distributed


@contextlib.contextmanager
def connect(spec: SchedulerSpec, *, timeout: str | None = None) -> Iterator[Client]:
    """A connected client for `spec`; a cluster started here is closed on exit.

    A scheduler that cannot be reached within `timeout` (default :data:`CONNECT_TIMEOUT`) is
    an :class:`EnrichError` naming its address.
    """
    distributed = _distributed()
    timeout = timeout or CONNECT_TIMEOUT
    if spec.kind == "address":
        try:
            client = distributed.Client(spec.address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise EnrichError(
                f"cannot reach the Dask scheduler at {spec.address} ({reason}); "
                "is it running, and is the address host:port right?"
            ) from None
        with client:
            yield client
        return
    if spec.kind == "local":
        n = spec.n_workers or os.cpu_count() or 1
        cluster = distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
        with cluster, distributed.Client(cluster) as client:
            yield client
        return
    if spec.kind == "slurm":
        cluster, jobs, start_timeout = slurm_cluster(spec.config)
        where = spec.config or "Dask's jobqueue.slurm configuration"
        with cluster:
            check_sbatch(cluster, where)
            with distributed.Client(cluster) as client:
                cluster.scale(jobs=jobs)
                try:
                    client.wait_for_workers(1, timeout=start_timeout)
                except (TimeoutError, OSError):
                    raise EnrichError(
                        f"no Dask worker joined from SLURM within {start_timeout:g} s "
                        f"({jobs} job(s) asked for); see `squeue --me` for why they wait, or "
                        f"raise start_timeout in {where}"
                    ) from None
                yield client
        return
    raise EnrichError(f"unknown scheduler kind {spec.kind!r}")


def check_sbatch(cluster: Any, where: str | os.PathLike[str]) -> None:
    """Ask SLURM whether it would run the worker job (``sbatch --test-only``), so that a wrong
    queue, account or size is one line naming the reason instead of a wait for workers that
    never come."""
    script = cluster.job_script()
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="enrich-dask-") as f:
        f.write(script)
        f.flush()
        try:
            done = subprocess.run(
                ["sbatch", "--test-only", f.name],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except FileNotFoundError:
            raise EnrichError(
                "--scheduler slurm: no `sbatch` on this machine; run enrich on a SLURM login "
                "node, or pass the address of a running Dask scheduler"
            ) from None
        except subprocess.TimeoutExpired:
            raise EnrichError(
                "--scheduler slurm: `sbatch --test-only` did not answer in 120 s"
            ) from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        reason = lines[0] if lines else f"exit status {done.returncode}"
        reason = reason.removeprefix("sbatch: error: ")
        raise EnrichError(
            f"SLURM refused the Dask worker job ({reason}); check queue, account, cores and "
            f"memory in {where}"
        )


def slurm_options(config: str | os.PathLike[str] | None) -> tuple[dict[str, Any], int, float]:
    """SLURMCluster keyword arguments, the number of jobs and the start timeout (seconds),
    from the user's YAML.

    The YAML holds any of :data:`SLURM_KEYS` plus ``jobs`` (default 1) and ``start_timeout``
    (default :data:`SLURM_START_TIMEOUT`); None reads nothing (Dask's ``jobqueue.slurm``
    configuration then fills everything in).
    """
    if config is None:
        return {}, 1, SLURM_START_TIMEOUT
    import yaml

    path = Path(config)
    if not path.is_file():
        raise EnrichError(f"{path}: no such SLURM config file (expected a YAML mapping)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EnrichError(f"{path}: cannot read the SLURM config ({exc})") from None
    if not isinstance(data, dict):
        raise EnrichError(f"{path}: expected a YAML mapping such as 'queue: gpu', got {data!r}")
    ours = {"jobs", "start_timeout"}
    unknown = sorted(set(data) - set(SLURM_KEYS) - ours)
    if unknown:
        raise EnrichError(
            f"{path}: unknown key(s) {unknown}; expected some of {[*sorted(ours), *SLURM_KEYS]}"
        )
    jobs = data.pop("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise EnrichError(f"{path}: jobs={jobs!r}; expected a whole number >= 1")
    start = data.pop("start_timeout", SLURM_START_TIMEOUT)
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not start > 0:
        raise EnrichError(f"{path}: start_timeout={start!r}; expected seconds > 0")
    return data, jobs, float(start)


def slurm_cluster(config: str | os.PathLike[str] | None) -> tuple[Any, int, float]:
    """A ``dask_jobqueue.SLURMCluster`` (no jobs submitted yet), how many jobs to ask for and
    how long to wait for the first worker."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise MissingExtraError("dask_jobqueue", "dask") from None
    kwargs, jobs, start_timeout = slurm_options(config)
    try:
        cluster = SLURMCluster(**kwargs)
    except (TypeError, ValueError) as exc:
        where = config if config is not None else "Dask's jobqueue.slurm configuration"
        raise EnrichError(f"SLURM cluster from {where}: {exc}") from None
    return cluster, jobs, start_timeout


def n_workers(client: Client) -> int:
    """Workers connected now (at least 1, so that work can be split)."""
    return max(1, len(client.nthreads()))
