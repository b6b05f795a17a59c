"""How compress reports: the plain-text table, the flat `compress/...` figures, and the W&B run
(table, summary, model artifact). The JSON report itself is the dict compress_run returns."""

import re
from pathlib import Path

from l0rl.runkit import Tracker

# (key in a stage's figures, column header, formatter)
COLUMNS = [
    ("stage", "stage", str),
    ("params", "params", lambda v: f"{v:,}"),
    ("nonzeros", "non-zeros", lambda v: f"{v:,}"),
    ("stored_values", "stored", lambda v: f"{v:,}"),
    ("sparsity", "sparsity", lambda v: f"{100 * v:.1f}%"),
    ("compression_params", "compr.(params)", lambda v: f"{100 * v:.1f}%"),
    ("bytes", "bytes", lambda v: f"{v:,}"),
    ("compression_bytes", "compr.(bytes)", lambda v: f"{100 * v:.1f}%"),
    ("macs", "MACs", lambda v: f"{v:,}"),
    ("latency_us", "latency us", lambda v: f"{v:.1f}"),
    ("latency_vs", "vs dense [IQR]", str),
    ("return", "return", str),
    ("success_rate", "success", lambda v: "-" if v is None else f"{100 * v:.0f}%"),
    ("x_pos", "furthest x", lambda v: f"{v:,.0f}"),
    ("flag_rate", "flags", lambda v: f"{100 * v:.0f}%"),
]
OPTIONAL = ("x_pos", "flag_rate")
"""Columns shown only for envs that report them (Mario's progress: the return alone hides how far it got)."""


def _columns(stages: list[dict]) -> list[tuple]:
    return [c for c in COLUMNS if c[0] not in OPTIONAL or any(s.get(c[0]) is not None for s in stages)]


def _cells(stage: dict, columns: list[tuple]) -> list[str]:
    values = {
        **stage,
        "return": f"{stage['return_mean']:.2f} +- {stage['return_std']:.2f}",
        "latency_vs": f"{stage['latency_ratio']:.2f}x [{stage['latency_ratio_q25']:.2f}-"
        f"{stage['latency_ratio_q75']:.2f}]",
    }
    return [fmt(values[key]) for key, _, fmt in columns]


def format_table(stages: list[dict]) -> str:
    """The stage table as aligned plain text (first column left-aligned, numbers right-aligned)."""
    columns = _columns(stages)
    rows = [[header for _, header, _ in columns]] + [_cells(s, columns) for s in stages]
    widths = [max(len(r[j]) for r in rows) for j in range(len(columns))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_report(report: dict) -> str:
    """The table plus the lines that say what was chosen and where the results went."""
    lines = [
        f"compress {report['run_dir']} ({report['algo']}, {report['env_id']}, method {report['method']}, "
        f"{report['episodes']} evaluation episodes from seed {report['seed']})",
        format_table(report["stages"]),
    ]
    if report["low_rank"] is not None:
        lr = report["low_rank"]
        chosen = ", ".join(f"{k}: rank {v}" for k, v in lr["ranks"].items()) or "none (no rank saves storage)"
        lines.append(f"low rank ({lr['rule']}): {chosen}")
    if report["onnx"] is not None:
        o = report["onnx"]
        lines.append(
            f"onnx: {o['path']} ({o['bytes']:,} bytes), max |torch - onnxruntime| = {o['max_abs_diff']:.2e}, "
            f"onnxruntime latency {o['latency_us']:.1f} us"
        )
    lines.append(f"written: {report['files']['policy']}, {report['files']['report']}")
    return "\n".join(lines)


def summary_figures(report: dict) -> dict:
    """Flat `compress/<stage>/<figure>` values for the W&B summary and the local summary.json."""
    out: dict = {"compress/method": report["method"], "compress/final_stage": report["stages"][-1]["stage"]}
    for stage in report["stages"]:
        for key, value in stage.items():
            if key not in ("stage", "layers"):
                out[f"compress/{stage['stage']}/{key}"] = value
    if report["onnx"] is not None:
        out["compress/onnx/latency_us"] = report["onnx"]["latency_us"]
        out["compress/onnx/max_abs_diff"] = report["onnx"]["max_abs_diff"]
    return out


def log_report(tracker: Tracker, report: dict, files: list[Path]) -> None:
    """Figures into the summary (W&B and local), and on W&B the table and the model artifact."""
    tracker.summary(summary_figures(report))
    if tracker.wandb_run is None:
        return
    import wandb

    keys = [k for k in report["stages"][0] if k != "layers"]  # numbers, so W&B can sort and plot them
    rows = [[stage[k] for k in keys] for stage in report["stages"]]
    tracker.wandb_run.log({"compress/table": wandb.Table(columns=keys, data=rows)})
    name = re.sub(r"[^\w.-]", "-", f"{report['run_name']}-compressed-{report['method']}")
    artifact = wandb.Artifact(
        name, type="model", metadata={"final": report["stages"][-1], "method": report["method"]}
    )
    for f in files:
        artifact.add_file(str(f))
    tracker.wandb_run.log_artifact(artifact)
