"""The sparsity-map scheduler: how strongly the L0 penalty pulls, as a function of training progress.

Modes (progress p = global_step / total_steps):
- "constant": lambda = lam from the first step.
- "linear" / "cosine": lambda = 0 until p = warmup, then ramps (linearly or along a half cosine)
  to lam at p = ramp_end, and holds. Lets the policy learn something before gates start closing.
- "target": dual ascent towards a requested sparsity. The target ramps from 0 at p = warmup to
  target_sparsity at p = target_at and then holds; after every call with a measured sparsity,
  log(lambda) += dual_lr * clip(log(density / target_density), -1, 1) (density = 1 - sparsity),
  clipped to [lam_min, lam_max] (by default lam / 10 and lam * 10). Working in log space makes the
  step independent of lambda's scale; measuring the error as a density ratio keeps it strong near
  the top (98 % against 99 % is twice too dense, not 1 % short). The clip and the bounds are there
  because the gates lag lambda: an unbounded controller drove lambda to 100x its start while the
  sparsity caught up, overshot the target and collapsed the policy, and an early overshoot parked
  lambda at a floor it took the rest of training to leave (closed gates barely reopen).
  With hold=True, lambda stays at lam (not 0) until warmup, and the target ramps from the sparsity
  measured there (not from 0) to target_sparsity at target_at (target_at = warmup: at once): a
  constant phase that finds its own plateau, then the push past it.
An optional temperature anneal moves the gates' beta linearly from beta_start to beta_end.
"""

import math

MODES = ("constant", "linear", "cosine", "target")
DENSITY_FLOOR = 1e-4
"""The target mode's error treats a fully closed network as this dense (log of 0 is no step)."""


class SparsityMapScheduler:
    """Drives the L0 strength lambda (and optionally beta) from the global step; resumable."""

    def __init__(
        self,
        total_steps: int,
        mode: str = "constant",
        lam: float = 0.01,
        warmup: float = 0.0,
        ramp_end: float = 0.5,
        target_sparsity: float | None = None,
        target_at: float = 0.5,
        dual_lr: float = 0.1,
        lam_min: float | None = None,
        lam_max: float | None = None,
        beta_start: float | None = None,
        beta_end: float | None = None,
        hold: bool = False,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown scheduler mode {mode!r}; use one of {', '.join(MODES)}")
        if total_steps <= 0:
            raise ValueError(f"total_steps must be > 0, got {total_steps}")
        if lam < 0:
            raise ValueError(f"lambda (L0 strength) must be >= 0, got {lam}; use 0 to switch the penalty off")
        if not (0.0 <= warmup < 1.0):
            raise ValueError(f"warmup is a fraction of training and must be in [0, 1), got {warmup}")
        if mode in ("linear", "cosine") and not warmup < ramp_end <= 1.0:
            raise ValueError(f"ramp_end must be in (warmup, 1], got ramp_end={ramp_end}, warmup={warmup}")
        lam_min = lam / 10 if lam_min is None else lam_min
        lam_max = lam * 10 if lam_max is None else lam_max
        if mode == "target":
            if target_sparsity is None or not 0.0 < target_sparsity < 1.0:
                raise ValueError(f"target mode needs target_sparsity in (0, 1), got {target_sparsity}")
            if not (warmup <= target_at if hold else warmup < target_at) or target_at > 1.0:
                raise ValueError(
                    f"target_at must be in ({'[' if hold else '('}warmup, 1], got target_at={target_at}, warmup={warmup}"
                )
            if not 0 < lam_min <= lam <= lam_max:
                raise ValueError(
                    f"target mode needs 0 < lam_min <= lam <= lam_max, got {lam_min}, {lam}, {lam_max}"
                )
            if dual_lr <= 0:
                raise ValueError(f"dual_lr must be > 0, got {dual_lr}")
        if hold and mode != "target":
            raise ValueError(f"hold applies to the target mode only, not {mode!r}")
        if (beta_start is None) != (beta_end is None):
            raise ValueError("give both beta_start and beta_end for a temperature anneal, or neither")
        if beta_start is not None and not (beta_start > 0 and beta_end > 0):
            raise ValueError(f"beta_start and beta_end must be > 0, got {beta_start}, {beta_end}")
        self.total_steps = total_steps
        self.mode = mode
        self.lam_peak = lam
        self.warmup = warmup
        self.ramp_end = ramp_end
        self.target_sparsity = target_sparsity
        self.target_at = target_at
        self.dual_lr = dual_lr
        self.lam_min, self.lam_max = lam_min, lam_max
        self.beta_start, self.beta_end = beta_start, beta_end
        self.hold = hold
        self.start_sparsity: float | None = None
        """hold: the sparsity measured at the first step past warmup, where the target's ramp starts"""
        self.log_lam = math.log(lam) if mode == "target" else None
        self.lam = lam if mode == "constant" or hold else 0.0
        self.current_target = 0.0

    def progress(self, global_step: int) -> float:
        return min(max(global_step / self.total_steps, 0.0), 1.0)

    def target_at_step(self, global_step: int) -> float:
        """The sparsity the target mode asks for at this step (0 during warm-up; with hold, from the
        sparsity measured at the end of the warm-up)."""
        p = self.progress(global_step)
        span = self.target_at - self.warmup
        frac = 1.0 if span <= 0 else min(max((p - self.warmup) / span, 0.0), 1.0)
        start = self.start_sparsity or 0.0
        return start + (self.target_sparsity - start) * frac

    def step(self, global_step: int, sparsity: float | None = None) -> float:
        """Update and return lambda for this step. Target mode needs the measured sparsity."""
        p = self.progress(global_step)
        if self.mode == "constant":
            self.lam = self.lam_peak
        elif self.mode in ("linear", "cosine"):
            frac = min(max((p - self.warmup) / (self.ramp_end - self.warmup), 0.0), 1.0)
            shape = frac if self.mode == "linear" else 0.5 * (1.0 - math.cos(math.pi * frac))
            self.lam = self.lam_peak * shape
        else:
            if sparsity is None:
                raise ValueError("target mode needs the measured sparsity: step(global_step, sparsity)")
            if p >= self.warmup and self.hold and self.start_sparsity is None:
                self.start_sparsity = min(
                    sparsity, self.target_sparsity
                )  # already past it: aim at it at once
            self.current_target = self.target_at_step(global_step)
            if p < self.warmup:
                self.lam = self.lam_peak if self.hold else 0.0
            else:
                error = math.log(max(1.0 - sparsity, DENSITY_FLOOR) / (1.0 - self.current_target))
                error = min(max(error, -1.0), 1.0)  # the gates lag lambda: big steps overshoot
                self.log_lam = min(
                    max(self.log_lam + self.dual_lr * error, math.log(self.lam_min)), math.log(self.lam_max)
                )
                self.lam = math.exp(self.log_lam)
        return self.lam

    def temperature(self, global_step: int) -> float | None:
        """Gate temperature for this step, or None when no anneal is configured."""
        if self.beta_start is None:
            return None
        p = self.progress(global_step)
        return self.beta_start + (self.beta_end - self.beta_start) * p

    def log_dict(self, prefix: str = "l0/") -> dict[str, float]:
        out = {f"{prefix}lambda": self.lam}
        if self.mode == "target":
            out[f"{prefix}target_sparsity"] = self.current_target
        return out

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned; a state this scheduler could never be in (a damaged or
        crafted checkpoint) is a ValueError: its configuration must pass the constructor's checks and
        every number be finite, None only where a fresh scheduler of that configuration has None."""
        unknown = set(state) - set(self.__dict__)
        if unknown:
            raise ValueError(
                f"scheduler state has unknown keys {sorted(unknown)}; was it saved by another version?"
            )
        s = {**self.__dict__, **state}
        if s["mode"] not in MODES or not isinstance(s["hold"], bool):
            raise ValueError(f"scheduler state has mode {s['mode']!r:.40} and hold {s['hold']!r:.40}")
        for key, value in s.items():
            number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if key not in ("mode", "hold") and value is not None and not number:
                raise ValueError(f"scheduler state {key} is {value!r:.40}, not a finite number")
        fresh = SparsityMapScheduler(
            s["total_steps"], s["mode"], s["lam_peak"], s["warmup"], s["ramp_end"], s["target_sparsity"],
            s["target_at"], s["dual_lr"], s["lam_min"], s["lam_max"], s["beta_start"], s["beta_end"], s["hold"],
        )  # fmt: skip
        missing = [k for k, v in s.items() if v is None and getattr(fresh, k) is not None]
        if missing:
            raise ValueError(f"scheduler state {missing[0]} is None, not a number")
        self.__dict__.update(state)
