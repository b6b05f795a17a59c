"""One-off measurements behind the figures in benchmark/results (speed, latency, cost), each run as
`python -m benchmark.measure.<name>`; the suite tooling (run_suite, report, carry) is one level up."""

from pathlib import Path

from l0rl.runkit import read_metrics


def final_sps(run_dir: str | Path) -> float:
    """The last charts/SPS a training run logged: its speed over the whole loop, as CleanRL reports it."""
    return [r["charts/SPS"] for r in read_metrics(run_dir) if "charts/SPS" in r][-1]
