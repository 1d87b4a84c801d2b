"""``make demo``: its plan, estimates and commands, and the lines that keep a log alive."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from enrich import demo


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], float]]:
    steps: list[tuple[str, list[str], float]] = []
    monkeypatch.setattr(
        demo, "_step", lambda title, argv, expected: steps.append((title, argv, expected))
    )
    monkeypatch.setattr(demo, "_summary", lambda *a: None)
    monkeypatch.setattr(demo, "_echo_clip", lambda: Path("echo.dcm"))
    return steps


def test_demo_uses_the_shipped_models_and_passes_threads(
    recorded: list,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models = tmp_path / "models"
    for ws in ("xray", "echo", "cifar"):
        (models / ws).mkdir(parents=True)
        (models / ws / "config.json").write_text("{}")
    monkeypatch.setattr(demo, "MODELS", models)
    assert demo.main(["--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "enrich demo: 1 torch thread(s)" in out
    assert "plan: 6 steps, about " in out and "trains the β-VAE" not in out
    embeds = [argv for title, argv, _ in recorded if title.startswith("embed")]
    assert len(embeds) == 3
    for argv, ws in zip(embeds, ("xray", "echo", "cifar"), strict=True):
        assert argv[argv.index("--threads") + 1] == "1"
        assert argv[argv.index("--model-from") + 1] == str(models / ws)
        assert "--retrain" not in argv
    bench = recorded[-1][1]
    assert bench[0] == "benchmark" and bench[bench.index("--threads") + 1] == "1"
    assert all(expected > 0 for _, _, expected in recorded)


def test_demo_retrain_and_missing_models_train(
    recorded: list,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(demo, "MODELS", tmp_path / "none")
    demo.main(["--out", str(tmp_path / "out"), "--threads", "2", "--skip-benchmark"])
    out = capsys.readouterr().out
    assert out.count("(trains the β-VAE)") == 3 and "plan: 5 steps" in out
    embeds = [argv for title, argv, _ in recorded if title.startswith("embed")]
    assert all("--model-from" not in argv for argv in embeds)
    # Training is estimated longer than using a shipped model.
    trained = {title: s for title, _, s in recorded}
    recorded.clear()
    models = tmp_path / "models"
    (models / "xray").mkdir(parents=True)
    (models / "xray" / "config.json").write_text("{}")
    monkeypatch.setattr(demo, "MODELS", models)
    demo.main(["--out", str(tmp_path / "out2"), "--threads", "2", "--retrain", "--skip-benchmark"])
    embeds = [argv for title, argv, _ in recorded if title.startswith("embed")]
    assert all("--retrain" in argv and "--model-from" not in argv for argv in embeds)
    assert demo._estimate("xray", trains=False) < trained["embed chest X-ray (PneumoniaMNIST)"]


def test_heartbeat_prints_while_a_step_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(demo.sys, "stdout", stream)
    monkeypatch.setattr(demo, "HEARTBEAT_EVERY", 0.05)
    with demo._heartbeat("embed X", expected=12.0):
        deadline = time.monotonic() + 10
        while stream.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2
    assert (
        lines[0].startswith("   ... embed X: still working, ") and "expected about 12s" in lines[0]
    )


def test_the_demo_points_to_what_the_committed_studies_found() -> None:
    """The pointer at the end of the demo names a strategy that leads random in the committed
    study it cites (pooled z over the budgets, Mann-Whitney p < 0.05), and that strategy is
    ahead of ENRICH there: it cannot drift from docs/results/ unnoticed."""
    from enrich.evaluate import stats

    root = Path(__file__).resolve().parent.parent
    path = root / "docs" / "results" / demo.STUDY_POINTER["study"] / "results.csv"
    if not path.exists():  # an installed package without the repository's docs
        pytest.skip(f"{path} is not in this checkout")
    table = stats.read_results(path)
    pooled = stats.pooled_comparison(table, baseline="random").tests.set_index("strategy")
    name = demo.STUDY_POINTER["strategy"]
    row = pooled.loc[name]
    assert row["mean_z"] > row["mean_z_baseline"] and row["p"] < 0.05
    assert row["mean_z"] > pooled.loc["enrich", "mean_z"]
    assert f"--strategy {name}" in demo.STUDY_POINTER["text"]
