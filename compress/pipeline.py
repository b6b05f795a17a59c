"""`compress_run`: take a run directory's policy, make it physically smaller, prove it still plays,
and report what was saved.

Stages, each evaluated on the same evaluation seeds:
  original -> hardened -> [pruned, --method magnitude] -> shrunk -> [blocked, --channel-block]
      -> low-rank                                                              (--method l0 / magnitude)
  original -> hardened -> low-rank                                            (--method svd)
Only the run directory is read; results are written next to checkpoint.pt (never over it).
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from l0rl.compress.measure import dense_reference, stage_figures, torch_latencies_us
from l0rl.compress.onnx_export import export_onnx, require_onnx
from l0rl.compress.report import log_report
from l0rl.compress.serialize import compressed_bytes
from l0rl.compress.stages import (
    choose_ranks,
    harden,
    low_rank,
    magnitude_prune,
    round_channels,
    search_ranks,
    shrink,
)
from l0rl.errors import UsageError
from l0rl.policy import as_chain, build_policy, build_space, weight_layers
from l0rl.runkit import (
    CHECKPOINT_NAME,
    WANDB_MODES,
    RunError,
    Tracker,
    atomic_write_json,
    eval_metrics,
    evaluate_as_run,
    first_eval_seed,
    load_checkpoint,
    resolve_checkpoint,
)
from l0rl.runkit.checkpoint import atomic_write_bytes, check_writable
from l0rl.runkit.files import real_dir
from l0rl.runkit.tracker import variant_group

METHODS = ("l0", "magnitude", "magnitude-layer", "svd")
PRUNING_METHODS = {"magnitude": False, "magnitude-layer": True}  # method -> per-layer threshold
DEFAULT_ENERGY = 0.99
DEFAULT_TOLERANCE = 0.05
DEFAULT_SPARSITY = 0.9


def output_names(method: str) -> dict[str, str]:
    """File names compress writes in the run directory; baselines get their own so none overwrite."""
    suffix = "" if method == "l0" else f"_{method}"
    return {
        "policy": f"compressed{suffix}.pt",
        "report": f"compress{suffix}.json",
        "onnx": f"compressed{suffix}.onnx",
        "tracker": f"compress_{method}",
    }


def check_options(
    method: str,
    energy: float | None,
    rank_search: bool,
    tolerance: float | None,
    sparsity: float | None,
    episodes: int,
    wandb_mode: str,
    channel_block: int | None = None,
) -> None:
    """Raise a one-line ValueError for any option out of range or not applying to this method."""
    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}; use one of {', '.join(METHODS)}")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise UsageError(f"--energy must be in (0, 1], got {energy}; e.g. 0.99 keeps 99 % of the spectrum")
    if tolerance is not None and not 0.0 <= tolerance <= 1.0:
        raise UsageError(
            f"--tolerance must be in [0, 1], got {tolerance}; e.g. 0.05 allows a 5 % lower return"
        )
    if sparsity is not None and not 0.0 < sparsity < 1.0:
        raise UsageError(f"--sparsity must be in (0, 1), got {sparsity}; e.g. 0.9 zeroes 90 % of the weights")
    if sparsity is not None and method not in PRUNING_METHODS:
        raise UsageError("--sparsity applies to --method magnitude / magnitude-layer only")
    if rank_search and energy is not None:
        raise UsageError("--energy and --rank-search both choose the ranks; pass one of them")
    if tolerance is not None and not rank_search:
        raise UsageError("--tolerance applies to --rank-search only")
    if episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {episodes}")
    if channel_block is not None and channel_block < 2:
        raise UsageError(
            f"--channel-block must be >= 2, got {channel_block}; e.g. 16 on an AVX-512 CPU, 8 on AVX2"
        )
    if channel_block is not None and method == "svd":
        raise UsageError("--channel-block applies after shrink, which --method svd does not run")
    if wandb_mode not in WANDB_MODES:
        raise UsageError(f"unknown --wandb-mode {wandb_mode!r}; use one of {', '.join(WANDB_MODES)}")


def load_policy(ckpt: dict, path: Path) -> nn.Module:
    """The trained policy (gated or masked as trained) rebuilt from the checkpoint's own description:
    no algorithm file is imported, so a user's modified copy of an algorithm compresses too."""
    try:
        return build_policy(ckpt["policy"])
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise RunError(f"{path}: cannot rebuild the policy ({type(e).__name__}: {first})") from e


def _layers(chain: nn.Sequential) -> list[str]:
    out = []
    for _, m in weight_layers(chain):
        if isinstance(m, nn.Linear):
            out.append(f"Linear({m.in_features}, {m.out_features})")
        else:
            out.append(f"Conv2d({m.in_channels}, {m.out_channels}, k={m.kernel_size[0]}, s={m.stride[0]})")
    return out


class _StageRunner:
    """Runs the stages of one method on one policy, measuring and evaluating each on the same seeds."""

    def __init__(
        self, ckpt: dict, policy: nn.Module, episodes: int, seed: int, progress: bool, latency_s: float
    ):
        self.ckpt, self.policy, self.episodes, self.seed, self.progress = (
            ckpt,
            policy,
            episodes,
            seed,
            progress,
        )
        self.latency_s = latency_s
        self.runnables: dict[str, nn.Module] = {}  # stage -> what its latency times
        obs_space = build_space(ckpt["policy"]["observation_space"])
        self.obs_shape = tuple(obs_space.shape)
        obs_space.seed(seed)
        self.observations = np.stack([np.asarray(obs_space.sample(), dtype=np.float32) for _ in range(16)])
        self.hardened = harden(policy, self.obs_shape)
        self.dense = dense_reference(self.hardened)

    def play(self, module: nn.Module, stage: str = "") -> dict:
        """Return mean / std (and success rate, Mario's mean furthest x and flag rate) over the evaluation
        episodes, evaluated as the run's own final evaluation was (greedy or sampled actions, step cap)."""
        result = evaluate_as_run(
            module, self.ckpt, self.episodes, self.seed, self.progress, f"compress {stage}".rstrip()
        )
        m = eval_metrics(result, "")
        return {
            "return_mean": m["episodic_return"],
            "return_std": m["episodic_return_std"],
            "success_rate": m.get("success_rate"),
            "x_pos": m.get("x_pos"),
            "flag_rate": m.get("flag_rate"),
        }

    def record(self, name: str, chain: nn.Sequential, runnable: nn.Module | None = None) -> dict:
        """One table row: sizes of `chain` and returns of `runnable` (default: the chain); its latency
        is added by time_stages, once every stage exists."""
        runnable = chain if runnable is None else runnable
        self.runnables[name] = runnable
        return {
            "stage": name,
            **stage_figures(chain, self.obs_shape, self.dense),
            **self.play(runnable, name),
            "layers": _layers(chain),
        }

    def time_stages(self, rows: list[dict]) -> None:
        """Add latency_us, latency_ratio (to the hardened policy, i.e. the dense architecture) and its
        interquartile range to every row, all stages timed together (see compress.measure)."""
        example = torch.as_tensor(self.observations[:1])
        timed = torch_latencies_us(self.runnables, example, "hardened", self.latency_s)
        for row in rows:
            row.update(timed[row["stage"]])

    def run(self, method: str, options: dict) -> tuple[list[dict], nn.Sequential, dict]:
        """(table rows, final chain, what the low-rank stage chose)."""
        rows = [
            self.record("original", as_chain(self.policy, self.obs_shape), self.policy),
            self.record("hardened", self.hardened),
        ]
        base = self.hardened
        if method in PRUNING_METHODS:
            base = magnitude_prune(base, options["sparsity"], per_layer=PRUNING_METHODS[method])
            rows.append(self.record("pruned", base))
        if method != "svd":
            base = shrink(base, self.obs_shape)
            rows.append(self.record("shrunk", base))
        if options.get("channel_block"):
            base = round_channels(base, self.obs_shape, options["channel_block"])
            rows.append(self.record("blocked", base))
        if options["rank_search"]:
            reference = rows[1]["return_mean"]
            floor = reference - options["tolerance"] * abs(reference)
            ranks, evaluations = search_ranks(base, lambda c: self.play(c)["return_mean"], floor)
            rule = (
                f"rank search: return >= {floor:.2f} (hardened {reference:.2f} - "
                f"{100 * options['tolerance']:g} %), {evaluations} evaluations"
            )
        else:
            ranks = choose_ranks(base, options["energy"])
            rule = f"energy {options['energy']:g}"
        final = low_rank(base, ranks)
        rows.append(self.record("low-rank", final))
        self.time_stages(rows)
        names = dict(zip([i for i, _ in weight_layers(base)], _layers(base)))
        return rows, final, {"rule": rule, "ranks": {f"{i}: {names[i]}": r for i, r in ranks.items()}}


def compress_run(
    run_dir: str | Path,
    method: str = "l0",
    energy: float | None = None,
    rank_search: bool = False,
    tolerance: float | None = None,
    sparsity: float | None = None,
    episodes: int = 10,
    seed: int | None = None,
    onnx: bool = False,
    wandb_mode: str = "auto",
    progress: bool = False,
    latency_s: float = 1.0,
    channel_block: int | None = None,
) -> dict:
    """Compress the policy of `run_dir` and write compressed[_<method>].pt, compress[_<method>].json
    (this dict), optionally compressed[_<method>].onnx, and a W&B run (job_type "compress") whose
    local record goes to compress_<method>/. Figures are defined in compress.measure.

    energy: share of squared singular values each factorised layer keeps (default 0.99);
    rank_search: instead, the smallest ranks whose return stays within `tolerance` (relative,
    default 0.05) of the hardened policy's; sparsity: --method magnitude's target (default 0.9);
    seed: first evaluation seed (default: the run's seed + 10000, as its final evaluation);
    latency_s: seconds spent timing all stages together (longer = a tighter latency ratio);
    channel_block: after shrink, round hidden conv widths down to multiples of it (stages.round_channels).
    Nothing is written unless every stage ran; bad input raises UsageError (RunError, EnvError)."""
    check_options(method, energy, rank_search, tolerance, sparsity, episodes, wandb_mode, channel_block)
    if not latency_s > 0:
        raise UsageError(
            f"--latency-seconds must be > 0, got {latency_s}; e.g. 1 (the default) or 20 for Mario"
        )
    if onnx:
        require_onnx()
    options = {
        "energy": None if rank_search else (DEFAULT_ENERGY if energy is None else energy),
        "rank_search": rank_search,
        "tolerance": (DEFAULT_TOLERANCE if tolerance is None else tolerance) if rank_search else None,
        "sparsity": (DEFAULT_SPARSITY if sparsity is None else sparsity)
        if method in PRUNING_METHODS
        else None,
        "channel_block": channel_block,
    }
    ckpt_path = resolve_checkpoint(run_dir)
    ckpt = load_checkpoint(ckpt_path)
    policy = load_policy(ckpt, ckpt_path)
    run_path = ckpt_path.parent
    check_writable(run_path)  # before minutes of evaluation, not at the first write
    seed = first_eval_seed(ckpt) if seed is None else seed
    stages = _StageRunner(ckpt, policy, episodes, seed, progress, latency_s)
    rows, final, chosen = stages.run(method, options)

    names = output_names(method)
    files = {"policy": run_path / names["policy"], "report": run_path / names["report"]}
    onnx_bytes, onnx_check = export_onnx(final, stages.observations) if onnx else (None, None)
    if onnx:
        files["onnx"] = run_path / names["onnx"]
        onnx_check = {"path": str(files["onnx"]), **onnx_check}
    report = {
        "run_dir": str(run_path),
        "run_name": run_path.name,
        "algo": ckpt["algo"],
        "env_id": ckpt["env_id"],
        "env_options": ckpt["env_options"],
        "global_step": ckpt["global_step"],
        "method": method,
        "episodes": episodes,
        "seed": seed,
        "latency_s": latency_s,
        "options": options,
        "dense": stages.dense,
        "stages": rows,
        "low_rank": chosen,
        "onnx": onnx_check,
        "files": {k: str(v) for k, v in files.items()},
    }
    meta = {
        "algo": ckpt["algo"],
        "env_id": ckpt["env_id"],
        "env_options": ckpt["env_options"],
        "method": method,
        "source_run": run_path.name,
        "global_step": ckpt["global_step"],
        "obs_shape": list(stages.obs_shape),
        "action_space": ckpt["policy"]["action_space"],
        "stages": rows,
    }

    assert CHECKPOINT_NAME not in {p.name for p in files.values()}
    atomic_write_bytes(files["policy"], compressed_bytes(final, meta))
    if onnx_bytes is not None:
        atomic_write_bytes(files["onnx"], onnx_bytes)
    atomic_write_json(files["report"], report)
    _log(run_path, names["tracker"], ckpt, report, list(files.values()), wandb_mode)
    return report


def _log(
    run_path: Path, tracker_name: str, ckpt: dict, report: dict, files: list[Path], wandb_mode: str
) -> None:
    """A W&B run of job_type "compress" in the training run's project and group; its local record
    (summary.json) goes to its own directory, never over the training run's."""
    args = ckpt["args"]
    tracker_dir = real_dir(run_path / tracker_name)  # a symlink there would take the tracker's files
    tracker = Tracker(
        tracker_dir,
        f"{run_path.name}__{tracker_name}",
        config={
            **report["options"],
            "method": report["method"],
            "episodes": report["episodes"],
            "seed": report["seed"],
            "source_run": run_path.name,
        },
        wandb_mode=wandb_mode,
        project=args.get("wandb_project", "l0rl"),
        entity=args.get("wandb_entity"),
        group=args.get("wandb_group") or variant_group(ckpt["env_id"], args.get("exp_name", ckpt["algo"])),
        tags=[ckpt["env_id"], ckpt["algo"], "compress", report["method"]],
        job_type="compress",
    )
    try:
        log_report(tracker, report, files)
    finally:
        tracker.finish()
