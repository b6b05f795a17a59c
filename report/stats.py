"""Statistics over seeds for reports (l0rl report, the benchmark suites'): thin wrappers over rliable (Agarwal et al., 2021,
"Deep RL at the edge of the statistical precipice"), so the report quotes the estimators that paper
recommends and none written here.

- `iqm`: interquartile mean over seeds with a stratified-bootstrap 95 % confidence interval (none from
  one seed: a bootstrap of one score is that score, an interval of width 0 that would claim certainty);
- `iqm_curve`: the same at every point of a learning curve;
- `probability_of_improvement`: P(X > Y) for a run of X against a run of Y, with its interval.

Every bootstrap is seeded (BOOTSTRAP_SEED), so a report is reproducible to the digit.
"""

import contextlib
from dataclasses import dataclass

import numpy as np
import scipy.stats
from rliable import library as rly
from rliable import metrics

REPS = 2000
"""Bootstrap repetitions: enough for a stable 95 % interval over a handful of seeds."""
CURVE_REPS = 500
"""Fewer for learning curves: each repetition evaluates every point of the curve."""
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval [low, high] (None for one seed: no interval)."""

    point: float
    low: float | None
    high: float | None

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def __str__(self) -> str:
        if not self.has_interval:
            return f"{self.point:.4g} (n = 1)"
        return f"{self.point:.4g} [{self.low:.4g}, {self.high:.4g}]"


@contextlib.contextmanager
def _seeded(seed: int):
    # rliable's bootstraps draw their resampling indices from numpy's global generator
    # (np.random.choice), not from the random_state they are given: seed that one, then restore it.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _column(scores) -> np.ndarray:
    """Per-seed scores as rliable's (runs x tasks) matrix, one task."""
    x = np.asarray(scores, dtype=float).reshape(-1, 1)
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"scores must be finite and non-empty, got {x.ravel().tolist()}")
    return x


def iqm(scores, reps: int = REPS, seed: int = BOOTSTRAP_SEED) -> Estimate:
    """Interquartile mean of per-seed scores, with its stratified-bootstrap 95 % interval (from two
    seeds on; one seed gives its score and no interval)."""
    x = _column(scores)
    if len(x) == 1:
        return Estimate(float(x[0, 0]), None, None)
    with _seeded(seed):
        point, interval = rly.get_interval_estimates(
            {"x": x},
            lambda s: np.array([metrics.aggregate_iqm(s)]),
            reps=reps,
            confidence_interval_size=CONFIDENCE,
        )
    return Estimate(float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0]))


def iqm_columns(scores) -> np.ndarray:
    """The IQM of every column of a (seeds x points) matrix. rliable's aggregate_iqm is
    scipy.stats.trim_mean(x, 0.25) over all of x; this applies it to each column in one call, so a
    curve costs one call per bootstrap repetition, not one per point."""
    return scipy.stats.trim_mean(np.asarray(scores, dtype=float), proportiontocut=0.25, axis=0)


def iqm_curve(
    scores, reps: int = CURVE_REPS, seed: int = BOOTSTRAP_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IQM, low, high) at every column of a (seeds x points) matrix of curves."""
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2 or x.size == 0 or not np.isfinite(x).all():
        raise ValueError("curves must be a finite (seeds x points) matrix")
    with _seeded(seed):
        point, interval = rly.get_interval_estimates(
            {"x": x}, iqm_columns, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return point["x"], interval["x"][0], interval["x"][1]


def probability_of_improvement(x, y, reps: int = REPS, seed: int = BOOTSTRAP_SEED) -> Estimate:
    """P(X > Y): the chance that a run of X scores higher than a run of Y (ties count half), over
    their seeds, with a stratified-bootstrap 95 % interval (X and Y resampled independently)."""
    a, b = _column(x), _column(y)
    with _seeded(seed):
        point, interval = rly.get_interval_estimates(
            {"p": [a, b]},
            lambda s, t: np.array([metrics.probability_of_improvement(s, t)]),
            reps=reps,
            confidence_interval_size=CONFIDENCE,
        )
    return Estimate(float(point["p"][0]), float(interval["p"][0, 0]), float(interval["p"][1, 0]))
