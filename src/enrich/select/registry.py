"""The strategy registry: name -> selector class, with each strategy's parameters as data.

The parameters are declared here (not read from the classes) so that the CLI can build its
choices and help without importing numba or any strategy module: ``enrich rank --help``
stays instant. A test checks that every declared parameter matches its class's ``__init__``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enrich.errors import EnrichError

if TYPE_CHECKING:
    from enrich.select.base import Selector

__all__ = ["SELECTORS", "STRATEGIES", "Param", "Strategy", "parse_params", "parse_spec"]


@dataclass(frozen=True)
class Param:
    """One strategy parameter: its name, type (int, float or str), default and help."""

    name: str
    type: type
    default: Any
    help: str

    def parse(self, text: str, strategy: str) -> Any:
        """'20' -> 20 for an int parameter; a bad value is one line naming it."""
        if self.default is None and text.strip().lower() in ("none", "auto", ""):
            return None
        try:
            return self.type(text)
        except ValueError:
            raise EnrichError(
                f"--param {self.name}={text!r} for strategy {strategy}: expected "
                f"{'a whole number' if self.type is int else 'a number'}"
            ) from None


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: where its class lives, a one-line summary, its parameters."""

    name: str
    module: str
    cls: str
    summary: str
    params: tuple[Param, ...] = ()


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "enrich",
            "enrich.select.enrich",
            "EnrichSelector",
            "ENRICH (Chinn et al. 2023): least redundant first, exact greedy max-min cosine",
        ),
        Strategy(
            "random",
            "enrich.select.random",
            "RandomSelector",
            "uniformly random order (the negative control)",
        ),
        Strategy(
            "typiclust",
            "enrich.select.typiclust",
            "TypiClustSelector",
            "TypiClust (Hacohen et al. 2022): the most typical image of each uncovered k-means "
            "cluster, largest first",
            (
                Param("k", int, 20, "neighbours for typicality"),
                Param("max_clusters", int, 500, "cap on k-means clusters"),
                Param("min_cluster_size", int, 5, "clusters this small are used last"),
                Param("growth", float, 2.0, "each round grows the chosen set by this factor"),
            ),
        ),
        Strategy(
            "probcover",
            "enrich.select.probcover",
            "ProbCoverSelector",
            "ProbCover (Yehuda et al. 2022): greedy max coverage of delta-balls, delta chosen "
            "by k-means purity",
            (
                Param("delta", float, None, "ball radius in (0, 2]; default: by purity"),
                Param("purity", float, 0.95, "share of pure balls delta must keep"),
                Param("n_clusters", int, 10, "k-means clusters for the purity test"),
                Param("max_degree", int, 64, "neighbours kept per ball (sparse graph)"),
            ),
        ),
        Strategy(
            "facility",
            "enrich.select.facility",
            "FacilitySelector",
            "facility location (lazy greedy, sparse k-NN cosine): most representative first; "
            "diversity=0.3 is MedCAL-Bench's RepDiv",
            (
                Param("k", int, 20, "neighbours per image in the sparse similarity"),
                Param("diversity", float, 0.0, "share of max-min picks, in [0, 1)"),
            ),
        ),
        Strategy(
            "repdiv",
            "enrich.select.facility",
            "RepDivSelector",
            "RepDiv (MedCAL-Bench 2025): facility location with 30% max-min picks interleaved",
            (
                Param("k", int, 20, "neighbours per image in the sparse similarity"),
                Param("diversity", float, 0.3, "share of max-min picks, in [0, 1)"),
            ),
        ),
        Strategy(
            "enrich_dense",
            "enrich.select.enrich_dense",
            "DenseEnrichSelector",
            "ENRICH over the non-outliers by k-NN density first, then the outliers",
            (
                Param("k", int, 20, "neighbours for the density"),
                Param("outlier_fraction", float, 0.1, "share of least dense images held back"),
            ),
        ),
    )
}


def parse_params(strategy: str, items: list[str] | None) -> dict[str, Any]:
    """``["k=30", "diversity=0.3"]`` -> keyword arguments for the strategy's class.

    >>> parse_params("facility", ["diversity=0.3"])
    {'diversity': 0.3}
    """
    spec = STRATEGIES[strategy]
    known = {p.name: p for p in spec.params}
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise EnrichError(f"--param {item!r}: expected KEY=VALUE, e.g. k=20")
        if key not in known:
            valid = ", ".join(known) if known else "none"
            raise EnrichError(
                f"--param {key!r} is not a parameter of strategy {strategy} "
                f"(its parameters: {valid})"
            )
        out[key] = known[key].parse(value.strip(), strategy)
    return out


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """A strategy with parameters, as a benchmark config names it:
    ``"probcover(n_clusters=2, purity=0.9)"`` -> ``("probcover", {...})``.

    >>> parse_spec("facility(diversity=0.5)")
    ('facility', {'diversity': 0.5})
    >>> parse_spec("typiclust")
    ('typiclust', {})
    """
    text = text.strip()
    name, sep, rest = text.partition("(")
    name = name.strip()
    if name not in STRATEGIES:
        raise EnrichError(
            f"strategy {text!r}: unknown name {name!r}; registered: {', '.join(STRATEGIES)}"
        )
    if not sep:
        return name, {}
    if not rest.endswith(")"):
        raise EnrichError(f"strategy {text!r}: expected NAME(KEY=VALUE, ...)")
    items = [i for i in (x.strip() for x in rest[:-1].split(",")) if i]
    return name, parse_params(name, items)


class _Registry(MutableMapping[str, "type[Selector]"]):
    """A dict of name -> selector class that imports each class on first use.

    A name with parameters, ``"probcover(n_clusters=2)"``, gives the class with those
    defaults (a subclass whose ``name`` is that text), so a benchmark can compare variants."""

    def __init__(self, specs: dict[str, Strategy]) -> None:
        self._specs = dict(specs)
        self._loaded: dict[str, type[Selector]] = {}

    def __getitem__(self, name: str) -> type[Selector]:
        if name not in self._loaded and name not in self._specs and "(" in name:
            base, params = parse_spec(name)
            self._loaded[name] = _with_defaults(self[base], name, params)
        if name not in self._loaded:
            spec = self._specs[name]  # KeyError for unknown names, as a dict
            cls = getattr(importlib.import_module(spec.module), spec.cls)
            self._loaded[name] = cls
        return self._loaded[name]

    def __setitem__(self, name: str, cls: type[Selector]) -> None:
        self._loaded[name] = cls
        if name not in self._specs:
            self._specs[name] = Strategy(name, cls.__module__, cls.__name__, cls.__doc__ or "")

    def __delitem__(self, name: str) -> None:
        del self._specs[name]
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name not in self._specs and "(" in name:
            try:
                parse_spec(name)
            except EnrichError:
                return False
            return True
        return name in self._specs

    def __repr__(self) -> str:
        return f"SELECTORS({', '.join(self._specs)})"


def _with_defaults(cls: type[Selector], label: str, params: dict[str, Any]) -> type[Selector]:
    """A subclass of `cls` whose parameters default to `params`, named `label`."""

    def __init__(self: Selector, **kwargs: Any) -> None:
        cls.__init__(self, **{**params, **kwargs})

    return type(cls.__name__, (cls,), {"__init__": __init__, "name": label, "__doc__": cls.__doc__})


#: name -> selector class. The CLI's and the benchmark's choices are built from this mapping.
SELECTORS: MutableMapping[str, type[Selector]] = _Registry(STRATEGIES)
