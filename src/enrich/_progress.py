"""Progress that reaches a log: a tqdm bar on a terminal, plain lines otherwise.

A tqdm bar redraws one line with carriage returns; in a log file (``make demo > log``, a CI
job, ``nohup``) that is one ever-growing line, or nothing at all when bars are switched off
for non-terminals. :class:`Progress` draws the bar when stderr is a terminal and otherwise
prints a plain line (``β-VAE: 3/100 epochs, epoch 4: 1,024/4,096 images, 1m20s elapsed``)
at most every :data:`PLAIN_EVERY` seconds, and one at the end. A heartbeat thread prints the
line even when no unit finishes for a long time (one slow model, one slow epoch), so a log
never goes quiet for longer than that.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["PLAIN_EVERY", "Progress", "format_seconds"]

#: Seconds between plain progress lines (well under the 30 s a watcher should wait).
PLAIN_EVERY = 10.0


def format_seconds(seconds: float) -> str:
    """``75`` → ``'1m15s'``, ``3725`` → ``'1h02m'``, ``9.4`` → ``'9s'``.

    >>> format_seconds(75), format_seconds(3725), format_seconds(9.4)
    ('1m15s', '1h02m', '9s')
    """
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Count work done; show it as a bar (terminal) or as plain lines (log).

    Parameters
    ----------
    total : int
        Units expected (0 or less: unknown).
    desc : str
        What is running, e.g. ``"embed"``.
    unit : str
        The unit's name in plain lines, e.g. ``"images"``.
    enabled : bool
        False: silent.
    stream : text stream, optional
        Default ``sys.stderr``.
    every : float, optional
        Seconds between plain lines (default :data:`PLAIN_EVERY`).
    bar : bool, optional
        Force the bar (True) or plain lines (False); default: bar only on a terminal.
    initial : int
        Units already done before (a resumed run).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "it",
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        every: float | None = None,
        bar: bool | None = None,
        initial: int = 0,
    ) -> None:
        self.total = int(total)
        self.desc = desc
        self.unit = unit
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.every = PLAIN_EVERY if every is None else float(every)
        self.n = self._initial = int(initial)
        self.note = ""
        self._start = time.perf_counter()
        self._last = self._start
        self._printed = False
        self._bar: Any = None
        self._detail = ""
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        if enabled:
            use_bar = _isatty(self.stream) if bar is None else bar
            if use_bar:
                from tqdm.auto import tqdm

                self._bar = tqdm(
                    total=self.total if self.total > 0 else None,
                    initial=self.n,
                    desc=desc,
                    unit=unit,
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=False,
                )
            elif self.every > 0:
                self._stop = threading.Event()
                threading.Thread(
                    target=self._heartbeat, name=f"progress {desc}", daemon=True
                ).start()

    def update(self, n: int = 1, note: str | None = None) -> None:
        """Add `n` units done; `note` replaces the text shown after the count."""
        self.n += n
        self._detail = ""
        if note is not None:
            self.note = note
        if not self.enabled:
            return
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)
            return
        self.poll()

    def poll(self, detail: str = "") -> None:
        """Print a plain line if `every` seconds have passed (call it inside long steps).

        `detail` says where inside the current unit the work is (e.g. the images of an
        epoch); it is shown only in plain lines.
        """
        if not self.enabled or self._bar is not None:
            return
        self._detail = detail
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._print(now, detail)

    def _heartbeat(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(self.every / 2):
            now = time.perf_counter()
            if now - self._last >= self.every:
                self._print(now, self._detail)

    def close(self) -> None:
        """End: the bar disappears; a plain-line log gets a final line."""
        if not self.enabled:
            return
        if self._stop is not None:
            self._stop.set()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            return
        if self._printed or self.n > self._initial:
            self._print(time.perf_counter(), "done")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _print(self, now: float, detail: str) -> None:
        with self._lock:
            self._print_locked(now, detail)

    def _print_locked(self, now: float, detail: str) -> None:
        elapsed = now - self._start
        count = f"{self.n:,}/{self.total:,}" if self.total > 0 else f"{self.n:,}"
        parts = [f"{count} {self.unit}"]
        if detail:
            parts.append(detail)
        if self.note:
            parts.append(self.note)
        parts.append(f"{format_seconds(elapsed)} elapsed")
        done_here = self.n - self._initial
        if done_here > 0 and self.n < self.total and detail != "done":
            left = elapsed / done_here * (self.total - self.n)
            parts.append(f"at most about {format_seconds(left)} left")
        print(f"{self.desc}: {', '.join(parts)}", file=self.stream, flush=True)
        self._last = now
        self._printed = True


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
