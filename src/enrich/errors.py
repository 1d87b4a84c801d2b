"""User-facing errors.

Everything a user can get wrong (a bad file, a bad value, an impossible budget)
raises :class:`EnrichError`, a :class:`ValueError`. The CLI prints its message as one
line and exits non-zero; the Python API lets it propagate.
"""

from __future__ import annotations

__all__ = ["EnrichError", "MissingExtraError", "first_few"]


class EnrichError(ValueError):
    """A problem with the user's input, explained in one line."""


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message says which extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        hint = f"pip install 'enrich-imaging[{extra}]'"
        if extra == "torch":  # a plain `pip install torch` on Linux is a multi-GB CUDA build
            hint = (
                "pip install torch --index-url https://download.pytorch.org/whl/cpu` "
                f"(or your CUDA build), then `{hint}"
            )
        super().__init__(f"{module} is not installed; run `{hint}` to use this feature")
        self.module = module
        self.extra = extra


def first_few(items: object, n: int = 5) -> str:
    """Format the first `n` items of a sequence for an error message, with a count.

    >>> first_few([3, 4, 5, 6, 7, 8], n=3)
    '3, 4, 5 (and 3 more)'
    """
    seq = [str(x) for x in items]  # type: ignore[attr-defined]
    head = ", ".join(seq[:n])
    return head if len(seq) <= n else f"{head} (and {len(seq) - n} more)"
