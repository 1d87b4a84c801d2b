"""``enrich benchmark``: one run per folder, failures reported, config checked up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from enrich.cli import main

pytest.importorskip("torch")
pytest.importorskip("monai")

from test_cli_benchmark import TINY_YAML, make_workspace
from test_safety import Holder


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_YAML)
    return p


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_second_benchmark_on_one_folder_is_refused(
    tmp_path: Path, workspace: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    holder = Holder(out / ".enrich.lock", "enrich benchmark -w ws --out run")
    try:
        argv = ["benchmark", "-w", str(workspace), "-c", str(config), "--out", str(out), "-q"]
        assert main(argv) == 2
        line = error_line(capsys)
        assert f"pid {holder.proc.pid}" in line and "enrich benchmark -w ws --out run" in line
        assert sorted(p.name for p in out.iterdir()) == [".enrich.lock"]  # nothing trained
    finally:
        holder.release()


def test_every_model_failing_is_a_nonzero_exit(
    tmp_path: Path,
    workspace: Path,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import enrich.evaluate.tasks as tasks

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom: out of memory")

    monkeypatch.setattr(tasks, "train_and_score", boom)
    out = tmp_path / "run"
    argv = ["benchmark", "-w", str(workspace), "-c", str(config), "--out", str(out), "-q"]
    assert main([*argv, "--no-report"]) == 1
    line = error_line(capsys)
    assert line.startswith("error: all ") and "models failed (first error:" in line, line
    assert "boom: out of memory" in line


@pytest.mark.slow
def test_some_models_failing_says_how_many(
    tmp_path: Path,
    workspace: Path,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import enrich.evaluate.tasks as tasks

    real = tasks.train_and_score
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "train_and_score", flaky)
    out = tmp_path / "run"
    argv = ["benchmark", "-w", str(workspace), "-c", str(config), "--out", str(out), "-q"]
    assert main([*argv, "--no-report"]) == 0
    err = capsys.readouterr().err
    assert f"warning: 1 of {calls['n']} models failed" in err, err
    assert "--retry-failed" in err


def test_unknown_model_name_is_refused_before_any_work(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["benchmark", "-w", str(workspace), "--out", str(out), "--set", "model.name=unknown"]
    assert main(argv) == 2
    assert "model.name='unknown', expected one of resnet, unet" in error_line(capsys)
    assert not out.exists()


def test_model_names_match_the_registry() -> None:
    from enrich.evaluate.config import MODEL_NAMES
    from enrich.evaluate.tasks import MODELS

    assert set(MODEL_NAMES) == set(MODELS)


def test_report_baseline_must_be_a_strategy_of_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.csv").write_text(
        "strategy,size,metric,value\nenrich,5,auc,0.8\nrandom,5,auc,0.7\nfull,10,auc,0.9\n"
    )
    assert main(["report", str(run), "--baseline", "bogus"]) == 2
    assert "--baseline 'bogus': not a strategy of this run; expected one of enrich, random" in (
        error_line(capsys)
    )
    assert not (run / "report.html").exists()
