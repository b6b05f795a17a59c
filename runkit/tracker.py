"""Metrics go to three places at once: W&B (online, offline or disabled), a local record in the run
directory (`metrics.jsonl`, one JSON object per log call, and `summary.json`), so local reports never
need the cloud, and TensorBoard event files in the run directory (training runs), so
`tensorboard --logdir runs` shows every run under CleanRL's metric names.

W&B organisation: a run's group is its variant, `<env_id>__<exp_name>` (variant_group), and its job
type `train` or `compress`, so W&B's default grouped view never averages dense, L0 and GMP runs (or a
run and its compress runs) into one line; the name is the run directory's, tags env id, algorithm and
sparsity kind.

Every W&B row carries `global_step` and W&B plots against it (define_metric), while W&B's own step
counts log calls: several episodes that end in the same vector step are several rows, none lost.
"""

import base64
import contextlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from l0rl.errors import RunError, UsageError
from l0rl.runkit.checkpoint import atomic_write_json, finite_or_none
from l0rl.runkit.files import append_record, atomic_write_bytes, read_json_object, read_text, real_dir

WANDB_MODES = ("auto", "online", "offline", "disabled")
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
WANDB_DEADLINE_S = 10.0
"""The longest W&B may hold a run up, at its start (the probe and wandb.init together) and again at
its finish, whatever the server does (refuses, never answers, answers and then stalls): past it,
`auto` logs offline, `online` is refused (exit 2), and a finish leaves the upload to `wandb sync`."""
PROBE_TIMEOUT_S = 5.0
"""How long the W&B server has to answer the probe, a part of WANDB_DEADLINE_S: else `auto` logs
offline and `online` is refused, both before any run directory exists."""
TEARDOWN_WAIT_S = 0.5
"""How long W&B's service is given to stop after a finish was abandoned (its exit hook then no longer
holds the process: W&B's own exit waits on a stalled upload)."""
VIDEO_KEY = "videos/episode"
DEFAULT_BASE_URL = "https://api.wandb.ai"
_probed: dict[str, str | None] = {}  # base URL -> why it did not answer (None: it did), once per process
_probe_seconds: dict[str, float] = {}  # base URL -> how long its probe took (the start's deadline is shared)


def variant_group(env_id: str, exp_name: str) -> str:
    """A run's default W&B group: one per variant (an env id and an exp name such as ppo_l0 / ppo_dense)."""
    return f"{env_id}__{exp_name}"


def has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def resolve_wandb_mode(mode: str) -> str:
    """'auto' means: WANDB_MODE if set, else online when an API key is configured, else offline.
    'online' without a key is refused here, before any run directory exists.

    Offline runs make no network connection; upload them later with `wandb sync <run_dir>/wandb/offline-run-*`."""
    if mode not in WANDB_MODES:
        raise UsageError(f"unknown W&B mode {mode!r}; use one of {', '.join(WANDB_MODES)}")
    if mode == "online" and not has_wandb_key():
        raise UsageError(
            "--wandb-mode online needs a W&B API key (wandb login, or WANDB_API_KEY); "
            "use --wandb-mode offline and `wandb sync` the run later"
        )
    if mode != "auto":
        return mode
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    if env_mode == "dryrun":
        return "offline"
    return "online" if has_wandb_key() else "offline"


def within(seconds: float, call: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, call()) when `call` returns within `seconds` (its exception is raised here), else
    (False, None): it ran in a daemon thread, left behind, so a stalled server never holds the caller
    (or the process's exit) past the deadline."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as e:  # raised again in the caller's thread
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True, name="l0rl-wandb")
    thread.start()
    thread.join(max(seconds, 0.0))
    if thread.is_alive():
        return False, None
    if "error" in out:
        raise out["error"]
    return True, out.get("value")


def _probe(url: str) -> str | None:
    """None when the W&B server at `url` answers a GraphQL request within PROBE_TIMEOUT_S (any HTTP
    status counts, but a 401 to the key sent), else why not."""
    key = os.environ.get("WANDB_API_KEY")

    def ask() -> str | None:
        request = urllib.request.Request(
            url.rstrip("/") + "/graphql",
            data=b'{"query": "query { viewer { id } }"}',
            headers={"Content-Type": "application/json"},
        )
        if key:
            request.add_header("Authorization", "Basic " + base64.b64encode(f"api:{key}".encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
                response.read(1)
            return None
        except urllib.error.HTTPError as e:
            return "it refused the API key (HTTP 401)" if e.code == 401 and key else None
        except Exception as e:  # refused, reset, DNS, TLS, timeout: the server did not answer
            return str(getattr(e, "reason", e)).splitlines()[0][:100] or type(e).__name__

    done, problem = within(PROBE_TIMEOUT_S, ask)
    return problem if done else f"no answer within {PROBE_TIMEOUT_S:g} s"


def _base_url() -> str:
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def _no_usage_telemetry() -> None:
    """Turn off W&B's SDK usage telemetry (no run data): in every mode, offline too, it posts to the
    W&B server from exit hooks that wait 20 s or more on one that stalls, past any deadline set here."""
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy
    except ImportError:  # a wandb without it
        return
    opentelemetry_proxy.disable()


def _stop_wandb() -> None:
    """After a finish was left running: stop W&B's service (the next wandb.init starts a fresh one),
    waiting at most TEARDOWN_WAIT_S; its exit hook, which waits on the stalled upload, is gone."""
    import wandb

    within(TEARDOWN_WAIT_S, wandb.teardown)


def reachable_mode(explicit: bool) -> str:
    """For a mode that resolved to online: "online" when the W&B server (WANDB_BASE_URL) answers
    within PROBE_TIMEOUT_S, else "offline" with one warning line, or, when the user asked for
    `--wandb-mode online` (explicit), a UsageError. Asked once per process."""
    url = _base_url()
    first = url not in _probed
    if first:
        start = time.monotonic()
        _probed[url] = _probe(url)
        _probe_seconds[url] = time.monotonic() - start
    problem = _probed[url]
    if problem is None:
        return "online"
    if explicit:
        raise UsageError(
            f"--wandb-mode online: the W&B server {url} did not answer ({problem}); "
            "use --wandb-mode offline and `wandb sync` the run later"
        )
    if first:
        print(
            f"warning: W&B unreachable at {url} ({problem}); logging offline, upload later with `wandb sync`",
            file=sys.stderr,
        )
    return "offline"


def _quiet_tensorboard_threads() -> None:
    """TensorBoard's writer thread hands a failed write (a full disk) to the main thread, which names
    it in one line, and also raises it in its own: that thread's traceback is not printed."""
    default = threading.excepthook
    if getattr(default, "l0rl", False):
        return

    def hook(args: Any) -> None:
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
            default(args)

    hook.l0rl = True
    threading.excepthook = hook


class Tracker:
    """Logs metrics to W&B and to the run directory's local record; resumable."""

    def __init__(
        self,
        run_dir: str | Path,
        name: str,
        config: dict,
        wandb_mode: str = "auto",
        project: str = "l0rl",
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        job_type: str = "train",
        wandb_id: str | None = None,
        resume_step: int | None = None,
        tensorboard: bool = False,
    ):
        self.run_dir = Path(run_dir)
        self.tensorboard, self._tb_writer = tensorboard, None
        # TensorBoard drops earlier files' events from this step on: a resumed run's later rows are gone too
        self._tb_purge_step = resume_step + 1 if resume_step is not None else None
        self.metrics_path = self.run_dir / METRICS_NAME
        self.summary_path = self.run_dir / SUMMARY_NAME
        if resume_step is not None:
            self._truncate_record(resume_step)
        self.mode = resolve_wandb_mode(wandb_mode)
        if self.mode == "online":
            self.mode = reachable_mode(explicit=wandb_mode == "online")
        self.wandb_run = None
        if self.mode != "disabled":
            real_dir(self.run_dir / "wandb")  # W&B writes below it: a symlink there would take its files
            init = dict(
                project=project,
                entity=entity,
                group=group,
                tags=tags,
                name=name,
                job_type=job_type,
                config=config,
                dir=str(self.run_dir),
                id=wandb_id,
                resume="allow" if wandb_id else None,
                reinit="create_new",
            )
            self.wandb_run = self._init_wandb(init, explicit_online=wandb_mode == "online")
            self.wandb_run.define_metric("global_step")
            self.wandb_run.define_metric("*", step_metric="global_step")
        self.wandb_id = self.wandb_run.id if self.wandb_run is not None else wandb_id
        self._summary = read_summary(self.run_dir)

    def _init_wandb(self, init: dict, explicit_online: bool) -> Any:
        import wandb

        _no_usage_telemetry()
        if self.mode != "online":
            return wandb.init(mode=self.mode, **init)
        left = WANDB_DEADLINE_S - _probe_seconds.get(_base_url(), 0.0)
        # W&B's own timeouts, for a server that answers slowly; `within` for one that stalls past them
        settings = wandb.Settings(
            init_timeout=max(left, 1.0), finish_timeout=WANDB_DEADLINE_S, finish_timeout_raises=True
        )
        try:
            done, run = within(left, lambda: wandb.init(mode="online", settings=settings, **init))
            problem = f"no answer within {WANDB_DEADLINE_S:g} s"
        except Exception as e:
            done, problem = False, str(e).splitlines()[0] if str(e) else type(e).__name__
        if done:
            return run
        # a stalled init holds W&B's service: later runs in this process go offline at once
        _probed[_base_url()] = problem
        if explicit_online:
            raise UsageError(
                f"--wandb-mode online: W&B failed to start ({problem[:120]}); use --wandb-mode offline "
                "and `wandb sync` the run later"
            )
        print(
            f"warning: W&B unreachable ({problem[:120]}); logging offline, upload later with `wandb sync`",
            file=sys.stderr,
        )
        self.mode = "offline"
        return wandb.init(mode="offline", **init)

    def _truncate_record(self, step: int) -> None:
        """Drop local rows logged after the checkpoint we resume from, so no step appears twice (and a
        torn last row that a crash or a full disk left)."""
        if not os.path.lexists(self.metrics_path):
            return
        keep = [json.dumps(row) for row in read_metrics(self.run_dir) if row["global_step"] <= step]
        atomic_write_bytes(self.metrics_path, "".join(line + "\n" for line in keep).encode())

    def log(self, metrics: dict[str, float], step: int) -> None:
        row = {
            "global_step": int(step),
            "time": time.time(),
            **{k: finite_or_none(float(v)) for k, v in metrics.items()},
        }
        append_record(self.metrics_path, (json.dumps(row) + "\n").encode())
        if self.wandb_run is not None:
            self.wandb_run.log({**metrics, "global_step": int(step)})
        if self.tensorboard:
            self._log_tensorboard(metrics, int(step))

    @contextlib.contextmanager
    def _tensorboard_file(self) -> Iterator[None]:
        """TensorBoard's writer raises a full disk from its own thread without a file name: name it."""
        try:
            yield
        except OSError as e:
            if e.filename is not None:
                raise
            raise OSError(e.errno, e.strerror, str(self.run_dir / "events.out.tfevents.*")) from None

    def _log_tensorboard(self, metrics: dict[str, float], step: int) -> None:
        with self._tensorboard_file():
            if self._tb_writer is None:
                from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when used

                _quiet_tensorboard_threads()
                self._tb_writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=self._tb_purge_step)
            for key, value in metrics.items():
                self._tb_writer.add_scalar(key, float(value), step)

    def log_video(self, path: Path, step: int) -> None:
        """A recorded episode (mp4) to W&B, at this env step (nothing when W&B is off)."""
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({VIDEO_KEY: wandb.Video(str(path), format="mp4"), "global_step": int(step)})

    def summary(self, values: dict[str, Any]) -> None:
        self._summary.update({k: finite_or_none(v) for k, v in values.items()})
        atomic_write_json(self.summary_path, self._summary)
        if self.wandb_run is not None:
            self.wandb_run.summary.update(values)

    def finish(self) -> None:
        if self._tb_writer is not None:
            writer, self._tb_writer = self._tb_writer, None
            with self._tensorboard_file():
                writer.close()
        if self.wandb_run is not None:
            run, self.wandb_run = self.wandb_run, None
            try:
                done = within(WANDB_DEADLINE_S - TEARDOWN_WAIT_S, run.finish)[0]
                problem = f"did not finish uploading within {WANDB_DEADLINE_S:g} s"
            except Exception as e:  # TimeoutError (finish_timeout_raises) or its service failing
                done, problem = (
                    False,
                    f"failed to finish ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})",
                )
            if not done:
                _stop_wandb()
                print(
                    f"warning: W&B {problem}; {self.run_dir} is complete, upload its W&B record later "
                    f"with `wandb sync {self.run_dir / 'wandb'}/run-*`",
                    file=sys.stderr,
                )


def _record(line: str) -> dict | None:
    """One metrics row, or None when the line is not one (a row holds an int global_step)."""
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, or nested beyond what the parser's stack holds
        return None
    ok = isinstance(row, dict) and type(row.get("global_step")) is int
    return row if ok else None


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The local metrics record of a run, one dict per log call. A torn last row (the process was
    killed, or the disk filled, mid-write) is left out; a bad row before it is a RunError naming it."""
    path = Path(run_dir) / METRICS_NAME
    if not os.path.lexists(path):
        return []
    lines = read_text(path).split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        row = _record(line) if line.strip() else {}
        if row is None and number < len(lines) - (lines[-1] == ""):
            raise RunError(
                f"{path}: line {number} is not a metrics row (a JSON object with an integer global_step); "
                "delete that line, or the file, to use the run"
            )
        if row:
            rows.append(row)
    return rows


def read_summary(run_dir: str | Path) -> dict:
    """A run's summary.json ({} when it has none); one that is not a JSON object is a RunError."""
    return read_json_object(Path(run_dir) / SUMMARY_NAME) or {}
