"""How many CPU threads torch should use: the cores this process may run on and are free.

torch starts one thread per core it sees. On a shared machine (load 9 on 2 cores) those
threads fight the other jobs and each other, and a β-VAE trains 50 times slower than on an
idle machine. :func:`free_cores` counts the cores in this process's affinity mask
(``os.sched_getaffinity``: a container or ``taskset`` may allow fewer than ``os.cpu_count``)
minus the 1-minute load average, and never returns less than 1.
"""

from __future__ import annotations

import os

__all__ = ["free_cores", "parse_threads", "resolve_threads", "set_torch_threads"]


def _allowed_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def free_cores(*, allowed: int | None = None, load: float | None = None) -> int:
    """Cores allowed to this process and not busy: ``allowed - load``, rounded, at least 1.

    >>> free_cores(allowed=2, load=9.0), free_cores(allowed=16, load=3.4)
    (1, 13)
    """
    n = _allowed_cores() if allowed is None else int(allowed)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(n, round(n - load)))


def resolve_threads(threads: int | str | None) -> int:
    """``None`` or ``"auto"`` → :func:`free_cores`; a positive integer → itself.

    >>> resolve_threads(3)
    3
    """
    from enrich.errors import EnrichError

    if threads is None or threads == "auto":
        return free_cores()
    try:
        n = int(threads)
    except (TypeError, ValueError):
        raise EnrichError(f"threads={threads!r}: expected a positive integer or 'auto'") from None
    if n < 1:
        raise EnrichError(f"threads={threads!r}: expected a positive integer or 'auto'")
    return n


def set_torch_threads(threads: int | str | None) -> int:
    """Resolve `threads` and give torch that many intra-op threads; returns the number.

    Without torch installed nothing is set (the number is still returned).
    """
    n = resolve_threads(threads)
    try:
        import torch
    except ImportError:
        return n
    torch.set_num_threads(n)
    return n


def parse_threads(text: str) -> int | str:
    """argparse type for ``--threads``: ``auto`` or a positive integer."""
    import argparse

    if text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a positive integer or 'auto'"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer or 'auto'")
    return n
