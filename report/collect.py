"""Reading runs back for a report, from their run directories alone: the checkpoint's arguments, the
metrics record, summary.json, compress*.json and the benchmark runner's benchmark.json, each checked as
it is read. A malformed line or file is skipped with a one-line warning naming it (a torn last line of
metrics.jsonl, what a crash in the middle of an append leaves, silently): a report never crashes on
what a run wrote, and a value of the wrong type never reaches a table.

Runs are grouped into cells (one environment x one algorithm) and, within a cell, variants (sparsity
kind x exp name): `group_runs`. A benchmark suite's cells and variants (benchmark.suites) have the same
attributes as `Cell` and `Variant` here and go through the same tables and figures.
"""

import contextlib
import dataclasses
import json
import math
import os
import platform
import re
import sys
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

from l0rl.compress.pipeline import output_names
from l0rl.errors import UsageError
from l0rl.runkit.checkpoint import CHECKPOINT_NAME, RunError, load_checkpoint
from l0rl.runkit.files import TEXT_FILE_LIMIT
from l0rl.runkit.files import read_bytes as read_bounded
from l0rl.runkit.tracker import METRICS_NAME, SUMMARY_NAME
from l0rl.sparsity import METHODS, method_label

BENCH_NAME = "benchmark.json"
"""What the benchmark runner adds to a run directory: suite, variant, seed, and per process its command,
wall time and hardware."""
COMPRESS_METHODS = ("l0", "magnitude", "svd")
"""The compress reports a report reads (compress.json, compress_magnitude.json, compress_svd.json)."""
SUMMARY_NUMBERS = ("eval/episodic_return", "eval/success_rate", "sparsity")
STAGE_NUMBERS = (
    "params",
    "compression_params",
    "stored_values",
    "bytes",
    "compression_bytes",
    "latency_us",
    "latency_ratio",
    "return_mean",
    "sparsity",
)
"""The figures of a compress stage a report reads; anything else in compress*.json is not used."""


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what a figure may be."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


# --- what a report groups by ----------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way a cell's runs were trained, as a report shows it (benchmark.suites.Variant has the same
    attributes, and more)."""

    name: str
    sparsity: str
    """none (dense), l0 or gmp"""
    title: str = ""
    level: float | None = None
    magnitude_after: float | None = None
    matched_to: str | None = None
    gmp_target_from: str | None = None

    @property
    def label(self) -> str:
        return self.title or method_label(self.sparsity, self.level)


@dataclass(frozen=True)
class Cell:
    """One environment x one algorithm and its variants (benchmark.suites.Cell has the same attributes)."""

    env_id: str
    algo: str
    total_timesteps: int
    variants: tuple[Variant, ...]

    @property
    def title(self) -> str:
        return f"{self.env_id} / {self.algo.removesuffix('_l0').upper()}"

    @property
    def slug(self) -> str:
        """A file-name-safe id of the cell, for figure names (the env id comes from a file: no path in it)."""
        return re.sub(r"[^a-z0-9_]+", "", f"{self.env_id}_{self.algo}".lower()) or "cell"


@dataclass
class Record:
    """One run as a report reads it: finished, or still training (then at its checkpoint step)."""

    cell: Any
    """its Cell (or a suite's), set by group_runs"""
    variant: Any
    algo: str
    """the algorithm that trained it (ppo_l0, a2c_l0, dqn_l0, sac_l0)"""
    seed: int
    run_dir: Path
    args: dict
    summary: dict
    metrics: list[dict]
    compress: dict[str, dict]
    """compress method -> its compress*.json"""
    bench: dict
    progress_step: int | None = None
    """a run still training: its checkpoint's step (curves stop there; no final evaluation)"""

    @property
    def name(self) -> str:
        """The run's name: its directory's, and its W&B display name."""
        return self.run_dir.name

    @property
    def sps(self) -> float | None:
        values = [m["charts/SPS"] for m in self.metrics if m.get("charts/SPS") is not None]
        return float(values[-1]) if values else None


# --- reading ---------------------------------------------------------------------------------------


def _metrics_row(raw: bytes) -> dict | None:
    """One line of metrics.jsonl as a row, or None when it is not one: a JSON object with an int
    global_step >= 0 and numbers (or null) for values; a non-finite value reads as null."""
    try:
        row = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested beyond reason
        return None
    if not isinstance(row, dict):
        return None
    step = row.get("global_step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return None
    if not all(v is None or isinstance(v, int | float) and not isinstance(v, bool) for v in row.values()):
        return None
    return {k: (v if is_number(v) else None) for k, v in row.items()}


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The run's metrics record, every well-formed row in step order: a malformed line is skipped
    with a warning naming the file and the line; a torn last line (a crash mid-append) silently."""
    path = Path(run_dir) / METRICS_NAME
    data = read_file(path)
    if data is None:
        return []
    lines = data.split(b"\n")
    rows = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        row = _metrics_row(raw)
        if row is None:
            if number == len(lines):  # no newline after it: an append the process did not finish
                continue
            warn(f"{path} line {number}: not a metrics record, skipped")
            continue
        rows.append(row)
    return sorted(rows, key=lambda r: r["global_step"])


def read_file(path: Path) -> bytes | None:
    """A run file's bytes, read as every reader of a run directory reads (runkit.files: a regular file,
    no symlink followed, a bounded size); None when it is absent, and with a warning when it cannot be
    read so."""
    if not os.path.lexists(path):
        return None
    try:
        return read_bounded(path, TEXT_FILE_LIMIT)
    except RunError as e:
        warn(f"{e}; not read")
    except OSError as e:
        warn(f"{path}: unreadable ({e.strerror}), not read")
    return None


def read_json(path: Path) -> Any:
    """A JSON file's content; None when it is absent, and with a warning when it is not JSON."""
    data = read_file(path)
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        warn(f"{path}: not a JSON file, ignored")
        return None


def read_summary(run_dir: Path) -> dict:
    """summary.json's figures a report uses; one of another type is dropped with a warning."""
    path = run_dir / SUMMARY_NAME
    data = read_json(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        warn(f"{path}: not a JSON object, ignored")
        return {}
    out = {}
    for key in SUMMARY_NUMBERS:
        if key in data and data[key] is not None and not is_number(data[key]):
            warn(f"{path}: {key} is not a number, ignored")
        elif key in data:
            out[key] = data[key]
    return out


def read_compress(path: Path) -> dict | None:
    """A compress report with a list of named stages; a stage figure of another type reads as missing
    (warned), a report without stages is ignored (warned)."""
    data = read_json(path)
    if data is None:
        return None
    stages = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(stages, list) or not stages:
        warn(f"{path}: not a compress report (no stages), ignored")
        return None
    clean, bad = [], set()
    for stage in stages:
        if not isinstance(stage, dict) or not isinstance(stage.get("stage"), str):
            bad.add("stage")
            continue
        for key in STAGE_NUMBERS:
            if key in stage and stage[key] is not None and not is_number(stage[key]):
                bad.add(key)
        clean.append(
            {**stage, **{k: stage.get(k) if is_number(stage.get(k)) else None for k in STAGE_NUMBERS}}
        )
    if bad:
        warn(f"{path}: {', '.join(sorted(bad))} not what compress writes, read as missing")
    return {**data, "stages": clean} if clean else None


def read_bench(run_dir: Path) -> dict:
    """The runner's benchmark.json: its sessions with a hardware record (cpu text, core count)."""
    path = run_dir / BENCH_NAME
    data = read_json(path)
    if data is None:
        return {}
    sessions = data.get("sessions") if isinstance(data, dict) else None
    if not isinstance(sessions, list):
        warn(f"{path}: no list of sessions, ignored")
        return {}
    kept = [
        s
        for s in sessions
        if isinstance(s, dict)
        and isinstance(s.get("hardware"), dict)
        and isinstance(s["hardware"].get("cpu"), str)
        and isinstance(s["hardware"].get("cores"), int)
    ]
    if len(kept) < len(sessions):
        warn(f"{path}: {len(sessions) - len(kept)} session(s) without a hardware record, ignored")
    return {**data, "sessions": kept}


ARG_TYPES = {"env_id": str, "exp_name": str, "sparsity": str, "seed": int, "total_timesteps": int}
"""The checkpoint arguments a report groups and labels by, with their types."""


def read_checkpoint(run_dir: Path) -> dict | None:
    """The run's checkpoint, when it loads and holds what a report needs (warned and None otherwise)."""
    try:
        ckpt = load_checkpoint(run_dir)
    except (RunError, OSError) as e:
        warn(f"{run_dir}: {str(e).splitlines()[0] if str(e) else type(e).__name__}; run skipped")
        return None
    args = ckpt.get("args")
    wrong = [
        k
        for k, t in ARG_TYPES.items()
        if not isinstance(args, dict) or isinstance(args.get(k), bool) or not isinstance(args.get(k), t)
    ]
    if not wrong and args["sparsity"] not in METHODS:
        wrong = ["sparsity"]
    step = ckpt.get("global_step")
    if isinstance(step, bool) or not isinstance(step, int) or not isinstance(ckpt.get("algo"), str):
        wrong.append("global_step/algo")
    if wrong:
        warn(f"{run_dir}/{CHECKPOINT_NAME}: {', '.join(wrong)} not what l0rl writes; run skipped")
        return None
    return ckpt


def read_run(run_dir: str | Path, partial: bool | None = None) -> Record | None:
    """One run (None, warned, when its checkpoint is unusable). partial: read it as a run still
    training, at its checkpoint's step (its metrics up to there and the sparsity it last logged, no
    evaluation or compress figures); None: as its checkpoint says (not finished = partial)."""
    run_dir = Path(run_dir)
    ckpt = read_checkpoint(run_dir)
    if ckpt is None:
        return None
    args = ckpt["args"]
    if partial is None:
        partial = not ckpt.get("finished")
    metrics = read_metrics(run_dir)
    bench = read_bench(run_dir)
    if partial:
        step = ckpt["global_step"]
        metrics = [m for m in metrics if m["global_step"] <= step]
        key = f"{METHODS[args['sparsity']].kind}/sparsity"
        logged = [m[key] for m in metrics if m.get(key) is not None]
        summary = {"sparsity": logged[-1] if logged else 0.0}
        return Record(
            None,
            None,
            ckpt["algo"],
            args["seed"],
            run_dir,
            args,
            summary,
            metrics,
            {},
            bench,
            progress_step=step,
        )
    compress = {}
    for method in COMPRESS_METHODS:
        report = read_compress(run_dir / output_names(method)["report"])
        if report is not None:
            compress[method] = report
    summary = read_summary(run_dir)
    return Record(None, None, ckpt["algo"], args["seed"], run_dir, args, summary, metrics, compress, bench)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / CHECKPOINT_NAME).is_file()


def find_run_dirs(paths: list[str]) -> list[Path]:
    """The run directories `paths` name, each once: a run directory (a folder with checkpoint.pt), a
    glob pattern, or a folder whose sub-folders are runs. UsageError for a path that names none."""
    out: dict[Path, None] = {}
    for p in paths:
        matches = [Path(m) for m in sorted(glob(p))] if any(c in p for c in "*?[") else [Path(p)]
        found = []
        for m in matches:
            if is_run_dir(m):
                found.append(m)
            elif m.is_dir():
                for c in filter(is_run_dir, sorted(m.iterdir())):
                    if c.is_symlink():  # a folder of runs is data: its links are not followed
                        warn(f"{c} is a symlink, not a run directory in {m}; skipped (name the run itself)")
                    else:
                        found.append(c)
        if not found:
            raise UsageError(
                f"{p}: no run directory there (a folder holding {CHECKPOINT_NAME}); pass runs/<run_name>, "
                "a glob or a folder of runs"
            )
        for f in found:
            out.setdefault(f, None)
    return list(out)


# --- grouping --------------------------------------------------------------------------------------


def variant_of(args: dict) -> Variant:
    """A hand-started run's variant: its exp name (the label, with the kind where the name does not
    end in it, as the default names ppo_l0, ppo_gmp, ppo_dense do) and sparsity kind."""
    name, kind = args["exp_name"], args["sparsity"]
    suffix = "dense" if kind == "none" else kind
    title = name if name.endswith(f"_{suffix}") else f"{name} ({method_label(kind)})"
    return Variant(name=name, sparsity=kind, title=title)


def group_runs(records: list[Record]) -> tuple[list[Cell], list[Record]]:
    """Cells (environment x algorithm, sorted) whose variants (sparsity kind x exp name; dense, then
    L0, then GMP, by name) hold the given runs; the runs with their cell and variant set. A cell's
    budget is the largest of its runs'."""
    kinds = sorted(METHODS, key=lambda m: m != "none")  # dense first, then the registry's order
    by_cell: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        by_cell.setdefault((r.args["env_id"], r.algo), []).append(r)
    cells, out = [], []
    for (env_id, algo), recs in sorted(by_cell.items()):
        variants = sorted({variant_of(r.args) for r in recs}, key=lambda v: (kinds.index(v.sparsity), v.name))
        cell = Cell(env_id, algo, max(r.args["total_timesteps"] for r in recs), tuple(variants))
        cells.append(cell)
        out += [dataclasses.replace(r, cell=cell, variant=variant_of(r.args)) for r in recs]
    return cells, out


# --- this machine ----------------------------------------------------------------------------------


def hardware() -> dict:
    """This machine's CPU model and core count, as reports quote them."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "platform": platform.platform()}
