"""`enrich rank` and `enrich redundancy` run in-process, with every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enrich.cli import main

from _data import clustered


@pytest.fixture
def emb_npy(tmp_path: Path) -> Path:
    p = tmp_path / "emb.npy"
    np.save(p, clustered(400, 8, seed=0))
    return p


@pytest.fixture
def emb_npz(tmp_path: Path) -> Path:
    p = tmp_path / "emb.npz"
    ids = np.array([f"img_{i:03d}.png" for i in range(300)])
    np.savez(p, ids=ids, vectors=clustered(300, 8, seed=1))
    return p


def fails(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert match in err, err


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "rank" in out and "redundancy" in out


def test_rank_writes_order_and_sidecar(tmp_path: Path, emb_npy: Path) -> None:
    out = tmp_path / "order.csv"
    assert (
        main(
            [
                "rank",
                "--embeddings",
                str(emb_npy),
                "--initial",
                "0.02",
                "--seed",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    t = pd.read_csv(out)
    assert list(t.columns) == ["rank", "id", "max_similarity_at_pick", "initial"]
    assert sorted(t["id"]) == list(range(400))
    assert t["initial"].sum() == 8 and t["initial"][:8].all()
    assert t["max_similarity_at_pick"][:8].isna().all()
    assert t["max_similarity_at_pick"][8:].notna().all()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["seed"] == 3 and meta["strategy"] == "enrich"
    assert meta["input_fingerprint"].startswith("sha256:")
    # the same ranking as the Python API
    import enrich

    r = enrich.rank(np.load(emb_npy), initial=0.02, seed=3)
    assert t["id"].tolist() == r.order.tolist()


def test_rank_from_labeled_ids(tmp_path: Path, emb_npz: Path) -> None:
    labeled = tmp_path / "done.txt"
    labeled.write_text("img_010.png\nimg_020.png\n\n")
    out = tmp_path / "o.csv"
    assert (
        main(
            ["rank", "-e", str(emb_npz), "--labeled", str(labeled), "--budget", "5", "-o", str(out)]
        )
        == 0
    )
    t = pd.read_csv(out)
    assert t["id"].tolist()[:2] == ["img_010.png", "img_020.png"]
    assert len(t) == 7 and t["initial"].tolist() == [True, True] + [False] * 5


def test_random_strategy(tmp_path: Path, emb_npy: Path) -> None:
    out = tmp_path / "r.csv"
    assert main(["rank", "-e", str(emb_npy), "--strategy", "random", "-o", str(out)]) == 0
    assert len(pd.read_csv(out)) == 400


def test_redundancy_outputs_two_datasets(tmp_path: Path, emb_npy: Path, emb_npz: Path) -> None:
    out = tmp_path / "red"
    assert (
        main(
            [
                "redundancy",
                "-e",
                str(emb_npy),
                "-e",
                str(emb_npz),
                "--name",
                "echo",
                "--name",
                "other",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    t = pd.read_csv(out / "redundancy.csv")
    assert {"dataset", "id", "max_similarity", "nearest_id"} <= set(t.columns)
    assert (t["dataset"] == "echo").sum() == 400 and (t["dataset"] == "other").sum() == 300
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["datasets"]) == {"echo", "other"}
    assert (out / "cdf.png").stat().st_size > 1000
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def write(tmp_path: Path, name: str, arr: object) -> str:
    p = tmp_path / name
    np.save(p, arr)
    return str(p)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda t: write(t, "nan.npy", np.array([[1.0, 2], [np.nan, 1], [3, 4]])),
            "NaN or inf: ids 1",
        ),
        (
            lambda t: write(t, "zero.npy", np.array([[1.0, 2], [0, 0], [0, 0], [3, 4]])),
            "zero-norm row(s)",
        ),
        (lambda t: write(t, "flat.npy", np.arange(5.0)), "expected a 2-D"),
        (lambda t: write(t, "one.npy", np.ones((1, 3))), "N=1"),
        (lambda t: str(t / "missing.npy"), "no such file"),
        (
            lambda t: (t / "bad.npy").write_bytes(b"not numpy") and str(t / "bad.npy"),
            "cannot read embeddings",
        ),
    ],
)
@pytest.mark.parametrize("command", ["rank", "redundancy"])
def test_bad_embedding_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, match: str, command: str
) -> None:
    path = make(tmp_path)
    fails(capsys, [command, "-e", path, "--out", str(tmp_path / "out")], match)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ragged_and_duplicate_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ragged = tmp_path / "ragged.npy"
    np.save(ragged, np.array([np.ones(2), np.ones(3)], dtype=object), allow_pickle=True)
    fails(capsys, ["rank", "-e", str(ragged), "-o", str(tmp_path / "o.csv")], "ragged")
    dup = tmp_path / "dup.npz"
    np.savez(dup, ids=np.array(["a", "b", "a"]), vectors=np.eye(3))
    fails(capsys, ["rank", "-e", str(dup), "-o", str(tmp_path / "o.csv")], "duplicate ids: a")
    nokeys = tmp_path / "nokeys.npz"
    np.savez(nokeys, x=np.eye(3))
    fails(capsys, ["rank", "-e", str(nokeys), "-o", str(tmp_path / "o.csv")], "expected 'vectors'")


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--budget", "400"], "budget=400 is larger than the 399 images"),
        (["--initial", "1.5"], "initial=1.5 is out of range"),
        (["--initial", "401"], "initial=401 images is out of range"),
        (["--initial", "abc"], "--initial 'abc'"),
        (["--budget", "-2"], "negative"),
    ],
)
def test_bad_rank_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], emb_npy: Path, extra: list[str], match: str
) -> None:
    out = tmp_path / "o.csv"
    fails(capsys, ["rank", "-e", str(emb_npy), "-o", str(out), *extra], match)
    assert not out.exists()


def test_labeled_ids_not_in_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], emb_npz: Path
) -> None:
    labeled = tmp_path / "l.txt"
    labeled.write_text("img_001.png\nnope.png\nalso-missing\n")
    fails(
        capsys,
        ["rank", "-e", str(emb_npz), "--labeled", str(labeled), "-o", str(tmp_path / "o.csv")],
        "2 id(s) not in the embeddings: nope.png (line 2), also-missing (line 3)",
    )
    fails(
        capsys,
        [
            "rank",
            "-e",
            str(emb_npz),
            "--labeled",
            str(tmp_path / "none.txt"),
            "-o",
            str(tmp_path / "o.csv"),
        ],
        "no such file",
    )


def test_interrupted_run_leaves_previous_output(
    tmp_path: Path,
    emb_npy: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "order.csv"
    out.write_text("previous,complete\n")
    import enrich.select.enrich as mod

    def boom(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "greedy_order", boom)
    assert main(["rank", "-e", str(emb_npy), "-o", str(out)]) == 130
    assert out.read_text() == "previous,complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy", "order.csv"]
    assert not list(tmp_path.glob(".order*"))
    assert "interrupted" in capsys.readouterr().err


def test_atomic_write_survives_failure_mid_write(tmp_path: Path) -> None:
    from enrich._atomic import atomic_path

    target = tmp_path / "x.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk died")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
