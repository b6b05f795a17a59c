"""Files from a stranger, and a W&B server that stalls: a malformed metrics record, summary,
benchmark.json or compressed policy is one line (an error naming the file, or a skipped record with
one warning), never a traceback; text a file holds reaches REPORT.md escaped; a pickled replay buffer
is refused unrun; and W&B never holds a run past its deadline, whether its server answers nothing or
answers the probe and stalls later."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import ROOT, TINY, tiny_args

from l0rl.algos import ppo_l0
from l0rl.errors import UsageError
from l0rl.runkit import load_checkpoint, read_metrics, tracker
from l0rl.runkit.tracker import Tracker

pytestmark = pytest.mark.usefixtures("own_key")  # each test signs with its own key


# --- W&B: a server that accepts and stalls never holds a run past the deadline -----------------------

VIEWER = json.dumps({"data": {"viewer": {"id": "v", "entity": "e", "username": "u", "flags": "{}"}}}).encode()


class StallingServer:
    """A loopback HTTP server standing in for W&B: it answers `answers` requests (every GraphQL query
    with the same viewer record, which W&B's init takes as an answer), never answers the ones after,
    and never answers a file_stream upload (what wandb.finish waits on) while `stall_uploads`."""

    def __init__(self, answers: int, stall_uploads: bool = True):
        self.answers, self.stall_uploads, self.held = answers, stall_uploads, []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        self.held.append(conn)  # held open, unanswered, until close()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(
            (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
        # what wandb.finish waits on: the run's files (their upload URLs) and its history stream
        upload = b"file_stream" in head.split(b"\r\n", 1)[0] or b'"CreateRunFiles"' in body
        if self.answers <= 0 or (upload and self.stall_uploads):
            return
        self.answers -= 1
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(VIEWER), VIEWER)
        )
        conn.close()

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def wandb_at(monkeypatch):
    """Point W&B at a StallingServer with a dummy key, a short deadline and a fresh probe."""
    servers = []

    def start(answers: int, deadline: float = 3.0) -> StallingServer:
        server = StallingServer(answers)
        servers.append(server)
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
        monkeypatch.delenv("WANDB_MODE", raising=False)
        monkeypatch.setattr(tracker, "WANDB_DEADLINE_S", deadline)
        monkeypatch.setattr(tracker, "PROBE_TIMEOUT_S", 1.0)
        monkeypatch.setattr(tracker, "_probed", {})
        return server

    yield start
    for server in servers:
        server.close()


OFFLINE_START_S = 6.0
"""What wandb.init(mode="offline") takes at most on a loaded 2-core machine (about 1.5 s unloaded)."""


def test_auto_falls_back_to_offline_within_the_deadline_when_the_server_stalls_after_the_probe(
    wandb_at, tmp_path, capsys
):
    wandb_at(answers=1)  # the probe gets its answer, wandb.init's queries none
    (tmp_path / "run").mkdir()
    start = time.monotonic()
    t = Tracker(tmp_path / "run", "x", config={}, wandb_mode="auto")
    took = time.monotonic() - start
    t.log({"a": 1.0}, 1)
    t.finish()
    err = capsys.readouterr().err
    assert t.mode == "offline" and took < 3.0 + OFFLINE_START_S  # W&B's own init waited 22 s here
    assert [line for line in err.splitlines() if "W&B unreachable" in line] == [
        "warning: W&B unreachable (no answer within 3 s); logging offline, upload later with `wandb sync`"
    ]
    assert len(list((tmp_path / "run" / "wandb").glob("offline-run-*"))) == 1
    assert [r["a"] for r in read_metrics(tmp_path / "run")] == [1.0]


def test_online_is_refused_in_one_line_within_the_deadline_when_the_server_stalls(wandb_at, tmp_path):
    wandb_at(answers=1)
    (tmp_path / "run").mkdir()
    start = time.monotonic()
    with pytest.raises(
        UsageError, match=r"--wandb-mode online: W&B failed to start \(no answer within 3 s\)"
    ):
        Tracker(tmp_path / "run", "x", config={}, wandb_mode="online")
    assert time.monotonic() - start < 3.0 + 1.5


def test_online_that_stalls_in_wandb_init_leaves_no_run_directory(wandb_at, tmp_path):
    wandb_at(answers=1)  # the probe passes, so the run directory exists when wandb.init stalls
    with pytest.raises(UsageError, match="--wandb-mode online: W&B failed to start"):
        ppo_l0.train(tiny_args("ppo", tmp_path, wandb_mode="online"))
    assert list((tmp_path / "runs").iterdir()) == []  # no .lock, no wandb/ left behind
    again = ppo_l0.train(tiny_args("ppo", tmp_path, wandb_mode="disabled"))  # the same name is free
    assert Path(again).parent == tmp_path / "runs"


def test_online_refused_before_the_run_directory_exists_when_nothing_answers(wandb_at, tmp_path):
    wandb_at(answers=0)
    start = time.monotonic()
    with pytest.raises(UsageError, match="--wandb-mode online: the W&B server .* did not answer"):
        ppo_l0.train(tiny_args("ppo", tmp_path, wandb_mode="online"))
    assert time.monotonic() - start < 1.0 + 1.0 and not (tmp_path / "runs").exists()


def stalled_process(
    tmp_path: Path, server: StallingServer, mode: str
) -> tuple[subprocess.CompletedProcess, float]:
    """A tiny PPO run in its own process against `server`, exit hooks included (W&B's own exit waited
    22 to 28 s more on a stalled server); its result and wall time."""
    env = {**os.environ, "WANDB_BASE_URL": server.url, "WANDB_API_KEY": "a" * 40}
    for name in ("WANDB_MODE", "WANDB_SERVICE"):  # this process's W&B service is not the child's
        env.pop(name, None)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in TINY["ppo"].items()]
    try:
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "algos" / "ppo_l0.py"), "--wandb-mode", mode, "--no-progress"]
            + ["--eval-episodes", "0", *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        return proc, time.monotonic() - start
    finally:
        server.close()


START_UP_S = 30.0
"""A tiny run's own wall time in a new process, W&B included: 8 s unloaded, up to 19 s loaded."""


def test_a_training_process_against_a_server_that_stalls_after_the_probe_logs_offline(tmp_path):
    proc, took = stalled_process(tmp_path, StallingServer(answers=1), "auto")
    assert proc.returncode == 0, proc.stderr
    assert "warning: W&B unreachable (no answer within 10 s); logging offline" in proc.stderr
    assert took < 10.0 + START_UP_S  # 49 s before the deadline held
    (run,) = (tmp_path / "runs").iterdir()
    assert load_checkpoint(run)["finished"]


def test_a_finish_that_stalls_leaves_the_run_intact_and_says_so_in_one_line(tmp_path):
    proc, took = stalled_process(tmp_path, StallingServer(answers=10**6), "online")  # uploads held
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    run_dir = Path("runs") / run.name  # as the run names itself: relative to where it started
    assert [line for line in proc.stderr.splitlines() if line.startswith("warning: W&B")] == [
        f"warning: W&B did not finish uploading within 10 s; {run_dir} is complete, upload its "
        f"W&B record later with `wandb sync {run_dir / 'wandb'}/run-*`"
    ]
    assert took < 10.0 + START_UP_S  # W&B's own finish waits as long as the server holds it
    assert load_checkpoint(run)["finished"] and read_metrics(run)[-1]["global_step"] == 128
