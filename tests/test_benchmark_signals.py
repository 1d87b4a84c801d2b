"""A ``--workers K`` benchmark killed as ``timeout`` or SLURM would kill it (issue 9, item 8).

Real subprocesses, really killed: no worker may outlive the benchmark, SIGTERM says how to
resume, and the cache a SIGKILL leaves behind is removed by the next run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")
pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads the process table from /proc"
)

import enrich  # noqa: E402

SRC = Path(enrich.__file__).resolve().parents[1]  # the enrich under test, in the subprocess too

# Enough models, each long enough, that the run is still training when it is killed.
SLOW_YAML = """
task: classification
seed: 3
initializations: 2
models: 4
initial: 6
sizes: [6, 12]
model: {input_size: 16, block_inplanes: [4, 8, 8, 8], layers: [1, 1, 1, 1]}
train: {epochs: 400, batch_size: 16, patience: null}
"""


def children(pid: int) -> dict[int, str]:
    """The live (not zombie) child processes of `pid`, with their command lines."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out[int(entry.name)] = cmd
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"  # a zombie holds no memory; only its (absent) parent could reap it


def wait_until(cond, seconds: float, what: str):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def start_benchmark(ws: Path, out: Path, cfg: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "enrich", "benchmark", "--workspace", str(ws)]
    argv += ["--config", str(cfg), "--out", str(out), "--workers", "2", "--no-report", "-q"]
    # Output to a file, not a pipe: an orphaned worker would hold a pipe open forever.
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)


def training_workers(proc: subprocess.Popen, out: Path, log: Path) -> list[int]:
    """Wait until the benchmark trains with its 2 workers; return their pids."""

    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"the benchmark ended early: {log.read_text()}")
        workers = [p for p, cmd in children(proc.pid).items() if "spawn_main" in cmd]
        return workers if len(workers) == 2 and list(out.glob(".cache-*")) else None

    workers = wait_until(ready, 180, "two workers")
    time.sleep(3)  # let them get into training
    return workers


def kill_all(pids: list[int]) -> None:
    """Clean up after a failure: never leave this test's processes behind."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_killed_benchmark_leaves_no_worker_and_no_cache(tmp_path):
    from test_cli_benchmark import make_workspace

    ws = make_workspace(tmp_path)
    cfg = tmp_path / "slow.yaml"
    cfg.write_text(SLOW_YAML)
    out = tmp_path / "run"

    # SIGKILL (timeout -s KILL, the OOM killer): the workers die with their parent
    log1 = tmp_path / "first.log"
    first = start_benchmark(ws, out, cfg, log1)
    everyone: list[int] = [first.pid]
    try:
        training_workers(first, out, log1)
        everyone += list(children(first.pid))
        first.kill()
        first.wait(30)
        wait_until(lambda: not any(alive(p) for p in everyone), 30, "orphaned workers to exit")
    finally:
        kill_all(everyone)
    (left,) = out.glob(".cache-*")  # nothing could remove it: the next run must
    assert left.name.startswith(f".cache-{first.pid}-")

    # SIGTERM (timeout, SLURM): the workers are stopped, one line says how to resume
    log2 = tmp_path / "second.log"
    second = start_benchmark(ws, out, cfg, log2)
    everyone = [second.pid]
    try:
        training_workers(second, out, log2)
        assert not left.exists()  # the killed run's cache was removed at the start
        everyone += list(children(second.pid))
        second.send_signal(signal.SIGTERM)
        second.wait(60)
        wait_until(lambda: not any(alive(p) for p in everyone), 30, "workers to exit")
    finally:
        kill_all(everyone)
    err = log2.read_text()
    assert second.returncode == 143, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "terminated (SIGTERM)" in lines[0] and "resume" in lines[0]
    assert "Traceback" not in err
    assert not list(out.glob(".cache-*"))


def test_stale_caches_of_dead_processes_are_removed(tmp_path):
    from enrich.evaluate.protocol import remove_stale_caches

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".cache-{dead.pid}-abc").mkdir()
    (tmp_path / f".cache-{dead.pid}-abc" / "x.npy").write_bytes(b"0" * 100)
    (tmp_path / ".cache-legacy").mkdir()  # an older version's name, no pid
    (tmp_path / f".cache-{os.getpid()}-mine").mkdir()
    (tmp_path / f".cache-{os.getppid()}-live").mkdir()
    notes: list[str] = []
    assert remove_stale_caches(tmp_path, notes.append) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".cache-{os.getpid()}-mine", f".cache-{os.getppid()}-live"]
    )
    assert notes == [f"removed 2 cache folder(s) left in {tmp_path} by an interrupted run"]


def test_no_progress_bar_is_drawn_into_a_log(capsys):
    from enrich.evaluate.protocol import _progress

    bar = _progress(3, True)  # stderr is captured: a file, not a terminal
    bar.update(1)
    bar.close()
    assert "\r" not in capsys.readouterr().err


def test_no_command_draws_a_progress_bar_into_a_log(capsys):
    import time as _time

    from enrich.cli._common import progress_bar

    with progress_bar(3, "redundancy", "tile") as update:
        _time.sleep(1.2)  # past the bar's 1 s delay
        update(1)
    assert "\r" not in capsys.readouterr().err


@pytest.mark.parametrize("platform", ["linux", "darwin"], ids=["pdeathsig", "watchdog"])
def test_a_guarded_worker_dies_with_its_parent(tmp_path, platform):
    """Each guard alone: prctl on Linux, the parent-pid watchdog elsewhere (here: forced)."""
    if platform == "linux" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    pidfile = tmp_path / "worker.pid"
    worker = (
        "import os, sys, time\n"
        "from enrich.evaluate import protocol\n"
        f"sys.platform = {platform!r}  # only the guard sees it\n"
        "protocol._die_with_parent(os.getppid(), poll_s=0.1)\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    parent = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {worker!r}])\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env)
    pid = 0
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text(), 60, "the worker to start")
        pid = int(pidfile.read_text())
        assert alive(pid)
        proc.kill()
        proc.wait(30)
        wait_until(lambda: not alive(pid), 20, "the orphaned worker to exit")
    finally:
        proc.kill()
        if pid:
            kill_all([pid])
