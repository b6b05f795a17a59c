"""The runner on Ray (benchmark/ray_backend.py), on a local Ray of 2 CPUs started once for the module:
a two-run suite is trained and compressed, with the first attempt of one train task killed after its
first checkpoint (the retry resumes it); a second invocation skips everything; the report is the local
backend's in structure; failed attempts are retried a bounded number of times and what still fails is
reported; a runs directory that a node cannot see is refused in one line."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, invoke

ray = pytest.importorskip("ray")

if str(ROOT) not in sys.path:  # benchmark/ is a repository tool, imported from the repository root
    sys.path.insert(0, str(ROOT))

from benchmark import layout, ray_backend, report, run_suite, suites, tasks  # noqa: E402
from l0rl.runkit import load_checkpoint  # noqa: E402

SUITE = suites.Suite(
    "raytiny",
    "Test-only: PPO on CartPole-v1 for 1,024 steps, dense and L0, one seed, a checkpoint every 128 steps.",
    cells=(
        suites.Cell(
            "CartPole-v1",
            "ppo_l0",
            1024,
            (suites.DENSE, suites.L0),
            {
                "num_steps": 64,
                "log_every": 256,
                "eval_episodes": 2,
                "eval_max_steps": 100,
                "checkpoint_every": 128,
            },
        ),
    ),
    seeds=(1,),
    compress_episodes=2,
)
DENSE, L0 = suites.expand(SUITE)
KILLED = tasks.train_name(L0)


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The test suite, known by name to the runner and the report (as benchmark/suites.py's are)."""
    suites.SUITES[SUITE.name] = SUITE
    yield
    del suites.SUITES[SUITE.name]


@pytest.fixture(scope="module")
def local_ray():
    """A Ray on this machine with 2 CPUs, started as the runner starts one; shut down at the end."""
    assert ray_backend.connect(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_runs(local_ray, tmp_path_factory):
    """The suite on Ray, twice; the first attempt of KILLED is killed after its first checkpoint."""
    runs = tmp_path_factory.mktemp("ray") / "runs"
    argv = ["raytiny", "--backend", "ray", "--runs-dir", runs, "--wandb-mode", "disabled"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ray_backend.KILL_ENV, KILLED)
        first = invoke(run_suite.main, *argv)
    second = invoke(run_suite.main, *argv)
    return {"runs": runs, "first": first, "second": second}


def report_of(runs: Path, out: Path) -> Path:
    code, stdout, err = invoke(report.main, "raytiny", "--runs-dir", runs, "--out", out, "--reps", 20)
    assert code == 0, stdout + err
    return out


def structure(out: Path) -> dict:
    """A report without its numbers: cells, rows (variant, method, seeds, which columns have a value),
    comparisons, figures, and the header row of every table."""
    data = json.loads((out / "report.json").read_text())
    cells = [
        {
            "cell": (c["env_id"], c["algo"], c["total_timesteps"]),
            "rows": [
                (
                    r["label"],
                    r["variant"],
                    r["method"],
                    r["seeds"],
                    sorted(k for k, v in r.items() if v is None),
                )
                for r in c["rows"]
            ],
            "comparisons": [(x["better"], x["than"]) for x in c["comparisons"]],
            "figures": sorted(c["figures"]),
        }
        for c in data["cells"]
    ]
    lines = (out / "REPORT.md").read_text().splitlines()
    headers = [a for a, b in zip(lines, lines[1:]) if a.startswith("|") and re.fullmatch(r"\|[\s:|-]+\|", b)]
    return {"cells": cells, "missing": data["missing"], "tables": headers}


# --- end to end -----------------------------------------------------------------------------------


def test_a_local_ray_trains_and_compresses_every_run(ray_runs):
    code, out, err = ray_runs["first"]
    assert code == 0, out + err
    assert "on Ray at this machine" in out and "0 failed" in out
    assert "next: python -m benchmark.report raytiny" in out
    for spec in (DENSE, L0):
        run_dir = layout.finished_run(ray_runs["runs"], spec)
        assert run_dir is not None, out + err
        ckpt = load_checkpoint(run_dir)
        assert ckpt["finished"] and ckpt["global_step"] == SUITE.cells[0].total_timesteps
        assert (
            ckpt["args"]["wandb_group"] == f"raytiny__{spec.cell.env_id}__{spec.exp_name}"
            and ckpt["args"]["exp_name"] == spec.exp_name
        )
        expected = {"compress.json"} | (
            {"compress_magnitude.json", "compress_svd.json"} if spec.magnitude_source else set()
        )
        assert expected <= {p.name for p in run_dir.glob("compress*.json")}, spec.key
        session = json.loads((run_dir / tasks.BENCH_NAME).read_text())["sessions"][-1]
        assert session["hardware"]["cores"] >= 1  # recorded by the worker, as the local pool does
    # the driver's own files are gone: the probe's token and the attempt counters
    assert not list(ray_runs["runs"].glob(".l0rl-visible-*"))
    assert not list((ray_runs["runs"] / layout.LOG_DIR / ray_backend.ATTEMPTS_DIR).iterdir())


def test_a_task_killed_midway_is_retried_and_resumes_from_its_checkpoint(ray_runs):
    code, out, err = ray_runs["first"]
    assert code == 0, out + err
    (run_dir,) = ray_runs["runs"].glob(f"{L0.key}__*")  # one run directory: the retry resumed it
    ckpt = load_checkpoint(run_dir)
    assert ckpt["finished"] and ckpt["global_step"] == SUITE.cells[0].total_timesteps
    # the first attempt was killed before it could record a session; the retry resumed with --resume
    (session,) = json.loads((run_dir / tasks.BENCH_NAME).read_text())["sessions"]
    assert f"--resume {run_dir}" in session["command"]
    assert re.search(
        rf"\[start\]  {re.escape(KILLED)} \(resume at step \d+: {re.escape(str(run_dir))}\)", out
    )
    assert f"{KILLED} (resume at step" in out and ", attempt 2" in out
    log = ray_runs["runs"] / layout.LOG_DIR / (KILLED.replace(" ", "__") + ".log")
    attempts = [line for line in log.read_text().splitlines() if line.startswith("=== ")]
    assert len(attempts) == 2 and "--resume" not in attempts[0] and f"--resume {run_dir}" in attempts[1]
    # the run the killed one waited for nothing; the dense run was not disturbed
    assert len(list(ray_runs["runs"].glob(f"{DENSE.key}__*"))) == 1


def test_a_second_invocation_on_ray_skips_everything(ray_runs):
    code, out, err = ray_runs["second"]
    assert code == 0, out + err
    count = len(tasks.Runner(SUITE, [DENSE, L0], ray_runs["runs"], "disabled", 2).tasks())
    assert f"0 ran, {count} done already, 0 failed" in out
    assert "[start]" not in out
    names = [p.name for p in ray_runs["runs"].iterdir() if p.name != layout.LOG_DIR]
    assert len(names) == 2


def test_the_report_of_a_ray_run_has_the_local_reports_structure(ray_runs, tmp_path):
    local = tmp_path / "local"
    code, out, err = invoke(
        run_suite.main, "raytiny", "--runs-dir", local, "--workers", 2, "--wandb-mode", "disabled"
    )
    assert code == 0, out + err
    from_ray = structure(report_of(ray_runs["runs"], tmp_path / "ray-report"))
    from_local = structure(report_of(local, tmp_path / "local-report"))
    assert from_ray == from_local
    assert len(from_ray["cells"]) == 1 and not from_ray["missing"] and from_ray["tables"]
    assert {(r[1], r[2]) for r in from_ray["cells"][0]["rows"]} >= {("dense", "l0"), ("l0", "l0")}


def test_the_command_line_joins_a_running_ray_and_runs_what_is_missing(ray_runs):
    """`python -m benchmark.run_suite ... --backend ray --address A` in a process of its own (the
    runner's module is __main__ there), joining the module's Ray: it compresses what is missing."""
    dense = layout.finished_run(ray_runs["runs"], DENSE)
    (dense / "compress_svd.json").unlink()
    address = ray.get_runtime_context().gcs_address
    argv = ["raytiny", "--backend", "ray", "--address", address, "--runs-dir", str(ray_runs["runs"])]
    code = (
        "import runpy, sys; sys.path.insert(0, sys.argv[1]); import test_ray_backend as t; "
        "t.suites.SUITES[t.SUITE.name] = t.SUITE; sys.argv = ['run_suite', *sys.argv[2:]]; "
        "runpy.run_module('benchmark.run_suite', run_name='__main__', alter_sys=True)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), *argv, "--wandb-mode", "disabled"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"on Ray at {address}" in proc.stdout
    assert "1 ran, 5 done already, 0 failed" in proc.stdout, proc.stdout + proc.stderr
    assert (dense / "compress_svd.json").exists()


# --- retries and failures -------------------------------------------------------------------------


def test_failed_attempts_are_retried_a_bounded_number_of_times_and_reported(local_ray, tmp_path):
    marker = tmp_path / "flaky-attempts"
    flaky = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = len(p.read_text()) if p.exists() else 0; "
        "p.write_text('x' * (n + 1)); print('attempt', n + 1); sys.exit(0 if n else 1)"
    )
    graph = [
        tasks.Task("flaky", [], lambda: ("new run", [sys.executable, "-c", flaky, str(marker)]), 0),
        tasks.Task(
            "broken", [], lambda: ("new run", [sys.executable, "-c", "print('boom'); raise SystemExit(1)"]), 0
        ),
        tasks.Task(
            "diverged",
            [],
            lambda: ("new run", [sys.executable, "-c", "print('nan'); raise SystemExit(3)"]),
            0,
        ),
        tasks.Task("after broken", ["broken"], lambda: ("compress", None), 0),
        tasks.Task("done", [], lambda: ("done already", None), 0),
    ]
    said = []
    pool = ray_backend.RayPool(
        None, tmp_path / "logs", None, said.append, runs_dir=tmp_path, retries=2, retry_delay_s=0
    )
    outcomes = {o.task: o for o in pool.run(graph)}
    assert outcomes["flaky"].status == "ran" and marker.read_text() == "xx"
    assert any(
        line.startswith("[start]  flaky (new run) on ") and line.endswith(", attempt 2") for line in said
    )
    assert outcomes["broken"].status == "failed"
    assert outcomes["broken"].detail == "exit 1: boom (attempt 3)"  # 1 + 2 retries, then it is reported
    headers = [x for x in outcomes["broken"].log.read_text().splitlines() if x.startswith("=== ")]
    assert len(headers) == 3 + 2  # three commands, two "attempt N failed" notes
    assert outcomes["diverged"].status == "failed" and outcomes["diverged"].detail == "exit 3: nan"
    assert outcomes["after broken"].status == "failed" and "broken failed" in outcomes["after broken"].detail
    assert outcomes["done"].status == "skipped"
    code = run_suite.summarize(list(outcomes.values()), run_suite.parser().parse_args(["tiny"]), 1.0)
    assert code == 1


def test_a_runs_dir_a_node_cannot_see_is_refused_in_one_line(local_ray, tmp_path, monkeypatch):
    """One machine sees its own files: the probe is pointed at another directory, as a node that
    mounts something else at that path would look."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr(ray_backend, "seen_as", lambda path: elsewhere / path.name)
    monkeypatch.setattr(ray_backend, "PROBE_WAIT_S", 0.5)
    runs = tmp_path / "runs"
    code, out, err = invoke(
        run_suite.main, "raytiny", "--backend", "ray", "--runs-dir", runs, "--wandb-mode", "disabled"
    )
    assert code == 2 and err.count("\n") == 1, out + err
    assert f"--runs-dir {runs} is not visible from node(s) " in err and "every node mounts (NFS" in err
    assert "[submit]" not in out and list(runs.iterdir()) == []  # nothing ran; the token is gone


def test_resources_and_options(tmp_path):
    """One CPU per task, one per env for envs that step in processes of their own, a GPU where the
    cell asks for one; the Ray options are refused without --backend ray."""

    @dataclasses.dataclass(frozen=True)
    class GpuCell(suites.Cell):
        gpus: float = 1.0

    mario = suites.expand(suites.SUITES["mario"])[0]
    gpu = suites.RunSpec(
        "x", GpuCell("Acrobot-v1", "ppo_l0", 1000, (suites.DENSE, suites.L0)), suites.DENSE, 1
    )
    runner = tasks.Runner(SUITE, [DENSE, mario, gpu], tmp_path, "disabled", 2)
    of = ray_backend.task_resources(runner)
    by_name = {t.name: of(t) for t in runner.tasks()}
    assert by_name[tasks.train_name(DENSE)] == {"num_cpus": 1, "num_gpus": 0}
    assert by_name[tasks.train_name(mario)] == {"num_cpus": 8, "num_gpus": 0}
    assert by_name[tasks.train_name(gpu)] == {"num_cpus": 1, "num_gpus": 1.0}
    assert by_name[f"compress-l0 {DENSE.key}"] == {"num_cpus": 1, "num_gpus": 0}
    code, _, err = invoke(run_suite.main, "raytiny", "--runs-dir", tmp_path, "--address", "h:6379")
    assert code == 2 and "--address and --retries go with --backend ray" in err
