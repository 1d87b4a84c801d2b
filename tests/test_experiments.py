"""The committed studies: configs parse, and docs/results.md shows the committed numbers."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXP = ROOT / "experiments"

pytest.importorskip("pandas")
pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def exp_modules():
    sys.path.insert(0, str(EXP))
    try:
        run = importlib.import_module("run")
        figures = importlib.import_module("figures")
        check = importlib.import_module("check_results")
        yield run, figures, check
    finally:
        sys.path.remove(str(EXP))


def test_every_study_config_parses(exp_modules):
    from enrich.evaluate.config import protocol_config

    run, _, _ = exp_modules
    for name in run.STUDIES:
        study = run.load_study(name)
        assert study["study"] == name
        if name == "redundancy":
            assert len(study["datasets"]) >= 3
            for ds in study["datasets"]:
                assert {"name", "source", "workspace"} <= set(ds)
            continue
        cfg = protocol_config(study["protocol"], source=name)
        assert cfg.strategies and len(cfg.sizes) >= 5
        assert {"source", "workspace"} <= set(study["data"])


def test_ablation_matches_its_parent_protocol(exp_modules):
    # The ablation reuses the parent's random and full models: every setting but the
    # strategies, the model count and `full` must be identical, or the comparison is unfair.
    run, _, _ = exp_modules
    children = [run.load_study(n) for n in run.STUDIES if "compare_with" in run.load_study(n)]
    assert len(children) >= 2
    for child in children:
        parent = run.load_study(child["compare_with"])
        a, b = dict(child["protocol"]), dict(parent["protocol"])
        for key in ("strategies", "models", "full"):
            a.pop(key), b.pop(key)
        assert a == b, child["study"]
        assert child["protocol"]["models"] <= parent["protocol"]["models"]
        assert child["data"]["source"] == parent["data"]["source"]
        # ... and the embedding must differ: another embedder, or other embedder options
        embedding = (child["data"]["embedder"], child["data"].get("options"))
        assert embedding != (parent["data"]["embedder"], parent["data"].get("options"))


def test_replicates_change_only_the_seed(exp_modules):
    run, _, _ = exp_modules
    reps = [run.load_study(n) for n in run.STUDIES if "replicates" in run.load_study(n)]
    assert reps
    for rep in reps:
        parent = run.load_study(rep["replicates"])
        a, b = dict(rep["protocol"]), dict(parent["protocol"])
        assert a.pop("seed") != b.pop("seed")
        assert a == b and rep["data"] == parent["data"], rep["study"]


def test_strategies_share_settings(exp_modules):
    # "Every strategy gets the same settings": nothing in a protocol is per-strategy.
    run, _, _ = exp_modules
    for name in run.STUDIES:
        proto = run.load_study(name).get("protocol", {})
        assert not any(k in proto for k in ("enrich", "random"))


@pytest.mark.slow
def test_doc_numbers_match_committed_tables(exp_modules):
    _, figures, check = exp_modules
    if not figures.DOC.exists():
        pytest.skip("docs/results.md not written yet")
    assert check.mismatches() == []


@pytest.mark.slow
def test_check_catches_an_edited_number(exp_modules):
    _, figures, check = exp_modules
    blocks = figures.tables()
    if not blocks or not figures.DOC.exists():
        pytest.skip("no committed results yet")
    text = figures.DOC.read_text(encoding="utf-8")
    name, body = next((k, v) for k, v in blocks.items() if any(c.isdigit() for c in v))
    digit = next(c for c in body if c.isdigit())
    tampered = body.replace(digit, str((int(digit) + 1) % 10), 1)
    bad = check.mismatches(figures.fill_doc(text, {**blocks, name: tampered}))
    assert any(name in msg for msg in bad)


def test_fill_doc_round_trip(exp_modules):
    _, figures, _ = exp_modules
    text = "a\n<!-- table:x -->\nold\n<!-- /table:x -->\nb\n<!-- table:y -->\n<!-- /table:y -->\n"
    out = figures.fill_doc(text, {"x": "| new |\n"})
    assert figures.doc_blocks(out) == {"x": "| new |\n", "y": "(not run yet)\n"}
    assert out.startswith("a\n") and "\nb\n" in out
