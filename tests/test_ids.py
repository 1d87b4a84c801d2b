"""Ids from file names (``--id-pattern``) and labels from a side table (``--labels``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enrich.cli import main
from enrich.errors import EnrichError
from enrich.io import discover
from enrich.io._ids import annotate, apply_id_pattern, join_labels, parse_label_columns
from enrich.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
PATTERN = r"(?P<clip_id>patient_(?P<patient_id>\d+)_[LR]\d(?:_2)?)\.mp4$"


def write_mp4(path: Path, n: int, level: int) -> Path:
    """A real H.264/MPEG-4 clip of `n` frames (PyAV), brightness from `level`."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height = 48, 32
        s.pix_fmt = "yuv420p"
        for i in range(n):
            img = np.full((32, 48, 3), (level + 7 * i) % 250, dtype=np.uint8)
            img[:, ::6] = 255 - img[:, ::6]
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def lus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A COVID-BLUES-shaped folder: 4 patients, 2-3 clips each (one repeat ``_2``), and
    ``severity.csv`` keyed like the real one (clip name without .mp4, extra columns)."""
    root = tmp_path_factory.mktemp("lus")
    videos = root / "lus_videos"
    videos.mkdir()
    clips = ["patient_1_L1", "patient_1_R2", "patient_2_L1", "patient_2_L1_2", "patient_7_R3",
             "patient_7_L2", "patient_12_R1", "patient_12_L3"]  # fmt: skip
    for k, name in enumerate(clips):
        write_mp4(videos / f"{name}.mp4", 3 + k % 2, 30 * k)
    labels = ["yes", "no", "yes", "yes", "no", "no", "yes", "no"]
    pd.DataFrame(
        {
            "video_file": clips,
            "Severity Score": [2.0, 0.0, 3.0, 3.0, 1.0, 0.0, 2.0, 1.0],
            "A-lines": ["no"] * len(clips),
            "B-lines": labels,
            "comments": ["a, b"] * len(clips),
        }
    ).to_csv(root / "severity.csv", index=False)
    return root


def test_pattern_fills_patient_and_clip_for_every_frame(lus: Path) -> None:
    d = apply_id_pattern(discover(lus / "lus_videos"), PATTERN)
    m = d.manifest
    assert len(m) == 8 * 3 + 4  # 3 or 4 frames per clip, every frame read
    expect_pid = m["source_path"].str.extract(r"patient_(\d+)_")[0]
    assert (m["patient_id"] == expect_pid).all()
    assert (m["clip_id"] + ".mp4" == m["source_path"].map(lambda p: Path(p).name)).all()
    assert set(m["patient_id"]) == {"1", "2", "7", "12"}
    assert m.loc[m.clip_id == "patient_2_L1_2", "patient_id"].eq("2").all()


def test_labels_join_per_clip_reaches_every_frame(lus: Path) -> None:
    d = annotate(
        discover(lus / "lus_videos"),
        id_pattern=PATTERN,
        labels=lus / "severity.csv",
        labels_columns="video_file=clip_id,B-lines=label",
    )
    table = pd.read_csv(lus / "severity.csv").set_index("video_file")["B-lines"]
    m = d.manifest
    assert m["label"].notna().all()
    assert (m["label"] == m["clip_id"].map(table)).all()
    assert m.groupby("clip_id")["label"].nunique().eq(1).all()


def test_labels_join_per_patient(lus: Path, tmp_path: Path) -> None:
    pd.DataFrame({"pid": ["1", "2", "7", "12"], "cov_test": ["pos", "neg", "neg", "pos"]}).to_csv(
        tmp_path / "clinical.csv", index=False
    )
    d = annotate(
        discover(lus / "lus_videos"),
        id_pattern=PATTERN,
        labels=tmp_path / "clinical.csv",
        labels_key="patient_id",
        labels_columns={"pid": "patient_id", "cov_test": "label"},
    )
    m = d.manifest
    want = m["patient_id"].map({"1": "pos", "2": "neg", "7": "neg", "12": "pos"})
    assert (m["label"] == want).all()


def test_label_group_in_pattern(lus: Path, tmp_path: Path) -> None:
    root = tmp_path / "cls"
    for lab in ("normal", "bline"):
        (root / lab).mkdir(parents=True)
        write_mp4(root / lab / "clip.mp4", 2, 40 if lab == "normal" else 90)
    d = apply_id_pattern(discover(root), r"/(?P<label>normal|bline)/(?P<clip_id>[^/]+)\.mp4$")
    m = d.manifest
    assert sorted(m["label"].unique()) == ["bline", "normal"]
    assert (m["label"] == m["source_path"].map(lambda p: Path(p).parent.name)).all()


def test_unmatched_path_is_an_error_naming_it_or_skipped(lus: Path, tmp_path: Path) -> None:
    src = tmp_path / "mixed"
    src.mkdir()
    write_mp4(src / "patient_3_L1.mp4", 3, 10)
    write_mp4(src / "scan_final.mp4", 2, 50)
    with pytest.raises(
        EnrichError, match=r"does not match .*scan_final\.mp4.*--id-pattern-missing"
    ):
        apply_id_pattern(discover(src), PATTERN)
    d = apply_id_pattern(discover(src), PATTERN, missing="skip")
    assert set(d.manifest["clip_id"]) == {"patient_3_L1"}
    assert len(d.manifest) == 3
    assert d.skipped["source_path"].str.endswith("scan_final.mp4").tolist() == [True]
    assert "does not match" in d.skipped["reason"].iloc[0]


@pytest.mark.parametrize(
    ("pattern", "match"),
    [
        (r"(?P<patient>\d+)", "unknown group name.*patient"),
        (r"patient_\d+", "no named group"),
        (r"(?P<clip_id>[", "not a valid regular expression"),
    ],
)
def test_bad_patterns(pattern: str, match: str, lus: Path) -> None:
    with pytest.raises(EnrichError, match=match):
        apply_id_pattern(discover(lus / "lus_videos"), pattern)


def test_csv_manifest_values_win_over_the_pattern(lus: Path, tmp_path: Path) -> None:
    videos = lus / "lus_videos"
    csv = tmp_path / "m.csv"
    pd.DataFrame(
        {
            "path": [str(videos / "patient_1_L1.mp4"), str(videos / "patient_7_R3.mp4")],
            "patient_id": ["P-one", ""],
            "label": ["", "override"],
        }
    ).to_csv(csv, index=False)
    d = annotate(
        discover(csv),
        sources=[csv],
        id_pattern=r"(?P<clip_id>patient_(?P<patient_id>\d+)_[LR]\d)\.mp4$",
        labels=lus / "severity.csv",
        labels_columns="video_file=clip_id,B-lines=label",
    )
    m = d.manifest.set_index("clip_id")
    assert set(m.loc["patient_1_L1", "patient_id"]) == {"P-one"}  # the CSV's value
    assert set(m.loc["patient_7_R3", "patient_id"]) == {"7"}  # empty in the CSV: the pattern
    assert set(m.loc["patient_1_L1", "label"]) == {"yes"}  # empty in the CSV: the side table
    assert set(m.loc["patient_7_R3", "label"]) == {"override"}


def test_missing_label_is_an_error_or_skipped(lus: Path, tmp_path: Path) -> None:
    side = pd.read_csv(lus / "severity.csv")
    side.loc[side.video_file == "patient_7_L2", "B-lines"] = ""  # empty cell: missing
    side = side.loc[side.video_file != "patient_12_R1"]  # absent row: missing
    side.to_csv(tmp_path / "partial.csv", index=False)
    base = apply_id_pattern(discover(lus / "lus_videos"), PATTERN)
    cols = parse_label_columns("video_file=clip_id,B-lines=label")
    with pytest.raises(EnrichError, match=r"no label for clip_id 'patient_(7_L2|12_R1)'.*more"):
        join_labels(base, tmp_path / "partial.csv", columns=cols)
    d = join_labels(base, tmp_path / "partial.csv", columns=cols, missing="skip")
    assert not d.manifest["clip_id"].isin(["patient_7_L2", "patient_12_R1"]).any()
    assert d.manifest["label"].notna().all()
    assert sorted(Path(p).name for p in d.skipped["source_path"]) == [
        "patient_12_R1.mp4",
        "patient_7_L2.mp4",
    ]


def test_bad_side_tables(lus: Path, tmp_path: Path) -> None:
    base = apply_id_pattern(discover(lus / "lus_videos"), PATTERN)
    cols = parse_label_columns("video_file=clip_id,B-lines=label")
    with pytest.raises(EnrichError, match="no such file"):
        join_labels(base, tmp_path / "nope.csv", columns=cols)
    with pytest.raises(EnrichError, match="has no column 'Video name'"):
        join_labels(base, lus / "severity.csv", columns={"Video name": "clip_id"})
    with pytest.raises(EnrichError, match="exactly one column 'label'"):
        join_labels(base, lus / "severity.csv", columns={"video_file": "clip_id"})
    pd.DataFrame({"clip_id": ["patient_1_L1", "patient_1_L1.mp4"], "label": ["a", "b"]}).to_csv(
        tmp_path / "clash.csv", index=False
    )
    with pytest.raises(EnrichError, match="two labels, 'a' and 'b'"):
        join_labels(base, tmp_path / "clash.csv")
    for spec in ("video_file", "=label", "a=b,a=c"):
        with pytest.raises(EnrichError, match="--labels-columns"):
            parse_label_columns(spec)


def test_cli_embed_with_pattern_and_labels(
    lus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    rc = main(
        [
            "embed",
            str(lus / "lus_videos"),
            "-w",
            str(ws),
            "--embedder",
            "pixels",
            "--latent-dim",
            "4",
            "--id-pattern",
            PATTERN,
            "--labels",
            str(lus / "severity.csv"),
            "--labels-columns",
            "video_file=clip_id,B-lines=label",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    m = Workspace.open(ws).manifest()
    assert len(m) == 28 and m["label"].notna().all()
    assert m.groupby("patient_id")["clip_id"].nunique().to_dict() == {
        "1": 2, "12": 2, "2": 2, "7": 2}  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--id-pattern", r"(?P<case>\d+)"], "unknown group name"),
        (
            ["--id-pattern", r"(?P<clip_id>clip_\d+)\.mp4$"],
            r"does not match .*patient_12_L3\.mp4 \(and 7 more",
        ),
        (["--labels-columns", "a=b"], "needs --labels"),
        (["--id-pattern", PATTERN, "--labels", "missing.csv"], "missing.csv: no such file"),
    ],
)
def test_cli_bad_input_one_line_and_no_workspace(
    extra: list[str], match: str, lus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    ws = tmp_path / "ws"
    rc = main(["embed", str(lus / "lus_videos"), "-w", str(ws), "--embedder", "pixels", *extra])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(match, lines[0]), lines[0]
    assert not (ws / Workspace.MANIFEST).exists()


def test_covid_blues_study_splits_by_patient(lus: Path) -> None:
    """The committed COVID-BLUES configs, on a COVID-BLUES-shaped manifest built by the same
    ids and labels code: no patient is in two of train / validation / test."""
    sys.path.insert(0, str(ROOT / "experiments"))
    from run import load_study  # type: ignore[import-not-found]

    from enrich.evaluate.config import protocol_config
    from enrich.evaluate.splits import split_manifest

    names = [n for n in sys.modules["run"].STUDIES if n.startswith("covid_blues")]
    assert len(names) == 4
    for name in names:
        study = load_study(name)
        data = study["data"]
        cols = ",".join(f"{k}={v}" for k, v in data["labels"]["columns"].items())
        # the 4 patients copied 6 times (24 patients): enough for the study's split fractions
        d = annotate(
            discover(lus / "lus_videos"),
            id_pattern=data["id_pattern"],
            labels=lus / "severity.csv",
            labels_columns=cols,
        )
        m = d.manifest
        many = pd.concat(
            [
                m.assign(patient_id=m["patient_id"] + f"-{r}", id=m["id"] + f"-{r}")
                for r in range(6)
            ],
            ignore_index=True,
        )
        cfg = protocol_config(study["protocol"])
        sp = cfg.split
        split = split_manifest(
            many,
            seed=cfg.seed,
            test_fraction=sp.test_fraction,
            validation_fraction=sp.validation_fraction,
            column=sp.column,
            group_by=sp.group_by,
            labels=(many["label"] == "yes").to_numpy().astype(np.int64),
        )
        sides = {
            s: set(many.iloc[split.indices(s)]["patient_id"]) for s in ("train", "val", "test")
        }
        assert all(sides.values()), sides
        assert not (sides["train"] & sides["test"] or sides["train"] & sides["val"])
        assert not sides["val"] & sides["test"]
        assert sum(len(v) for v in sides.values()) == many["patient_id"].nunique()


def test_shared_data_path_resolves_from_the_repo_root_or_says_it_is_missing(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(ROOT / "experiments"))
    import run  # type: ignore[import-not-found]

    if (ROOT / "../shared/data").is_dir():  # the checkouts of this project have it beside them
        assert run._source("../shared/data") == str(ROOT / "../shared/data")
    with pytest.raises(SystemExit, match=r"^\.\./no_such_folder_xyz/data: not found \(resolved to"):
        run._source("../no_such_folder_xyz/data")
