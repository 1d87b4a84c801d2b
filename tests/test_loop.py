"""The labeling loop: `enrich next`, `enrich export`, `enrich labels import`, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enrich.cli import main
from enrich.embeddings import Embeddings
from enrich.loop import load_batches, next_batch, read_labels
from enrich.workspace import Workspace

from _data import clustered

N = 80


def make_ws(path: Path, n: int = N, *, files: bool = True, seed: int = 0) -> Workspace:
    """n real PNG files in 10 patients and 20 clips, with clustered embeddings."""
    from PIL import Image

    ws = Workspace.create(path / "ws")
    src = path / "images"
    src.mkdir(exist_ok=True)
    ids = [f"p{i % 10}/img{i:03d}.png" for i in range(n)]
    for i, k in enumerate(ids):
        f = src / k
        f.parent.mkdir(exist_ok=True)
        if files and not f.exists():
            Image.fromarray(np.full((4, 4), i % 256, np.uint8)).save(f)
    ws.write_manifest(
        pd.DataFrame(
            {
                "id": ids,
                "source_path": [str(src / k) for k in ids],
                "patient_id": [f"P{i % 10}" for i in range(n)],
                "clip_id": [f"C{i % 20}" for i in range(n)],
            }
        )
    )
    ws.write_embeddings(Embeddings(np.array(ids), clustered(200, 8, seed=seed)[:n]))
    return ws


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return make_ws(tmp_path)


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "id,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path


def fails(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert match in err, err


def n_batches(ws: Workspace) -> int:
    return len(list((ws.runs_dir / "batches").glob("batch-*.json")))


# -- enrich next ---------------------------------------------------------------------------------
def test_next_is_the_enrich_order_from_the_labeled_set(ws: Workspace, tmp_path: Path) -> None:
    import enrich

    labeled = write_csv(tmp_path / "l.csv", [("p0/img000.png", "a"), ("p1/img011.png", "b")])
    argv = ["next", "-w", str(ws.path), "--labeled", str(labeled), "--budget", "6"]
    assert main([*argv, "--out", str(tmp_path / "b1")]) == 0
    t = pd.read_csv(tmp_path / "b1" / "batch.csv")
    assert list(t.columns[:4]) == ["rank", "id", "batch", "max_similarity_at_pick"]
    emb = ws.embeddings()
    ref = enrich.rank(
        emb.vectors, initial=emb.index_of(["p0/img000.png", "p1/img011.png"]), budget=6
    )
    assert t["id"].tolist() == emb.ids[ref.picks].tolist()
    assert t["patient_id"].notna().all() and t["path"].str.endswith(".png").all()
    rec = json.loads((ws.runs_dir / "batches" / "batch-0001.json").read_text())
    assert rec["batch"] == 1 and rec["strategy"] == "enrich" and rec["seed"] == 0
    assert rec["ids"] == t["id"].tolist() and rec["created_at"]
    # the same command again: the same batch, nothing new recorded
    assert main([*argv, "--out", str(tmp_path / "b1again")]) == 0
    assert n_batches(ws) == 1
    again = pd.read_csv(tmp_path / "b1again" / "batch.csv")
    assert again["id"].tolist() == t["id"].tolist()


def test_open_batches_are_handed_out_and_labeling_closes_them(
    ws: Workspace, tmp_path: Path
) -> None:
    import enrich

    first = next_batch(ws, labeled=["p0/img000.png"], budget=5)
    second = next_batch(ws, labeled=["p0/img000.png"], budget=4)  # another request: new batch
    assert second.number == 2 and not set(first.ids) & set(second.ids)
    emb = ws.embeddings()
    # the open batch counts as chosen: batch 2 continues the order after batch 1
    ref = enrich.rank(emb.vectors, initial=emb.index_of(["p0/img000.png", *first.ids]), budget=4)
    assert second.ids == emb.ids[ref.picks].tolist()
    # once batch 1 is labeled, only batch 2 stays open
    done = ["p0/img000.png", *first.ids]
    third = next_batch(ws, labeled=done, budget=3)
    assert third.record["open_batches"] == [2]
    assert not set(third.ids) & (set(first.ids) | set(second.ids))
    # --close 2 hands its images out again
    fourth = next_batch(ws, labeled=done, budget=3, close=[2, 3])
    assert fourth.record["closed"] == [2, 3] and fourth.record["open_batches"] == []
    assert len(load_batches(ws)) == 4


def test_images_added_later_are_ranked_in_the_next_batch(tmp_path: Path) -> None:
    ws = make_ws(tmp_path, n=60)
    b1 = next_batch(ws, labeled=["p0/img000.png"], budget=5)
    before = ws.embeddings()
    grown = make_ws(tmp_path, n=N)  # `enrich embed` on the grown folder: same 60 + 20 new
    np.testing.assert_array_equal(grown.embeddings().vectors[:60], before.vectors)
    b2 = next_batch(grown, labeled=["p0/img000.png", *b1.ids], budget=10)
    assert b2.record["n_images"] == N and b2.number == 2
    ids = grown.embeddings().ids
    import enrich

    emb = grown.embeddings()
    ref = enrich.rank(emb.vectors, initial=emb.index_of(["p0/img000.png", *b1.ids]), budget=10)
    assert b2.ids == ids[ref.picks].tolist()


def test_first_batch_with_nothing_labeled_is_seeded(ws: Workspace, tmp_path: Path) -> None:
    a = next_batch(ws, budget=4, seed=3)
    assert len(a.ids) == 4 and a.max_similarity[0] is None
    assert next_batch(ws, budget=4, seed=3).reused


def test_caps_per_patient_and_clip_and_coverage(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "next",
        "-w",
        str(ws.path),
        "--budget",
        "12",
        "--max-per-patient",
        "2",
        "--out",
        str(tmp_path / "b"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    t = pd.read_csv(tmp_path / "b" / "batch.csv")
    assert len(t) == 12 and t["patient_id"].value_counts().max() <= 2
    assert f"{t['patient_id'].nunique()} patients" in out and "10 in the workspace" in out
    b = next_batch(ws, labeled=t["id"].tolist(), budget=10, max_per_clip=1)
    clips = ws.manifest().set_index("id").loc[b.ids, "clip_id"]
    assert clips.is_unique
    with pytest.raises(Exception, match="only"):
        next_batch(ws, labeled=t["id"].tolist(), budget=15, max_per_patient=1)


def test_until_similarity_stops_where_every_image_has_a_close_neighbour(ws: Workspace) -> None:
    import enrich

    full = next_batch(ws, labeled=["p0/img000.png"], budget=40)
    sims = np.array(full.max_similarity, dtype=float)
    t = float(np.quantile(sims, 0.5))
    emb = ws.embeddings()
    b = next_batch(ws, labeled=["p0/img000.png"], budget=40, until_similarity=t, close=[1])
    ref = enrich.rank(emb.vectors, initial=emb.index_of(["p0/img000.png"]))
    k = int(np.argmax(ref.max_similarity[1:] > t))  # first pick above T
    assert b.ids == emb.ids[ref.picks[:k]].tolist()
    assert all(s <= t for s in b.max_similarity)
    assert b.record["stopped_at_similarity"] == t


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--budget", "0"], "expected a whole number >= 1"),
        (["--budget", "500"], "more than the"),
        (["--budget", "3", "--strategy", "random", "--until-similarity", "0.9"], "needs"),
        (["--budget", "3", "--max-per-patient", "0"], "max_per_patient=0"),
        (["--budget", "3", "--close", "7"], "no such batch"),
    ],
)
def test_next_bad_values(
    ws: Workspace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    match: str,
) -> None:
    fails(capsys, ["next", "-w", str(ws.path), *extra, "--out", str(tmp_path / "o")], match)
    assert n_batches(ws) == 0


def test_next_bad_labels_files(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["next", "-w", str(ws.path), "--budget", "3", "--out", str(tmp_path / "o")]
    unknown = write_csv(tmp_path / "u.csv", [("p0/img000.png", "a"), ("nope.png", "b")])
    fails(capsys, [*base, "--labeled", str(unknown)], "1 unknown id")
    conflict = write_csv(tmp_path / "c.csv", [("p0/img000.png", "a"), ("p0/img000.png", "b")])
    fails(capsys, [*base, "--labeled", str(conflict)], "1 conflicting label")
    broken = tmp_path / "b.json"
    broken.write_text("[{")
    fails(capsys, [*base, "--labeled", str(broken)], "not valid JSON")
    fails(capsys, [*base, "--labeled", str(tmp_path / "missing.csv")], "no such labels file")
    assert n_batches(ws) == 0


def test_hand_edited_or_missing_batches_are_refused(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    next_batch(ws, budget=3)
    b2 = next_batch(ws, budget=4)
    rec = json.loads(b2.path.read_text())
    rec["ids"][0] = rec["ids"][1]
    b2.path.write_text(json.dumps(rec))
    argv = ["next", "-w", str(ws.path), "--budget", "2", "--out", str(tmp_path / "o")]
    fails(capsys, argv, "edited by hand")
    b2.path.unlink()
    (ws.runs_dir / "batches" / "batch-0003.json").write_text(
        (ws.runs_dir / "batches" / "batch-0001.json").read_text()
    )
    fails(capsys, argv, "records batch 1")
    assert n_batches(ws) == 2


# -- reading labels ------------------------------------------------------------------------------
def ls_task(task_id: int, data: dict, labels: list[list[str]], cancelled: bool = False) -> dict:
    """A task as Label Studio's JSON export writes it."""
    return {
        "id": task_id,
        "data": data,
        "meta": {},
        "annotations": [
            {
                "id": 100 + task_id * 10 + k,
                "completed_by": 1,
                "was_cancelled": cancelled,
                "result": [
                    {
                        "id": "abc",
                        "type": "choices",
                        "from_name": "label",
                        "to_name": "image",
                        "origin": "manual",
                        "value": {"choices": lab},
                    }
                ],
            }
            for k, lab in enumerate(labels)
        ],
        "drafts": [],
        "predictions": [],
        "project": 3,
    }


def test_label_studio_export_round_trip(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    next_batch(ws, budget=6)
    root = tmp_path / "images"
    assert (
        main(
            [
                "export",
                "1",
                "-w",
                str(ws.path),
                "--format",
                "labelstudio",
                "--root",
                str(root),
                "--out",
                str(tmp_path / "ls"),
            ]
        )
        == 0
    )
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    batch = load_batches(ws)[0]
    assert [t["meta"]["id"] for t in tasks] == batch.ids
    assert [t["meta"]["rank"] for t in tasks] == list(range(6))
    assert tasks[0]["data"]["image"] == f"/data/local-files/?d={batch.ids[0]}"
    assert tasks[0]["meta"]["patient_id"].startswith("P")
    # what Label Studio's export gives back: only data, no enrich_id: matched by the URL
    export = [
        ls_task(i, {"image": t["data"]["image"]}, [["x" if i % 2 else "y"]])
        for i, t in enumerate(tasks)
    ]
    export.append(ls_task(99, {"image": "/data/local-files/?d=p0/img001.png"}, []))
    export[5]["annotations"][0]["was_cancelled"] = True  # a skipped task is no label
    p = tmp_path / "export.json"
    p.write_text(json.dumps(export))
    assert main(["labels", "import", str(p), "-w", str(ws.path)]) == 0
    out = capsys.readouterr().out
    assert "5 label(s) written" in out and "2 without annotation" in out
    m = ws.manifest().set_index("id")
    assert m.loc[batch.ids[:5], "label"].tolist() == ["y", "x", "y", "x", "y"]
    assert m.loc[batch.ids[:5], "labeled_at"].notna().all()
    assert m.loc[batch.ids[5:], "label"].isna().all()
    # the imported labels are what `enrich next` treats as labeled
    nxt = next_batch(ws, budget=3)
    assert nxt.record["n_labeled"] == 5 and not set(nxt.ids) & set(batch.ids)


def test_label_studio_json_min_and_other_project(ws: Workspace, tmp_path: Path) -> None:
    from enrich.loop import match_labels

    p = tmp_path / "min.json"
    p.write_text(
        json.dumps(
            [
                {
                    "image": "/data/local-files/?d=p3/img003.png",
                    "id": 7,
                    "label": "cat",
                    "annotator": 1,
                    "annotation_id": 4,
                    "created_at": "x",
                    "updated_at": "y",
                    "lead_time": 2.1,
                },
            ]
        )
    )
    t = read_labels(p).table
    assert t[["key", "label"]].values.tolist() == [["p3/img003.png", "cat"]]
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps(
            [
                ls_task(
                    1,
                    {
                        "image": "x.png",
                        "enrich_id": "p0/img000.png",
                        "enrich_workspace": "feedbeef0000",
                    },
                    [["a"]],
                )
            ]
        )
    )
    with pytest.raises(Exception, match="another enrich workspace"):
        match_labels(read_labels(other), ws.manifest(), workspace_uid="0123456789ab")


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><id>4</id><name>enrich</name></task></meta>
  <image id="0" name="p2/img002.png" width="4" height="4">
    <tag label="abnormal" source="manual"></tag>
  </image>
  <image id="1" name="p3/img013.png" width="4" height="4">
    <box label="lesion" source="manual" occluded="0" xtl="0" ytl="0" xbr="1" ybr="1" z_order="0"/>
  </image>
  <image id="2" name="p4/img004.png" width="4" height="4"></image>
  <image id="3" name="elsewhere/zzz.png" width="4" height="4"><tag label="normal"/></image>
</annotations>
"""


def test_cvat_xml_import_reports_unknown_and_conflicts(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "annotations.xml"
    p.write_text(CVAT_XML)
    problems = tmp_path / "problems.csv"
    assert main(["labels", "import", str(p), "-w", str(ws.path), "--problems", str(problems)]) == 1
    out = capsys.readouterr().out
    assert "2 label(s) written" in out and "1 unknown id" in out and "1 without annotation" in out
    m = ws.manifest().set_index("id")
    assert (
        m.at["p2/img002.png", "label"] == "abnormal" and m.at["p3/img013.png", "label"] == "lesion"
    )
    prob = pd.read_csv(problems)
    assert prob["problem"].tolist() == ["unknown"] and prob["key"][0] == "elsewhere/zzz.png"
    # a relabel is a problem unless --overwrite; a conflict inside the file is never written
    csv = write_csv(
        tmp_path / "l.csv",
        [("p2/img002.png", "normal"), ("p5/img005.png", "a"), ("p5/img005.png", "b")],
    )
    assert (
        main(["labels", "import", str(csv), "-w", str(ws.path), "--problems", str(problems)]) == 1
    )
    prob = pd.read_csv(problems)
    assert sorted(prob["problem"]) == ["conflict", "relabel"]
    m = ws.manifest().set_index("id")
    assert m.at["p2/img002.png", "label"] == "abnormal" and pd.isna(m.at["p5/img005.png", "label"])
    assert (
        main(
            [
                "labels",
                "import",
                str(csv),
                "-w",
                str(ws.path),
                "--overwrite",
                "--problems",
                str(problems),
            ]
        )
        == 1
    )
    assert ws.manifest().set_index("id").at["p2/img002.png", "label"] == "normal"


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("a.xml", "<annotations><image", "not valid XML"),
        ("a.xml", "<root/>", "expected a CVAT <annotations>"),
        ("a.xml", "<annotations><track id='0' label='x'/></annotations>", "CVAT for video"),
        ("a.json", '{"x": 1}', "expected a Label Studio JSON export"),
        ("a.json", '[{"data": 3}]', "has no 'data' object"),
        ("a.csv", "path,label\n,cat\n", "row 2 has no path"),
        ("a.csv", "foo,bar\n1,2\n", "has no id column"),
        ("a.csv", "id\n", "holds no ids"),
    ],
)
def test_malformed_exports(
    ws: Workspace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    match: str,
) -> None:
    p = tmp_path / name
    p.write_text(text)
    before = ws.manifest_path.read_bytes()
    fails(capsys, ["labels", "import", str(p), "-w", str(ws.path)], match)
    assert ws.manifest_path.read_bytes() == before


# -- exports -------------------------------------------------------------------------------------
def test_cvat_spec_cuts_the_order_into_jobs_of_consecutive_ranks(
    ws: Workspace, tmp_path: Path
) -> None:
    next_batch(ws, budget=11)
    root = tmp_path / "images"
    assert (
        main(
            [
                "export",
                str(ws.runs_dir / "batches" / "batch-0001.json"),
                "--format",
                "cvat",
                "--root",
                str(root),
                "--job-size",
                "4",
                "--classes",
                "a,b",
                "--out",
                str(tmp_path / "cvat"),
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "cvat" / "data.json").read_text())
    files = (tmp_path / "cvat" / "files.txt").read_text().split()
    assert files == load_batches(ws)[0].ids  # relative to the share root
    assert data["sorting_method"] == "predefined" and data["server_files"] == files
    assert data["job_file_mapping"] == [files[0:4], files[4:8], files[8:11]]
    task = json.loads((tmp_path / "cvat" / "task.json").read_text())
    assert task["labels"] == [{"name": "a"}, {"name": "b"}]
    _validate_with_cvat_sdk(tmp_path / "cvat")


def _validate_with_cvat_sdk(folder: Path) -> None:
    """Build cvat_sdk's DataRequest / TaskWriteRequest from the spec (the SDK checks types
    and allowed values). cvat-sdk lives in its own venv: ENRICH_CVAT_PYTHON names it."""
    import importlib.util
    import os
    import subprocess
    import sys

    python = (
        sys.executable
        if importlib.util.find_spec("cvat_sdk")
        else os.environ.get("ENRICH_CVAT_PYTHON", "/tmp/cvatvenv/bin/python")
    )
    if not Path(python).exists():
        pytest.skip("cvat-sdk not installed (pip install cvat-sdk, or set ENRICH_CVAT_PYTHON)")
    code = (
        "import json, sys\n"
        "from cvat_sdk.api_client.models import DataRequest, TaskWriteRequest\n"
        "d = json.load(open(sys.argv[1] + '/data.json'))\n"
        "t = json.load(open(sys.argv[1] + '/task.json'))\n"
        "req = DataRequest(**d)\n"
        "TaskWriteRequest(**t)\n"
        "print(req.sorting_method, len(req.job_file_mapping))\n"
    )
    r = subprocess.run(
        [python, "-c", code, str(folder)], capture_output=True, text=True, timeout=120
    )
    if "No module named 'cvat_sdk'" in r.stderr:
        pytest.skip(f"{python} has no cvat-sdk")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "predefined"
    # the SDK refuses what CVAT would refuse: check that it can fail
    bad = subprocess.run(
        [
            python,
            "-c",
            "from cvat_sdk.api_client.models import DataRequest\n"
            "DataRequest(image_quality=95, sorting_method='by-enrich')",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0


def test_label_studio_url_prefix_and_files_outside_root(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    next_batch(ws, budget=3)
    assert (
        main(
            [
                "export",
                "latest",
                "-w",
                str(ws.path),
                "-f",
                "labelstudio",
                "--url-prefix",
                "https://pacs.example.org/img/",
                "--root",
                str(tmp_path / "images"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    tasks = json.loads((tmp_path / "o" / "tasks.json").read_text())
    assert tasks[0]["data"]["image"].startswith("https://pacs.example.org/img/p")
    fails(
        capsys,
        [
            "export",
            "latest",
            "-w",
            str(ws.path),
            "-f",
            "labelstudio",
            "--root",
            str(tmp_path / "images" / "p0"),
            "--out",
            str(tmp_path / "o"),
        ],
        "outside --root",
    )
    fails(
        capsys,
        ["export", "latest", "-w", str(ws.path), "-f", "labelstudio", "--out", str(tmp_path / "o")],
        "give --root",
    )
    fails(
        capsys,
        ["export", "9", "-w", str(ws.path), "-f", "csv", "--out", str(tmp_path / "o")],
        "no such batch",
    )
    fails(
        capsys,
        [
            "export",
            "latest",
            "-w",
            str(ws.path),
            "-f",
            "cvat",
            "--job-size",
            "0",
            "--out",
            str(tmp_path / "o"),
        ],
        "--job-size 0",
    )


def test_rank_order_csv_exports_to_csv(ws: Workspace, tmp_path: Path) -> None:
    assert main(["rank", "-w", str(ws.path), "--initial", "2", "--budget", "5"]) == 0
    order = ws.runs_dir / "rank" / "order.csv"
    assert main(["export", str(order), "-f", "csv", "--out", str(tmp_path / "c")]) == 0
    t = pd.read_csv(tmp_path / "c" / "order.csv")
    assert t["id"].tolist() == pd.read_csv(order)["id"].tolist()
    assert t["file"].map(lambda f: Path(f).is_file()).all()


@pytest.fixture
def frames_ws(tmp_path: Path) -> Workspace:
    """A multi-frame .npz source (6 frames, ids 'stack.npz#k') discovered by the io readers."""
    from enrich.io import discover

    rng = np.random.default_rng(0)
    stack = (rng.random((6, 8, 8)) * 255).astype(np.uint8)
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "stack.npz", images=stack)
    found = discover([str(src)])
    ws = Workspace.create(tmp_path / "fws")
    ws.write_manifest(found.manifest)
    ids = found.manifest["id"].to_numpy(dtype=str)
    ws.write_embeddings(Embeddings(ids, clustered(len(ids), 4, seed=2)))
    return ws


def test_frames_export_whole_or_extracted(
    frames_ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = frames_ws
    b = next_batch(ws, budget=4)
    assert all("#" in i for i in b.ids)
    root = tmp_path
    assert (
        main(
            [
                "export",
                "latest",
                "-w",
                str(ws.path),
                "-f",
                "labelstudio",
                "--root",
                str(root),
                "--out",
                str(tmp_path / "whole"),
            ]
        )
        == 0
    )
    tasks = json.loads((tmp_path / "whole" / "tasks.json").read_text())
    assert {t["data"]["image"] for t in tasks} == {"/data/local-files/?d=src/stack.npz"}
    assert [t["data"]["frame"] for t in tasks] == [int(i.split("#")[1]) for i in b.ids]
    fails(
        capsys,
        [
            "export",
            "latest",
            "-w",
            str(ws.path),
            "-f",
            "cvat",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "c"),
        ],
        "--extract-frames",
    )
    assert (
        main(
            [
                "export",
                "latest",
                "-w",
                str(ws.path),
                "-f",
                "cvat",
                "--root",
                str(root),
                "--extract-frames",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    files = (tmp_path / "c" / "files.txt").read_text().split()
    assert len(files) == 4 and all(f.startswith("c/frames/") and f.endswith(".png") for f in files)
    from PIL import Image

    stack = np.load(tmp_path / "src" / "stack.npz")["images"].astype(float)
    for f, i in zip(files, b.ids, strict=True):
        img = np.asarray(Image.open(root / f), dtype=float).ravel()
        corr = [np.corrcoef(img, s.ravel())[0, 1] for s in stack]
        assert int(np.argmax(corr)) == int(i.split("#")[1]) and max(corr) > 0.99
    # CVAT's names of extracted frames map back to the frame ids
    xml = (
        "<annotations>"
        + "".join(
            f'<image id="{n}" name="{f}"><tag label="L{n}"/></image>' for n, f in enumerate(files)
        )
        + "</annotations>"
    )
    (tmp_path / "a.xml").write_text(xml)
    assert main(["labels", "import", str(tmp_path / "a.xml"), "-w", str(ws.path)]) == 0
    m = ws.manifest().set_index("id")
    assert m.loc[b.ids, "label"].tolist() == ["L0", "L1", "L2", "L3"]


def test_monailabel_export_names_sort_in_order(ws: Workspace, tmp_path: Path) -> None:
    b = next_batch(ws, budget=5)
    assert (
        main(
            [
                "export",
                "latest",
                "-w",
                str(ws.path),
                "-f",
                "monailabel",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    store = tmp_path / "m" / "datastore"
    rec = json.loads((store / "enrich.json").read_text())
    assert [rec["ids"][m][0] for m in rec["order"]] == b.ids
    assert sorted(rec["order"]) == rec["order"]
    names = sorted(p.name for p in store.glob("*.png"))
    assert [n.rsplit(".", 1)[0] for n in names] == rec["order"]
    assert (store / names[0]).read_bytes() == Path(
        ws.manifest().set_index("id").at[b.ids[0], "source_path"]
    ).read_bytes()


REAL_LS_EXPORT = Path(__file__).parent / "data" / "labelstudio" / "export-label-studio-1.23.2.json"


def test_a_real_label_studio_export_comes_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The export of scripts/check_labelstudio.sh, as Label Studio 1.23.2 wrote it."""
    ids = [f"images/p{i % 8}_img{i:02d}.png" for i in range(40)]
    ws = Workspace.create(tmp_path / "ws")
    ws.write_manifest(pd.DataFrame({"id": ids, "source_path": [f"/d/{i}" for i in ids]}))
    ws.write_embeddings(Embeddings(np.array(ids), clustered(40, 4, seed=0)))
    (ws.runs_dir / "batches").mkdir(parents=True)
    (ws.runs_dir / "batches" / "workspace-uid").write_text("9fe14c37217c\n")
    assert main(["labels", "import", str(REAL_LS_EXPORT), "-w", str(ws.path)]) == 0
    tasks = sorted(json.loads(REAL_LS_EXPORT.read_text()), key=lambda t: t["data"]["enrich_rank"])
    m = ws.manifest().set_index("id")
    got = m.loc[[t["data"]["enrich_id"] for t in tasks], "label"].tolist()
    assert got == ["abnormal" if k % 3 == 0 else "normal" for k in range(len(tasks))]
    assert int(m["label"].notna().sum()) == 12
    # the same export against another workspace: refused, nothing written
    (ws.runs_dir / "batches" / "workspace-uid").write_text("0123456789ab\n")
    before = ws.manifest_path.read_bytes()
    fails(
        capsys, ["labels", "import", str(REAL_LS_EXPORT), "-w", str(ws.path)], "different project"
    )
    assert ws.manifest_path.read_bytes() == before


def test_export_order_api_takes_a_bare_table(tmp_path: Path) -> None:
    from enrich.loop.export import export_order

    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"x")
    order = pd.DataFrame(
        {"id": ["b.png", "a.png"], "path": [str(tmp_path / "b.png"), str(tmp_path / "a.png")]}
    )
    out = export_order(order, tmp_path / "o", format="cvat", root=tmp_path, job_size=1)
    data = json.loads((out.out / "data.json").read_text())
    assert data["job_file_mapping"] == [["b.png"], ["a.png"]]
