"""Metrics go to two places at once: W&B (online, offline or disabled) and a local record in the run
directory (`metrics.jsonl`, one JSON object per log call, and `summary.json`), so local reports never
need the cloud. Also the terminal progress display.
"""

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from l0rl.runkit.checkpoint import atomic_write_json

WANDB_MODES = ("auto", "online", "offline", "disabled")
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"


def resolve_wandb_mode(mode: str) -> str:
    """'auto' means: WANDB_MODE if set, else online when an API key is configured, else offline.

    Offline runs make no network connection; upload them later with `wandb sync <run_dir>/wandb/offline-run-*`."""
    if mode not in WANDB_MODES:
        raise ValueError(f"unknown W&B mode {mode!r}; use one of {', '.join(WANDB_MODES)}")
    if mode != "auto":
        return mode
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    if env_mode == "dryrun":
        return "offline"
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def _finite(v: Any) -> Any:
    # JSON has no NaN/inf; keep the record loadable by any JSON reader.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


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
    ):
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / METRICS_NAME
        self.summary_path = self.run_dir / SUMMARY_NAME
        if resume_step is not None:
            self._truncate_record(resume_step)
        self.mode = resolve_wandb_mode(wandb_mode)
        self.wandb_run = None
        if self.mode != "disabled":
            import wandb

            self.wandb_run = wandb.init(
                project=project,
                entity=entity,
                group=group,
                tags=tags,
                name=name,
                job_type=job_type,
                config=config,
                dir=str(self.run_dir),
                mode=self.mode,
                id=wandb_id,
                resume="allow" if wandb_id else None,
                reinit="create_new",
            )
        self.wandb_id = self.wandb_run.id if self.wandb_run is not None else wandb_id
        self._summary: dict = json.loads(self.summary_path.read_text()) if self.summary_path.exists() else {}

    def _truncate_record(self, step: int) -> None:
        """Drop local rows logged after the checkpoint we resume from, so no step appears twice."""
        if not self.metrics_path.exists():
            return
        keep = [
            line
            for line in self.metrics_path.read_text().splitlines()
            if json.loads(line)["global_step"] <= step
        ]
        self.metrics_path.write_text("".join(line + "\n" for line in keep))

    def log(self, metrics: dict[str, float], step: int) -> None:
        row = {
            "global_step": int(step),
            "time": time.time(),
            **{k: _finite(float(v)) for k, v in metrics.items()},
        }
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({**metrics, "global_step": step}, step=int(step))

    def summary(self, values: dict[str, Any]) -> None:
        self._summary.update({k: _finite(v) for k, v in values.items()})
        atomic_write_json(self.summary_path, self._summary)
        if self.wandb_run is not None:
            self.wandb_run.summary.update(values)

    def finish(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The local metrics record of a run, one dict per log call."""
    path = Path(run_dir) / METRICS_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Progress:
    """A tqdm bar on a terminal; a plain line every `every_s` seconds otherwise; nothing if disabled."""

    def __init__(
        self, total: int, initial: int = 0, enabled: bool = True, every_s: float = 30.0, desc: str = ""
    ):
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.total, self.every_s, self.desc = total, every_s, desc
        self._last_print = 0.0
        self._bar = None
        if enabled and self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)
        self._n = initial

    def update(self, step: int, **fields: float | None) -> None:
        if not self.enabled:
            return
        text = " ".join(f"{k}={v:.3g}" for k, v in fields.items() if v is not None)
        if self._bar is not None:
            self._bar.update(step - self._n)
            self._bar.set_postfix_str(text, refresh=False)
        elif time.time() - self._last_print >= self.every_s or step >= self.total:
            print(f"[{self.desc}] step {step}/{self.total} {text}", file=sys.stderr, flush=True)
            self._last_print = time.time()
        self._n = step

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
