"""The benchmark tooling: suites expand into the runs they promise, the runner skips finished runs and
resumes interrupted ones, the report's numbers are the run records' numbers, the statistics give
known answers, and the W&B report is built (not saved) without a network.

One module fixture trains the `tiny` suite once (6 PPO runs of 1,024 steps, one of them first halted
and then resumed by the runner); the tests read it."""

import dataclasses
import fcntl
import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import tyro
from helpers import ROOT, invoke
from rliable import metrics

if str(ROOT) not in sys.path:  # benchmark/ is a repository tool, imported from the repository root
    sys.path.insert(0, str(ROOT))

from benchmark import layout, pool, report, run_suite, suites, tasks, windows  # noqa: E402
from l0rl.envs import registry  # noqa: E402
from l0rl.report import figures, publish, stats, tables  # noqa: E402
from l0rl.runkit import Run, load_checkpoint, read_metrics  # noqa: E402

TINY = suites.SUITES["tiny"]
REPS = 100  # bootstrap repetitions in tests: the numbers are compared with themselves, not tabulated


def spec_of(variant: str, seed: int) -> suites.RunSpec:
    return next(s for s in suites.expand(TINY) if s.variant.name == variant and s.seed == seed)


def train_tiny(root: Path) -> dict:
    """The tiny suite, trained and compressed by two runner invocations; the dense seed-2 run was
    halted at 512 steps beforehand, so the first invocation has to resume it."""
    runs = root / "runs"
    halted = spec_of("dense", 2)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "algos" / "ppo_l0.py"), *halted.train_args()]
        + ["--runs-dir", str(runs), "--wandb-group", "tiny", "--wandb-mode", "disabled", "--no-progress"]
        + ["--halt-after", "512"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    (halted_dir,) = runs.iterdir()
    argv = ["tiny", "--runs-dir", str(runs), "--workers", "2", "--wandb-mode", "disabled"]
    first = invoke(run_suite.main, *argv)
    second = invoke(run_suite.main, *argv)
    return {"runs": str(runs), "halted_dir": str(halted_dir), "first": first, "second": second}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """train_tiny's result, computed once per test session: under pytest-xdist the workers share
    one session directory, and the first to take the lock trains while the others wait."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    done = shared / "benchmark-tiny.json"
    with open(shared / "benchmark-tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            (shared / "benchmark-tiny").mkdir()
            done.write_text(json.dumps(train_tiny(shared / "benchmark-tiny")))
    result = json.loads(done.read_text())
    return {**result, "runs": Path(result["runs"]), "halted_dir": Path(result["halted_dir"])}


# --- suites ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(suites.SUITES))
def test_a_suite_expands_into_every_cell_variant_and_seed(name):
    suite = suites.SUITES[name]
    specs = suites.expand(suite)
    assert len(specs) == sum(len(c.variants) * len(c.seeds or suite.seeds) for c in suite.cells)
    for cell in suite.cells:
        for v in cell.variants:
            seeds = [s.seed for s in specs if s.cell == cell and s.variant == v]
            assert seeds == list(cell.seeds or suite.seeds), (cell.title, v.name)
    # every GMP run whose target is L0's sparsity waits for the L0 run of its own cell and seed
    for s in specs:
        if s.variant.gmp_target_from is not None:
            source = s.gmp_source
            assert (source.cell, source.seed, source.variant.sparsity) == (s.cell, s.seed, "l0")
            with pytest.raises(ValueError, match="--gmp-target comes from"):
                s.train_args()
            assert s.train_args(0.93)[-2:] == ["--gmp-target", "0.93"]


def test_a_cell_can_name_its_own_seeds_and_seeds_overrides_them():
    own = suites.Cell("CartPole-v1", "ppo_l0", 1024, (suites.L0,), seeds=(1, 2, 3, 4, 5))
    other = suites.Cell("Acrobot-v1", "ppo_l0", 1024, (suites.L0,))
    suite = suites.Suite("t", "", (own, other), seeds=(1, 2))
    assert [(s.cell.env_id, s.seed) for s in suites.expand(suite)] == [
        *(("CartPole-v1", seed) for seed in (1, 2, 3, 4, 5)),
        ("Acrobot-v1", 1),
        ("Acrobot-v1", 2),
    ]
    assert {s.seed for s in suites.expand(suite, [7])} == {7}


@pytest.mark.parametrize(
    "variant",
    [
        suites.Variant("l0", "l0", magnitude_after=1.0),
        suites.Variant("l0", "l0", magnitude_after=0.0),
        suites.Variant("dense", "none", matched_to="dense", magnitude_after=0.9),
    ],
)
def test_a_final_magnitude_step_must_be_a_sparsity_and_cannot_share_the_matched_report(variant):
    suite = suites.Suite("t", "", (suites.Cell("CartPole-v1", "ppo_l0", 1024, (variant,)),), seeds=(1,))
    with pytest.raises(ValueError, match="magnitude_after must lie in"):
        suites.expand(suite)


def test_sweep_variants_are_named_by_what_they_set():
    a, b = suites.l0_sweep(
        {"l0_schedule": "constant"}, {"l0_lambda_actor": 2, "l0_lr": 1e-3}, {"l0_lambda_actor": 5}
    )
    assert (a.name, a.label) == ("l0-lam2-lr0.001", "L0 lam2 lr0.001")
    assert a.args == {"l0_schedule": "constant", "l0_lambda_actor": 2, "l0_lr": 1e-3}
    assert (b.name, b.sparsity) == ("l0-lam5", "l0")
    spec = suites.RunSpec("t", suites.Cell("CartPole-v1", "ppo_l0", 1024, (a, b)), a, 1)
    assert spec.train_args()[-6:] == [
        "--l0-schedule",
        "constant",
        "--l0-lambda-actor",
        "2",
        "--l0-lr",
        "0.001",
    ]


def test_the_comparison_suites_pair_every_sparse_variant_with_its_baselines():
    """What the benchmark promises, as properties of the suites (not their contents typed again):
    every cell of a comparison suite trains dense, L0 and GMP side by side; each frontier level pairs
    an L0 run and a GMP run whose arguments hold that level; the paper suite covers every tested
    environment and each pipeline family, and a goal-conditioned task trains with HER."""
    for name in ("quick", "paper"):
        for c in suites.SUITES[name].cells:
            assert {v.sparsity for v in c.variants} == {"none", "l0", "gmp"}, (name, c.ref)
    (frontier,) = suites.SUITES["frontier"].cells
    levels = {
        kind: sorted(v.level for v in frontier.variants if v.sparsity == kind) for kind in ("l0", "gmp")
    }
    assert levels["l0"] == levels["gmp"] and len(levels["l0"]) == len(set(levels["l0"])) >= 5
    for v in frontier.variants:
        if v.sparsity == "l0":
            assert v.args["l0_schedule"] == "target" and v.args["l0_target_sparsity"] == v.level
        elif v.sparsity == "gmp":
            assert v.args["gmp_target"] == v.level
    paper = suites.SUITES["paper"].cells
    discrete = [e for e in registry.TESTED_VECTOR_IDS if "Continuous" not in e]
    assert set(discrete) <= {c.env_id for c in paper}
    assert {registry.family(c.env_id) for c in paper} == {"gym", "mario", "needle"}
    for c in paper:
        env = gym.make(c.env_id) if registry.family(c.env_id) != "mario" else None
        if env is not None and isinstance(env.observation_space, gym.spaces.Dict):
            assert c.args.get("her") is True and "--her" in suites.to_flags(c.args), c.ref
        if env is not None:
            env.close()


@pytest.mark.parametrize("name", sorted(suites.SUITES))
def test_every_command_of_a_suite_is_accepted_by_its_algorithm(name):
    """Parsed and validated as the algorithm would (no environment is built, nothing is written)."""
    seen = set()
    for spec in suites.expand(suites.SUITES[name]):
        if (spec.cell, spec.variant) in seen:
            continue
        seen.add((spec.cell, spec.variant))
        algo = importlib.import_module(f"l0rl.algos.{spec.cell.algo}")
        run = Run(tyro.cli(algo.Args, args=spec.train_args(0.9 if spec.gmp_source else None)), algo.ALGO)
        extra = [run.env_options] if len(inspect.signature(algo.check_args).parameters) > 1 else []
        algo.check_args(run.args, *extra)
        assert run.args.sparsity == spec.variant.sparsity and run.name.startswith(spec.key + "__")


def test_an_unknown_suite_or_bad_option_is_one_line_and_exit_2(tmp_path):
    code, _, err = invoke(run_suite.main, "nosuch", "--dry-run")
    assert code == 2 and err.count("\n") == 1 and "unknown suite 'nosuch'" in err
    code, _, err = invoke(run_suite.main, "tiny", "--workers", "0", "--runs-dir", str(tmp_path))
    assert code == 2 and "--workers must be >= 1" in err


def test_variants_limit_the_suite_and_refuse_a_missing_partner(tmp_path):
    runs = ["--runs-dir", str(tmp_path / "runs"), "--dry-run"]
    code, out, err = invoke(run_suite.main, "tiny", "--variants", "dense", "l0", *runs)
    assert code == 0, err
    assert "4 runs, 14 tasks" in out and "ppo_gmp" not in out
    assert "compress-magnitude CartPole-v1__ppo_dense__1: after train CartPole-v1__ppo_dense__1, train" in out
    code, _, err = invoke(run_suite.main, "tiny", "--variants", "gmp", *runs)
    assert code == 2 and err.count("\n") == 1 and "gmp takes its sparsity from l0; add l0" in err
    code, _, err = invoke(run_suite.main, "tiny", "--variants", "dense", *runs)
    assert code == 2 and "dense takes its sparsity from l0" in err
    code, _, err = invoke(run_suite.main, "tiny", "--variants", "l1", *runs)
    assert code == 2 and "no variant 'l1' in this suite; it has dense, l0, gmp" in err


def test_the_defaults_suite_reports_on_seeds_no_other_suite_uses():
    """Held-out protocol: sweeps (and every other suite) choose on their seeds; the defaults suite's
    ten seeds are none of them, and every one of its cells has a target to count seeds against."""
    defaults = suites.SUITES["defaults"]
    held_out = {s.seed for s in suites.expand(defaults)}
    assert held_out == set(suites.HELD_OUT_SEEDS) == set(range(11, 21))
    for name, suite in suites.SUITES.items():
        if name != "defaults":
            shared = {s.seed for s in suites.expand(suite)} & held_out
            assert not shared, f"suite {name} trains on the held-out seeds {sorted(shared)}"
    assert all(c.target is not None for c in defaults.cells)
    assert {c.ref for c in defaults.cells} >= {
        "CartPole-v1/ppo_l0",
        "CartPole-v1/a2c_l0",
        "CartPole-v1/dqn_l0",
        "Acrobot-v1/ppo_l0",
        "LunarLander-v3/ppo_l0",
        "NeedleReach-v0/sac_l0",
    }


def test_cells_limit_the_suite_and_refuse_an_unknown_one(tmp_path):
    runs = ["--runs-dir", str(tmp_path / "runs"), "--dry-run"]
    code, out, err = invoke(
        run_suite.main, "defaults", "--cells", "CartPole-v1/dqn_l0", "Acrobot-v1/ppo_l0", *runs
    )
    assert code == 0, err
    assert "suite defaults: 40 runs, 100 tasks" in out  # DQN L0 + GMP, Acrobot dense + L0, x 10 seeds
    assert "train CartPole-v1__dqn_gmp__20: new run" in out and "CartPole-v1__ppo_l0" not in out
    assert "a2c_l0.py" not in out and "LunarLander-v3__" not in out and "NeedleReach-v0__" not in out
    code, _, err = invoke(run_suite.main, "defaults", "--cells", "CartPole-v1/sac_l0", *runs)
    assert code == 2 and err.count("\n") == 1 and "--cells: no cell 'CartPole-v1/sac_l0' in this suite" in err


def test_dry_run_lists_commands_and_dependencies_and_starts_nothing(tmp_path):
    code, out, _ = invoke(run_suite.main, "tiny", "--runs-dir", str(tmp_path / "runs"), "--dry-run")
    assert code == 0 and not (tmp_path / "runs").exists()
    assert "train CartPole-v1__ppo_l0__1: new run" in out
    assert "python algos/ppo_l0.py --env-id CartPole-v1 --seed 1" in out
    assert "train CartPole-v1__ppo_gmp__1: after train CartPole-v1__ppo_l0__1" in out
    assert (
        "compress-magnitude CartPole-v1__ppo_dense__2: after train CartPole-v1__ppo_dense__2, train CartPole-v1__ppo_l0__2"
        in out
    )


# --- the runner -----------------------------------------------------------------------------------


def test_the_runner_trains_and_compresses_every_run(tiny):
    code, out, err = tiny["first"]
    assert code == 0, out + err
    assert "0 failed" in out and "next: python -m benchmark.report tiny" in out
    for spec in suites.expand(TINY):
        run_dir = layout.finished_run(tiny["runs"], spec)
        assert run_dir is not None, spec.key
        ckpt = load_checkpoint(run_dir)
        # a run the tiny fixture trained by hand carries its --wandb-group tiny; one the runner trained
        # carries the runner's per-variant group
        groups = {"tiny", f"tiny__{spec.cell.env_id}__{spec.exp_name}"}
        assert ckpt["args"]["wandb_group"] in groups and ckpt["args"]["exp_name"] == spec.exp_name
        expected = {"compress.json"} | (
            {"compress_magnitude.json", "compress_svd.json"} if spec.magnitude_source else set()
        )
        if spec.variant.magnitude_after is not None:  # the L0 runs' final magnitude step
            expected.add("compress_magnitude.json")
            own = json.loads((run_dir / "compress_magnitude.json").read_text())
            assert own["options"]["sparsity"] == spec.variant.magnitude_after
            pruned = next(s for s in own["stages"] if s["stage"] == "pruned")
            assert pruned["sparsity"] == pytest.approx(spec.variant.magnitude_after, abs=1e-3)
        assert expected <= {p.name for p in run_dir.glob("compress*.json")}, spec.key
        # the suite's compress options reach `--method l0` only
        assert json.loads((run_dir / "compress.json").read_text())["options"]["rank_search"] is True
        if spec.magnitude_source:
            assert json.loads((run_dir / "compress_svd.json").read_text())["options"]["rank_search"] is False


def test_gmp_prunes_to_the_sparsity_its_l0_run_reached(tiny):
    for seed in TINY.seeds:
        l0_dir = layout.finished_run(tiny["runs"], spec_of("l0", seed))
        reached = json.loads((l0_dir / "summary.json").read_text())["sparsity"]
        low, high = layout.SPARSITY_RANGE
        matched = round(min(max(reached, low), high), 4)
        gmp_args = load_checkpoint(layout.finished_run(tiny["runs"], spec_of("gmp", seed)))["args"]
        assert gmp_args["sparsity"] == "gmp" and gmp_args["gmp_target"] == matched
        # the dense run is pruned to the sparsity its L0 partner is deployed at: the L0 run's final
        # magnitude step (0.9) where the gates alone reached less, as 1,024 steps do
        deployed = max(matched, spec_of("l0", seed).variant.magnitude_after)
        assert deployed == 0.9
        dense_dir = layout.finished_run(tiny["runs"], spec_of("dense", seed))
        magnitude = json.loads((dense_dir / "compress_magnitude.json").read_text())
        assert magnitude["options"]["sparsity"] == deployed


def test_a_second_invocation_starts_no_training(tiny):
    code, out, err = tiny["second"]
    assert code == 0, out + err
    assert "[start]" not in out
    # every run: train + compress l0; every dense run also compress magnitude + svd; every L0 run
    # its final magnitude step
    count = 2 * len(suites.expand(TINY)) + 3 * len(TINY.seeds)
    assert f"0 ran, {count} done already, 0 failed" in out
    names = [p.name for p in tiny["runs"].iterdir() if p.name != layout.LOG_DIR]
    assert len(names) == len(suites.expand(TINY))  # no run was started twice


def test_changed_compress_options_or_episodes_compress_again(tiny):
    def what(suite, episodes) -> dict[str, str]:
        runner = tasks.Runner(suite, suites.expand(suite), tiny["runs"], "disabled", episodes)
        return {t.name: t.command()[0] for t in runner.tasks() if t.name.startswith("compress")}

    same = what(TINY, TINY.compress_episodes)
    assert set(same.values()) == {"compressed: compress.json", "compressed: compress_magnitude.json",
                                  "compressed: compress_svd.json"}  # fmt: skip
    assert set(what(TINY, TINY.compress_episodes + 1).values()) == {"compress"}
    tighter = dataclasses.replace(TINY, compress_options={"rank_search": True, "tolerance": 0.01})
    changed = what(tighter, TINY.compress_episodes)
    # only --method l0 takes the suite's options: the baselines' reports still answer
    assert {k for k, v in changed.items() if v == "compress"} == {
        k for k in same if k.startswith("compress-l0")
    }


def test_an_interrupted_run_is_resumed_in_its_own_directory(tiny):
    spec = spec_of("dense", 2)
    assert layout.finished_run(tiny["runs"], spec) == tiny["halted_dir"]
    assert len(list(tiny["runs"].glob(f"{spec.key}__*"))) == 1
    ckpt = load_checkpoint(tiny["halted_dir"])
    assert ckpt["finished"] and ckpt["global_step"] == spec.cell.total_timesteps
    (session,) = json.loads((tiny["halted_dir"] / tasks.BENCH_NAME).read_text())["sessions"]
    assert f"--resume {tiny['halted_dir']}" in session["command"]
    assert f"resume at step 512: {tiny['halted_dir']}" in tiny["first"][1]


def test_a_failed_task_and_everything_that_waits_for_it_are_reported(tmp_path):
    fail = tasks.Task(
        "train a", [], lambda: ("new run", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"]), 0
    )
    child = tasks.Task("compress b", ["train a"], lambda: ("compress", None), 0)
    fine = tasks.Task("train c", [], lambda: ("done already", None), 0)
    local = pool.Pool(2, tmp_path / "logs", env=None, say=lambda s: None)
    outcomes = {o.task: o for o in local.run([fail, child, fine])}
    assert outcomes["train a"].status == "failed" and outcomes["train a"].detail == "exit 3: boom"
    assert outcomes["compress b"].status == "failed" and "train a failed" in outcomes["compress b"].detail
    assert outcomes["train c"].status == "skipped"
    code = run_suite.summarize(list(outcomes.values()), run_suite.parser().parse_args(["tiny"]), 1.0)
    assert code == 1


def test_a_cells_thread_count_reaches_its_training_processes(tmp_path):
    mario = suites.get("mario")
    runner = tasks.Runner(mario, suites.expand(mario, (1,)), tmp_path / "runs", "disabled", 1)
    graph = runner.tasks()
    assert {t.env.get("OMP_NUM_THREADS") for t in graph if t.name.startswith("train")} == {"2"}
    assert all(not t.env for t in graph if not t.name.startswith("train"))
    # the pool's own setting (one thread, as run_suite sets it) yields to the task's
    probe = [sys.executable, "-c", "import torch; print('threads', torch.get_num_threads())"]
    two = tasks.Task("train two", [], lambda: ("new run", probe), 0, env=tasks.threads_env(2))
    one = tasks.Task("train one", [], lambda: ("new run", probe), 0)
    env = {**os.environ, **tasks.threads_env(1)}
    local = pool.Pool(2, tmp_path / "logs", env, say=lambda s: None, cpus=4)
    assert {o.status for o in local.run([two, one])} == {"ran"}
    for name, threads in (("two", 2), ("one", 1)):
        assert f"threads {threads}" in (tmp_path / "logs" / f"train__{name}.log").read_text()
    # runs side by side share the cores: two workers on 2 CPUs give each run one thread
    shared = pool.Pool(2, tmp_path / "shared", env, say=lambda s: None, cpus=2)
    assert {o.status for o in shared.run([two])} == {"ran"}
    assert "threads 1" in (tmp_path / "shared" / "train__two.log").read_text()


# --- the report -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_report(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    code, stdout, err = invoke(
        report.main, "tiny", "--runs-dir", str(tiny["runs"]), "--out", str(out), "--reps", str(REPS)
    )
    assert code == 0, stdout + err
    return out


def test_the_report_shows_every_cell_with_the_numbers_of_the_run_records(tiny, tiny_report):
    data = json.loads((tiny_report / "report.json").read_text())
    text = (tiny_report / "REPORT.md").read_text()
    assert len(data["cells"]) == len(TINY.cells) and not data["missing"]
    for cell, got in zip(TINY.cells, data["cells"]):
        assert f"## {cell.title}" in text
        rows = {(r["variant"], r["method"]): r for r in got["rows"]}
        for v in cell.variants:
            dirs = [layout.finished_run(tiny["runs"], suites.RunSpec("tiny", cell, v, s)) for s in TINY.seeds]
            summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
            returns = np.array([s["eval/episodic_return"] for s in summaries])
            row = rows[(v.name, "l0")]
            assert row["seeds"] == list(TINY.seeds)
            assert row["trained_return"]["point"] == pytest.approx(metrics.aggregate_iqm(returns))
            assert row["sparsity"] == pytest.approx(np.mean([s["sparsity"] for s in summaries]))
            finals = [json.loads((d / "compress.json").read_text())["stages"][-1] for d in dirs]
            assert row["params"] == pytest.approx(np.mean([f["params"] for f in finals]))
            assert row["bytes"] == pytest.approx(np.mean([f["bytes"] for f in finals]))
            ratio = np.mean([f["latency_ratio"] for f in finals])
            assert row["latency_ratio"] == pytest.approx(ratio) and f"({ratio:.2f}x) |" in text
            assert (
                f"| {v.label} | {len(TINY.seeds)} | {tables.est(stats.Estimate(**row['trained_return']))} |"
                in text
            )
            if v.magnitude_after is not None:
                final = [json.loads((d / "compress_magnitude.json").read_text())["stages"][-1] for d in dirs]
                row = rows[(v.name, "magnitude")]
                assert row["params"] == pytest.approx(np.mean([f["params"] for f in final]))
                assert row["compressed_return"]["point"] == pytest.approx(
                    metrics.aggregate_iqm(np.array([f["return_mean"] for f in final]))
                )
                assert f"| {v.label} + final one-shot magnitude (to 90%) |" in text
                assert "--method magnitude --sparsity 0.9` (a final magnitude step" in text
            if v.matched_to:
                for method in ("magnitude", "svd"):
                    final = [
                        json.loads((d / f"compress_{method}.json").read_text())["stages"][-1] for d in dirs
                    ]
                    assert rows[(v.name, method)]["params"] == pytest.approx(
                        np.mean([f["params"] for f in final])
                    )
        # the per-seed table: each run judged against the cell's target from its own summary
        judged = [(r["variant"], r["seed"], r["met"]) for r in got["seeds"] if r["met"] is not None]
        expected = []
        for v in (v for v in cell.variants if v.sparsity != "none"):
            for seed in TINY.seeds:
                d = layout.finished_run(tiny["runs"], suites.RunSpec("tiny", cell, v, seed))
                s = json.loads((d / "summary.json").read_text())
                expected.append((v.label, seed, s["sparsity"] >= 0.0 and s["eval/episodic_return"] >= 20.0))
                params = json.loads((d / "compress.json").read_text())["stages"][-1]["params"]
                assert (
                    f"| {v.label} | {seed} | {s['eval/episodic_return']:.1f} | {100 * s['sparsity']:.1f} % | {params:,} |"
                    in text
                )
        assert judged == expected
        for label in ("L0", "GMP"):
            met = sum(m for v, _, m in expected if v == label)
            assert got["met"][label] == {"met": met, "seeds": 2}
            assert f"{label} on {met} of 2 seeds" in text
        assert "Target >= 0 % at eval >= 20: " in text
        comparisons = {(c["better"], c["than"]) for c in got["comparisons"]}
        assert comparisons == {("L0", "GMP"), ("L0", "dense")}
        assert set(got["figures"]) == {"return", "sparsity", "compress"}  # one sparsity level: no frontier
        for name in got["figures"].values():
            assert (tiny_report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert f"]({name})" in text
    for needed in (
        "Seeds: 1, 2",
        "report built on",
        "runs trained on",
        "torch ",
        "rliable ",
        "python -m benchmark.report tiny",
    ):
        assert needed in text


def test_in_progress_reports_a_halted_run_at_its_checkpoint_and_only_on_request(tmp_path):
    runs, spec = tmp_path / "runs", spec_of("l0", 1)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "algos" / "ppo_l0.py"), *spec.train_args()]
        + ["--runs-dir", str(runs), "--wandb-mode", "disabled", "--no-progress", "--halt-after", "512"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = runs.iterdir()
    base = ["tiny", "--runs-dir", str(runs), "--reps", "20"]
    code, _, err = invoke(report.main, *base, "--out", str(tmp_path / "finished"))
    assert code == 0, err
    assert spec.key in json.loads((tmp_path / "finished" / "report.json").read_text())["missing"]

    code, _, err = invoke(report.main, *base, "--out", str(tmp_path / "now"), "--in-progress")
    assert code == 0, err
    data = json.loads((tmp_path / "now" / "report.json").read_text())
    assert spec.key not in data["missing"]
    (row,) = [r for c in data["cells"] for r in c["rows"] if r["variant"] == "l0"]
    logged = [
        m for m in read_metrics(run_dir) if m.get("l0/sparsity") is not None and m["global_step"] <= 512
    ]
    assert row["sparsity"] == logged[-1]["l0/sparsity"] and row["trained_return"] is None
    text = (tmp_path / "now" / "REPORT.md").read_text()
    assert "L0 (in progress: step 512 of 1,024)" in text and "1 still training" in text
    (record,) = report.collect(TINY, runs, in_progress=True)[0]
    curve = figures.sparsity_curve(record, np.array([256.0, 512.0, 768.0, 1024.0]))
    assert np.isfinite(curve[:2]).all() and np.isnan(curve[2:]).all()  # nothing past the checkpoint
    code, _, err = invoke(report.main, *base, "--out", str(tmp_path / "p"), "--in-progress", "--publish")
    assert code == 2 and "--publish reports finished runs only" in err


def test_the_frontier_figure_is_drawn_for_several_sparsity_levels(tmp_path):
    cell = suites.SUITES["frontier"].cells[0]
    rows = [
        tables.Row(v.label, v.name, "l0", [1, 2], stats.Estimate(r, r - 5, r + 5), None, s, *[None] * 10)
        for v, r, s in zip(
            cell.variants, np.linspace(500, 300, len(cell.variants)), np.linspace(0, 0.99, len(cell.variants))
        )
    ]
    assert figures.plot_frontier(cell, {}, rows, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
    assert not figures.plot_frontier(TINY.cells[0], {}, rows, tmp_path / "g.png")


def test_publishing_without_an_api_key_says_so_in_one_line_and_keeps_the_local_report(
    tiny, tmp_path, monkeypatch
):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    out = tmp_path / "out"
    code, _, err = invoke(
        report.main, "tiny", "--runs-dir", str(tiny["runs"]), "--out", str(out), "--reps", "20", "--publish"
    )
    assert code == 2 and err.count("\n") == 1
    assert "no W&B API key" in err and "wandb sync" in err and "--publish" in err
    assert (out / "REPORT.md").exists()


@pytest.mark.filterwarnings("ignore:Pydantic V1 style")  # wandb_workspaces' own, at import
def test_the_wandb_report_selects_exactly_the_reported_runs_by_name(tiny):
    import wandb_workspaces.reports.v2 as wr

    records, _ = report.collect(TINY, tiny["runs"])
    sections = [(c, [r for r in records if r.cell == c]) for c in TINY.cells]
    built = publish.wandb_report("l0rl benchmark: tiny", "tiny suite", sections, "test-entity", "l0rl")
    assert isinstance(built, wr.Report) and built.entity == "test-entity" and built.project == "l0rl"
    titles = [b.text for b in built.blocks if isinstance(b, wr.H2)]
    assert titles == [c.title for c in TINY.cells]
    grids = [b for b in built.blocks if isinstance(b, wr.PanelGrid)]
    assert len(grids) == 2 * len(TINY.cells)
    for (cell, recs), train, compress in zip(sections, grids[::2], grids[1::2]):
        (runset,) = train.runsets
        assert runset.groupby == [publish.GROUP_BY] and "== 'train'" in runset.filters
        names = sorted(r.run_dir.name for r in recs)
        assert len(names) == len(cell.variants) * len(TINY.seeds)
        assert runset.filters.startswith('Metric("Name") in [') and all(
            f"'{n}'" in runset.filters for n in names
        )
        plots = {p.title: p for p in train.panels}
        assert plots["episodic return"].y == ["charts/episodic_return"]
        assert plots["sparsity"].y == ["l0/sparsity", "gmp/sparsity"]
        assert plots["L0 lambda"].y == ["l0/lambda"]
        assert all(p.x == "global_step" and p.groupby == publish.GROUP_BY for p in train.panels)
        (table,) = compress.runsets
        assert "== 'compress'" in table.filters
        # every compress run of these runs (the dense runs have three: l0, magnitude, svd), and no other
        expected = publish.compress_run_names(recs)
        assert f"'{names[0]}__compress_l0'" in table.filters and all(
            f"'{n}'" in table.filters for n in expected
        )
        assert len(expected) == sum(len(r.compress) for r in recs) > len(names)
        assert "summary:compress/low-rank/compression_params" in table.visible_columns


def test_suite_runs_get_one_wandb_group_per_variant(tmp_path):
    """The W&B UI groups by group: a suite's dense, L0 and GMP runs must not share one."""
    runner = tasks.Runner(TINY, suites.expand(TINY), tmp_path, "disabled", 2)
    groups = {}
    for spec in suites.expand(TINY):
        _, argv = runner.train_command(spec) if spec.variant.gmp_target_from is None else (None, None)
        if argv:
            groups[spec.variant.name] = argv[argv.index("--wandb-group") + 1]
    assert groups == {v: f"tiny__CartPole-v1__ppo_{v}" for v in groups} and len(groups) == 2


# --- statistics -----------------------------------------------------------------------------------


def test_iqm_of_one_to_eight_repeated_is_four_and_a_half():
    est = stats.iqm(list(range(1, 9)) * 3)
    assert est.point == pytest.approx(4.5)
    assert est.low < 4.5 < est.high
    assert stats.iqm(list(range(1, 9)) * 3) == est  # seeded: the same interval every time


def test_constant_scores_give_a_zero_width_interval():
    assert stats.iqm([7.0, 7.0, 7.0]) == stats.Estimate(7.0, 7.0, 7.0)
    point, low, high = stats.iqm_curve(np.full((3, 5), 2.0), reps=50)
    assert np.all(point == 2.0) and np.all(low == 2.0) and np.all(high == 2.0)


def test_iqm_curve_is_rliables_iqm_at_every_point():
    curves = np.random.default_rng(0).normal(size=(5, 7))
    point, low, high = stats.iqm_curve(curves, reps=50)
    assert point == pytest.approx([metrics.aggregate_iqm(c) for c in curves.T])
    assert np.all(low <= point) and np.all(point <= high)


def test_probability_of_improvement_known_answers():
    assert stats.probability_of_improvement([10, 11, 12], [1, 2, 3], reps=200) == stats.Estimate(
        1.0, 1.0, 1.0
    )
    assert stats.probability_of_improvement([1, 2, 3], [10, 11, 12], reps=200).point == 0.0
    same = stats.probability_of_improvement([1, 2, 3], [1, 2, 3], reps=200)
    assert same.point == pytest.approx(0.5) and same.low < 0.5 < same.high


def test_the_bootstrap_leaves_numpys_global_generator_as_it_was():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    stats.iqm([1.0, 2.0, 3.0], reps=20)
    assert np.random.rand() == expected


def test_windows_table_holds_each_runs_mean_return_count_and_last_sparsity(tmp_path, capsys):
    def write(name: str, rows: list[dict]) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return tmp_path / name

    ep = lambda step, ret: {"global_step": step, "charts/episodic_return": ret}  # noqa: E731
    l0_run = write(
        "Env-v0__ppo_l0__1__1",
        [ep(5, 10.0), {"global_step": 8, "l0/sparsity": 0.5}, ep(10, 20.0), ep(11, 31.0)]
        + [{"global_step": 19, "l0/sparsity": 0.75}, ep(20, 2.0), {"global_step": 25, "l0/sparsity": 0.9}],
    )
    dense = write("Env-v0__ppo_dense__1__2", [ep(3, 7.0), ep(12, 9.0)])
    lines = windows.main([str(dense), str(l0_run), "--every", "10"])
    assert capsys.readouterr().out.splitlines() == lines
    assert lines[0] == "| step | ppo_dense (seed 1) | ppo_l0 (seed 1) |"
    # (0, 10]: 10 and 20 -> 15 over 2 episodes, sparsity last logged at 8; (10, 20]: 31 and 2
    assert lines[2] == "| 10 | 7 (1) | 15 (2) / 50.0 % |"
    # dense stopped at step 12: no partial window for it; the L0 run's sparsity is the one logged at 19
    assert lines[3] == "| 20 | - | 16 (2) / 75.0 % |" and len(lines) == 4
    assert windows.main([str(l0_run), "--every", "10", "--from", "10"])[2:] == ["| 20 | 16 (2) / 75.0 % |"]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.windows", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"benchmark.windows: error: {tmp_path / 'nope'}: no metrics.jsonl; pass run directories (runs/<run_name>)"
    ]


def test_conv_blocks_times_every_width_up_to_the_dense_one():
    from benchmark.measure.conv_blocks import main as conv_blocks
    from l0rl.errors import UsageError

    result = conv_blocks(["--layer", "3", "--rounds", "1"])
    assert list(result) == [1, 4, 8, 9, 12, 16, 17, 24, 32, 33, 48, 64]
    assert all(us > 0 for us in result.values())
    with pytest.raises(UsageError, match="--layer must be 1, 2 or 3"):
        conv_blocks(["--layer", "4"])


def test_a_compress_report_answers_only_the_options_it_recorded():
    """The runner skips a compression whose report matches: same checkpoint step, episodes and every
    option asked for; an option the report predates (not recorded) means compressing again."""
    same_compression = tasks.same_compression
    old = {
        "global_step": 1000,
        "episodes": 10,
        "options": {"rank_search": True, "tolerance": 0.05, "sparsity": None},
    }
    asked = {"method": "l0", "sparsity": None, "episodes": 10, "wandb_mode": "offline", "rank_search": True}
    assert same_compression(old, asked, 1000)
    assert not same_compression(old, asked, 2000)  # the run trained further
    assert not same_compression(old, {**asked, "episodes": 20}, 1000)
    assert not same_compression(old, {**asked, "rank_search": False}, 1000)
    assert not same_compression(old, {**asked, "channel_block": 16}, 1000)  # the report predates it
    assert same_compression(old, {**asked, "channel_block": None}, 1000)  # not asked for
    magnitude = {**old, "options": {**old["options"], "sparsity": 0.9}}
    assert same_compression(magnitude, {**asked, "method": "magnitude", "sparsity": 0.9 + 1e-12}, 1000)
    assert not same_compression(magnitude, {**asked, "method": "magnitude", "sparsity": 0.85}, 1000)


def test_learner_cost_runs_the_torso_once_per_forward_unless_per_head():
    from benchmark.measure.learner_cost import main as learner_cost
    from l0rl.errors import UsageError

    tiny = ["--num-envs", "2", "--num-steps", "4", "--num-minibatches", "2", "--update-epochs", "1"]
    once = learner_cost([*tiny, "--repeats", "1", "--widths", "8", "16", "16", "--closed", "2", "0", "3"])
    twice = learner_cost([*tiny, "--repeats", "1", "--per-head", "--contiguous"])
    # 4 rollout forwards + 2 minibatches: one torso pass each, or one per head
    assert [r["first_conv_calls"] for r in once["repeats"]] == [6]
    assert [r["first_conv_calls"] for r in twice["repeats"]] == [12]
    assert once["widths"] == [8, 16, 16] and twice["widths"] == [32, 64, 64]
    assert once["closed"] == [2, 0, 3] and twice["closed"] == [0, 0, 0]
    assert once["channels_last"] and not twice["channels_last"]
    with pytest.raises(UsageError, match="--num-minibatches must divide"):
        learner_cost(["--num-envs", "3", "--num-steps", "1", "--num-minibatches", "2"])
    with pytest.raises(UsageError, match="--widths must be 3 positive"):
        learner_cost(["--widths", "0", "1", "1"])
    with pytest.raises(UsageError, match="--closed must leave every conv at least one open channel"):
        learner_cost(["--widths", "8", "16", "16", "--closed", "0", "16", "0"])


def test_the_per_seed_table_counts_the_seeds_that_meet_a_cells_target(tmp_path):
    from l0rl.report.collect import Record

    cell = suites.Cell(
        "CartPole-v1", "ppo_l0", 500_000, (suites.DENSE, suites.L0), target=suites.Target(0.95, 475)
    )
    stage = {"stage": "low-rank", "params": 120.0, "bytes": 900.0, "return_mean": 480.0}

    def record(variant, seed, ret, sparsity, step=None):
        return Record(
            cell,
            variant,
            "ppo_l0",
            seed,
            tmp_path / f"r{seed}",
            {},
            {"eval/episodic_return": ret, "sparsity": sparsity},
            [],
            {"l0": {"stages": [stage]}},
            {},
            progress_step=step,
        )

    records = [
        record(suites.L0, 2, 500.0, 0.96),
        record(suites.L0, 1, 470.0, 0.97),  # sparse enough, return too low
        record(suites.L0, 3, 490.0, 0.5, step=1000),  # still training: not judged
        record(suites.DENSE, 1, 500.0, 0.0),
    ]
    rows = report.seed_rows(cell, records)
    assert [(r.variant, r.seed, r.met) for r in rows] == [
        ("dense", 1, None),
        ("L0", 1, False),
        ("L0", 2, True),
    ]
    lines = report.seed_table(cell, rows)
    assert lines[0] == "Target >= 95 % at eval >= 475: L0 on 1 of 2 seeds."
    assert "| L0 | 2 | 500.0 | 96.0 % | 120 | 900 | 480.0 | yes |" in lines
    assert report.target_json(cell, rows)["met"] == {"L0": {"met": 1, "seeds": 2}}
