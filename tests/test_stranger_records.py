"""What a stranger's run directory holds is data for the readers too: a crafted record never crashes
`l0rl report` (a one-line warning naming the file, and the report of what is sound), text from a file
never becomes markup in REPORT.md, a crafted compressed*.pt is refused by `l0rl evaluate` in one line
(exit 2, nothing run, nothing allocated beyond the file), and a replay_buffer.pt that would run code
is refused at --resume before anything in it runs."""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from helpers import invoke, make_key, one_line, resume, signing_with, tiny_args

from l0rl.algos import dqn_l0, ppo_l0, sac_l0
from l0rl.compress.__main__ import main as compress_main
from l0rl.compress.serialize import FORMAT, VERSION, to_bytes
from l0rl.errors import UsageError
from l0rl.evaluate import main as evaluate_main
from l0rl.report.cli import main as report_main
from l0rl.runkit import checkpoint as ckpt_mod
from l0rl.runkit.replay import BUFFER_NAME

REPS = "50"  # bootstrap repetitions: the tables, not the intervals, are under test


pytestmark = pytest.mark.usefixtures("own_key")  # each test signs with its own key


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished, compressed PPO run with a benchmark.json, as a suite leaves it."""
    root = tmp_path_factory.mktemp("theirs")
    with signing_with(make_key(root / "resume.key")):
        run = Path(ppo_l0.train(tiny_args("ppo", root, eval_episodes=2)))
        compress_main([str(run), "--episodes", "1", "--wandb-mode", "disabled", "--no-progress"])
    bench = {"suite": "x", "sessions": [{"hardware": {"cpu": "Honest CPU", "cores": 2}}]}
    (run / "benchmark.json").write_text(json.dumps(bench))
    return run


def received(finished: Path, tmp_path: Path) -> Path:
    run = tmp_path / "received" / finished.name
    shutil.copytree(finished, run)
    (run / ckpt_mod.LOCK_NAME).unlink(missing_ok=True)
    return run


def report(run: Path, tmp_path: Path) -> tuple[int, str, str]:
    """(exit code, REPORT.md text or '', stderr) of `l0rl report RUN`."""
    out = tmp_path / "report"
    code, stdout, err = invoke(report_main, run, "--out", out, "--reps", REPS, prog="l0rl report")
    text = (out / "REPORT.md").read_text() if (out / "REPORT.md").exists() else ""
    return code, text, err


def edit_checkpoint(run: Path, craft) -> None:
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    craft(ckpt)
    torch.save(ckpt, run / "checkpoint.pt")


def write(name: str, data: bytes | str):
    def craft(run: Path) -> None:
        path = run / name
        path.unlink(missing_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return craft


def append(name: str, line: str):
    def craft(run: Path) -> None:
        with open(run / name, "a") as f:
            f.write(line)

    return craft


# A value no honest report of a CartPole run holds (timings and sizes vary by machine, so a short
# number such as 42 can turn up in a sound report by chance).
SENTINEL = 987654321
SENTINEL_KEYS = ("charts/episodic_return", "eval/episodic_return", "sparsity")


def link(name: str, target: str):
    def craft(run: Path) -> None:
        outside = run.parent / target
        # A plausible record whose figure the report would print if it followed the link.
        outside.write_text(json.dumps({"global_step": 1, **{k: SENTINEL for k in SENTINEL_KEYS}}) + "\n")
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(outside)

    return craft


def fifo(name: str):
    def craft(run: Path) -> None:
        (run / name).unlink(missing_ok=True)
        os.mkfifo(run / name)

    return craft


def json_edit(name: str, change):
    def craft(run: Path) -> None:
        data = json.loads((run / name).read_text())
        change(data)
        (run / name).write_text(json.dumps(data))

    return craft


def first_stage(field, value):
    return json_edit("compress.json", lambda d: d["stages"][0].update({field: value}))


# --- malformed records: the report warns, names the file and reports what is sound --------------------

CRAFTED = {
    "metrics: binary line": (
        append("metrics.jsonl", '\x00\xff{"a"\n{"global_step": 9}\n'),
        "metrics.jsonl line",
    ),
    "metrics: a list": (append("metrics.jsonl", "[1, 2]\n"), "not a metrics record"),
    "metrics: string step": (append("metrics.jsonl", '{"global_step": "64"}\n'), "not a metrics record"),
    "metrics: string value": (append("metrics.jsonl", '{"global_step": 64, "x": "1"}\n'), "not a metrics"),
    "metrics: nested": (append("metrics.jsonl", "[" * 100_000 + "\n"), "not a metrics record"),
    "metrics: symlink": (link("metrics.jsonl", "secret.jsonl"), "is a symlink"),
    "metrics: fifo": (fifo("metrics.jsonl"), "is a FIFO"),
    "summary: a list": (write("summary.json", "[1]"), "summary.json: not a JSON object"),
    "summary: string figure": (
        json_edit("summary.json", lambda d: d.update(sparsity="0.9")),
        "sparsity is not",
    ),
    "summary: NaN": (json_edit("summary.json", lambda d: d.update(sparsity=float("nan"))), "sparsity is not"),
    "summary: not JSON": (write("summary.json", "{'python': True}"), "summary.json: not a JSON file"),
    "summary: symlink": (link("summary.json", "secret.json"), "is a symlink"),
    "compress: no stages": (write("compress.json", '{"stages": []}'), "not a compress report"),
    "compress: string figure": (first_stage("params", "many"), "params not what compress writes"),
    "compress: a stage not a dict": (
        json_edit("compress.json", lambda d: d["stages"].insert(0, 7)),
        "stage not",
    ),
    "bench: sessions not a list": (write("benchmark.json", '{"sessions": 5}'), "no list of sessions"),
    "bench: hardware not a dict": (
        write("benchmark.json", '{"sessions": [{"hardware": "big"}]}'),
        "without a hardware record",
    ),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_malformed_record_is_one_warning_and_the_rest_is_reported(finished, tmp_path, name):
    craft, warning = CRAFTED[name]
    run = received(finished, tmp_path)
    craft(run)
    code, text, err = report(run, tmp_path)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warning in warnings[0], err
    assert "Traceback" not in err and run.name in text  # the run is still reported
    assert str(SENTINEL)[:7] not in text  # nothing read through a link reaches the report


def test_the_sentinel_would_reach_the_report_if_a_link_were_followed(finished, tmp_path):
    """The symlink cases above can fail: the same figure in a regular summary.json is reported."""
    run = received(finished, tmp_path)
    json_edit("summary.json", lambda d: d.update({"eval/episodic_return": SENTINEL}))(run)
    code, text, err = report(run, tmp_path)
    assert code == 0, err
    assert str(SENTINEL)[:7] in text


def test_the_report_of_a_sound_run_has_no_warning(finished, tmp_path):
    code, text, err = report(received(finished, tmp_path), tmp_path)
    assert code == 0 and "warning" not in err, err
    assert "Honest CPU (2 cores)" in text


@pytest.mark.parametrize(
    "craft",
    [
        lambda c: c["args"].update(env_id=3),
        lambda c: c["args"].update(sparsity="evil"),
        lambda c: c["args"].update(seed=True),
        lambda c: c.update(global_step="64"),
        lambda c: c.pop("args"),
    ],
    ids=["int env id", "unknown sparsity", "bool seed", "string step", "no args"],
)
def test_a_checkpoint_without_what_a_report_groups_by_is_skipped_in_one_line(finished, tmp_path, craft):
    run = received(finished, tmp_path)
    edit_checkpoint(run, craft)
    code, _, err = report(run, tmp_path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err
    assert lines[0].startswith("warning:") and "run skipped" in lines[0]
    assert "none of the runs given can be reported" in lines[1]
    assert not (tmp_path / "report").exists()  # nothing written for nothing reported


def test_a_symlinked_run_in_a_folder_of_runs_is_not_followed(finished, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "theirs").symlink_to(finished)
    code, _, err = report(runs, tmp_path)
    assert code == 2 and "is a symlink, not a run directory" in err, err


# --- text from files is text in REPORT.md ---------------------------------------------------------

INJECTED = "<img src=http://x/p.png> | fake | row |\n## Heading\n[link](http://x) `code` *em*"


def assert_inert(text: str) -> None:
    """No tag, heading, table cell, link or code span of the injected text survives as markup."""
    assert "<img" not in text and "&lt;img src=http://x/p.png&gt;" in text
    assert "\n## Heading" not in text and "| fake |" not in text
    assert "[link](http://x)" not in text and "\\[link\\]" in text


def test_a_hardware_text_from_benchmark_json_is_escaped(finished, tmp_path):
    run = received(finished, tmp_path)
    bench = {"sessions": [{"hardware": {"cpu": INJECTED, "cores": 2}}]}
    (run / "benchmark.json").write_text(json.dumps(bench))
    code, text, err = report(run, tmp_path)
    assert code == 0, err
    assert_inert(text)


def test_an_exp_name_from_a_checkpoint_is_escaped(finished, tmp_path):
    run = received(finished, tmp_path)
    edit_checkpoint(run, lambda c: c["args"].update(exp_name=INJECTED))
    code, text, err = report(run, tmp_path)
    assert code == 0, err
    assert_inert(text)


# --- crafted compressed*.pt: l0rl evaluate refuses in one line ----------------------------------


class Payload:
    """Pickled, it would run a shell command when loaded with pickle (never with weights_only)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def blob(**fields) -> bytes:
    good = {"format": FORMAT, "version": VERSION, "arch": [], "state": {}, "meta": {}}
    return to_bytes({**good, **fields})


LINEAR = [{"type": "Linear", "in_features": 4, "out_features": 2, "bias": False}]


def compressed_cases(marker: Path) -> dict:
    return {
        "empty": (b"", "not a readable compressed policy"),
        "truncated": (None, "not a readable compressed policy"),
        "bare pickle": (pickle.dumps(Payload(marker)), "bare pickle"),
        "torch zip with payload": (to_bytes({"format": FORMAT, "x": Payload(marker)}), "not plain data"),
        "another format": (to_bytes({"format": "onnx"}), "not an l0rl compressed policy"),
        "future version": (blob(version=99), "has compressed format 99"),
        "state not a dict": (blob(arch=LINEAR, state=[1]), "its state is not a dict"),
        "unknown layer": (blob(arch=[{"type": "os.system"}], state={}), "not a policy compress wrote"),
        "huge sparse shape": (
            blob(
                arch=LINEAR,
                state={
                    "0.weight": {
                        "shape": [50_000, 50_000],
                        "mask": torch.zeros(1, dtype=torch.uint8),
                        "values": torch.zeros(0),
                    }
                },
            ),
            "mask does not hold one bit per element",
        ),
        "wrong weight shape": (
            blob(arch=LINEAR, state={"0.weight": torch.zeros(3, 3)}),
            "not a policy compress",
        ),
    }


CASES = sorted(compressed_cases(Path("x")))


@pytest.mark.parametrize("case", CASES)
def test_a_crafted_compressed_file_is_refused_by_evaluate_in_one_line(finished, tmp_path, case):
    marker = tmp_path / "ran"
    data, message = compressed_cases(marker)[case]
    run = received(finished, tmp_path)
    path = run / "compressed.pt"
    path.write_bytes(path.read_bytes()[:300] if data is None else data)
    code, stdout, err = invoke(evaluate_main, path, "--episodes", "1", prog="l0rl evaluate")
    assert code == 2 and message in one_line(err), err
    assert not marker.exists() and not stdout


CRAFTED_POLICY_RECORDS = {
    "an env of other spaces": (
        lambda c: c.update(env_id="Acrobot-v1"),
        "takes observations (4,) and actions Discrete(2), but Acrobot-v1 has (6,)",
    ),
    "a Box with low above high": (
        lambda c: c["policy"]["observation_space"].update(low=torch.ones(4), high=torch.zeros(4)),
        "its observation or action space is not one l0rl writes (ValueError)",
    ),
    "an object dtype": (
        lambda c: c["policy"]["observation_space"].update(dtype="object"),
        "its observation or action space is not one l0rl writes",
    ),
    "a space that is a list": (
        lambda c: c["policy"].update(action_space=[1]),
        "its observation or action space is not one l0rl writes (TypeError)",
    ),
    "observations the policy cannot take": (
        lambda c: c["policy"]["observation_space"].update(low=torch.zeros(7), high=torch.ones(7)),
        "it cannot take an observation of shape (7,)",
    ),
    "more actions than the policy has logits": (
        lambda c: c["policy"]["action_space"].update(n=3),
        "it maps an observation to shape (1, 2), not (1, 3)",
    ),
    "a seed that is text": (lambda c: c["args"].update(seed="x"), "its saved --seed is 'x'"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED_POLICY_RECORDS))
def test_a_crafted_policy_record_is_one_line_in_every_reader(finished, tmp_path, case):
    """compress, l0rl evaluate and play rebuild the policy from the checkpoint's record and play it in
    the env the checkpoint names: a record that does not fit is one line, before any episode."""
    from l0rl.play import main as play_main

    craft, message = CRAFTED_POLICY_RECORDS[case]
    run = received(finished, tmp_path)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    craft(ckpt)
    torch.save(ckpt, run / "checkpoint.pt")
    for main, argv in (
        (evaluate_main, [run, "--episodes", "1"]),
        (play_main, [run, "--episodes", "1"]),
        (compress_main, [run, "--episodes", "1", "--wandb-mode", "disabled", "--no-progress"]),
    ):
        code, stdout, err = invoke(main, *argv)
        assert code == 2 and message in one_line(err), (main, err)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_a_compressed_file_that_is_not_a_regular_file_is_refused_unread(finished, tmp_path, kind):
    run = received(finished, tmp_path)
    path = run / "compressed.pt"
    path.unlink()
    if kind == "symlink":
        path.symlink_to(finished / "compressed.pt")  # a real policy, but reached through a link
    elif kind == "fifo":
        os.mkfifo(path)  # never waited on
    else:
        path.mkdir()
    code, _, err = invoke(evaluate_main, path, "--episodes", "1", prog="l0rl evaluate")
    assert code == 2, err
    assert {"symlink": "is a symlink", "fifo": "is a FIFO", "directory": "has no checkpoint.pt"}[
        kind
    ] in one_line(err)


def test_the_genuine_compressed_file_evaluates(finished, tmp_path):
    run = received(finished, tmp_path)
    code, stdout, err = invoke(evaluate_main, run / "compressed.pt", "--episodes", "1", prog="l0rl evaluate")
    assert code == 0 and "compressed.pt" in stdout, err


# --- a replay buffer that would run code ------------------------------------------------------------


@pytest.mark.parametrize("pickled", ["bare pickle", "torch zip"])
def test_a_replay_buffer_that_would_run_code_is_refused_at_resume(tmp_path, pickled):
    run = Path(dqn_l0.train(tiny_args("dqn", tmp_path, eval_episodes=0, halt_after=200)))
    step = torch.load(run / "checkpoint.pt", weights_only=True)["global_step"]
    marker = tmp_path / "ran"
    payload = {"global_step": step, "buffer": Payload(marker)}
    (run / BUFFER_NAME).write_bytes(pickle.dumps(payload) if pickled == "bare pickle" else to_bytes(payload))
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(
        ckpt_mod.RunError, match="bare pickle" if pickled == "bare pickle" else "not plain data"
    ):
        resume("dqn", run)
    assert not marker.exists()
    assert (run / "checkpoint.pt").read_bytes() == before  # the run is intact: delete the buffer and resume
    (run / BUFFER_NAME).unlink()
    assert torch.load(resume("dqn", run) + "/checkpoint.pt", weights_only=True)["finished"]


def test_a_crafted_keep_best_state_is_one_line_at_resume(tmp_path):
    run = Path(dqn_l0.train(tiny_args("dqn", tmp_path, eval_episodes=0, halt_after=200)))
    good = torch.load(run / "checkpoint.pt", weights_only=True)
    for field, value in (("best_return", "x"), ("best_return", float("nan")), ("best_step", float("inf"))):
        ckpt = {**good, "schedulers": {**good["schedulers"]}}
        ckpt["schedulers"]["keep_best"] = {**good["schedulers"]["keep_best"], field: value}
        torch.save(ckpt, run / "checkpoint.pt")
        with pytest.raises(ckpt_mod.RunError, match="keep_best schedule does not fit this run's: keep-best"):
            resume("dqn", run)
    torch.save(good, run / "checkpoint.pt")
    assert torch.load(resume("dqn", run) + "/checkpoint.pt", weights_only=True)["finished"]


def test_a_suites_readers_of_a_carried_run_refuse_a_link_and_take_a_damaged_report_as_stale(
    finished, tmp_path
):
    from benchmark.layout import reached_sparsity
    from benchmark.tasks import same_compression

    run = received(finished, tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "sparsity": 0.5}))
    assert reached_sparsity(run) == 0.5
    (run / "summary.json").write_text(json.dumps({**summary, "sparsity": "0.5"}))
    with pytest.raises(ckpt_mod.RunError, match="has no sparsity"):
        reached_sparsity(run)
    (run / "summary.json").unlink()
    (run / "summary.json").symlink_to("/dev/zero")
    with pytest.raises(ckpt_mod.RunError, match="summary.json is a symlink"):
        reached_sparsity(run)
    genuine = json.loads((run / "compress.json").read_text())
    options = {"episodes": genuine["episodes"], "method": "l0", "sparsity": None, "wandb_mode": "disabled"}
    assert same_compression(genuine, options, genuine["global_step"])
    for crafted in ({**genuine, "options": None}, {**genuine, "options": {"x": 1}, "episodes": []}, {}):
        assert not same_compression(crafted, {**options, "x": 2.0}, genuine["global_step"])


@pytest.mark.parametrize("name", ["dqn", "sac"])
def test_a_replay_buffer_larger_than_memory_or_a_batch_larger_than_it_is_one_line(tmp_path, name):
    """Typed, or from a crafted checkpoint's arguments: one line, before a run directory exists."""
    module = dqn_l0 if name == "dqn" else sac_l0
    with pytest.raises(UsageError, match="--buffer-size 1,000,000,000,000 transitions does not fit"):
        module.train(tiny_args(name, tmp_path, buffer_size=10**12))
    with pytest.raises(UsageError, match=r"--batch-size must be <= --buffer-size \(400\)"):
        module.train(tiny_args(name, tmp_path, buffer_size=400, batch_size=10**12))
    assert not (tmp_path / "runs").exists()


def test_a_crafted_hidden_size_is_one_line_not_an_allocation_traceback(tmp_path):
    run = Path(sac_l0.train(tiny_args("sac", tmp_path, eval_episodes=0, halt_after=100)))
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["args"]["hidden_size"] = 10**6  # a 10**12-weight layer
    torch.save(ckpt, run / "checkpoint.pt")
    with pytest.raises(UsageError, match="--hidden-size must be <= 16384, got 1000000"):
        resume("sac", run)
