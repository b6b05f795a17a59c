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

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from l0rl.errors import UsageError
from l0rl.runkit.checkpoint import atomic_write_bytes, atomic_write_json, finite_or_none

WANDB_MODES = ("auto", "online", "offline", "disabled")
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
VIDEO_KEY = "videos/episode"
ONLINE_INIT_TIMEOUT_S = 10.0
"""How long `auto` waits for the W&B server before it logs offline instead."""


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
        self.wandb_run = None
        if self.mode != "disabled":
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
        self._summary: dict = json.loads(self.summary_path.read_text()) if self.summary_path.exists() else {}

    def _init_wandb(self, init: dict, explicit_online: bool) -> Any:
        import wandb

        if self.mode != "online" or explicit_online:
            return wandb.init(mode=self.mode, **init)
        try:  # auto resolved to online: never let an unreachable server block training
            return wandb.init(
                mode="online", settings=wandb.Settings(init_timeout=ONLINE_INIT_TIMEOUT_S), **init
            )
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            print(
                f"warning: W&B unreachable ({first[:120]}); logging offline, upload later with `wandb sync`",
                file=sys.stderr,
            )
            self.mode = "offline"
            return wandb.init(mode="offline", **init)

    def _truncate_record(self, step: int) -> None:
        """Drop local rows logged after the checkpoint we resume from, so no step appears twice."""
        if not self.metrics_path.exists():
            return
        keep = [
            line
            for line in self.metrics_path.read_text().splitlines()
            if line.strip() and json.loads(line)["global_step"] <= step
        ]
        atomic_write_bytes(self.metrics_path, "".join(line + "\n" for line in keep).encode())

    def log(self, metrics: dict[str, float], step: int) -> None:
        row = {
            "global_step": int(step),
            "time": time.time(),
            **{k: finite_or_none(float(v)) for k, v in metrics.items()},
        }
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({**metrics, "global_step": int(step)})
        if self.tensorboard:
            self._log_tensorboard(metrics, int(step))

    def _log_tensorboard(self, metrics: dict[str, float], step: int) -> None:
        if self._tb_writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when used

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
            self._tb_writer.close()
            self._tb_writer = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The local metrics record of a run, one dict per log call."""
    path = Path(run_dir) / METRICS_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
