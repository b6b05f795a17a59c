"""l0rl: sparse deep-RL policies trained with L0 (hard-concrete) gates, then compressed.

Every part lives under this one import name:
    from l0rl import l0                          # gates, penalty, stats, harden, scheduler
    from l0rl.envs import make_vector_env        # every supported environment family
    from l0rl.compress import compress_run       # harden -> shrink -> low rank -> re-evaluate
    policy = l0rl.load_policy("runs/<run>")      # the deployable policy as a plain torch module
"""

__version__ = "0.2.0"


def load_policy(path: str, compressed: bool = False):
    """The deployable policy as a plain torch module (nn.Sequential, eval mode, no gates or masks),
    for inference in your own code: observation batch (float32) -> logits / Q-values, or the action
    for continuous control.

    path: a run directory (its checkpoint.pt; with compressed=True its compressed.pt from
    `python -m l0rl.compress`), a checkpoint.pt, or a compressed*.pt file. Both formats are plain
    data, loaded with torch.load(weights_only=True): loading never runs code from the file.
    """
    import os
    from pathlib import Path

    from l0rl import l0
    from l0rl.compress.serialize import load_compressed
    from l0rl.errors import RunError, UsageError
    from l0rl.policy import build_policy
    from l0rl.runkit.checkpoint import CHECKPOINT_NAME, load_checkpoint

    p = Path(path)
    if p.is_dir():
        p = p / ("compressed.pt" if compressed else CHECKPOINT_NAME)
    if not os.path.lexists(p):
        raise UsageError(
            f"{p} does not exist; pass runs/<run_name> (run `python -m l0rl.compress` first for compressed=True)"
        )
    if p.name.startswith("compressed"):
        return load_compressed(p)
    record = load_checkpoint(p)["policy"]
    try:
        return l0.harden(build_policy(record)).eval()
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # a crafted or damaged record
        raise RunError(f"{p}: cannot rebuild the policy ({type(e).__name__}: {str(e)[:120]})") from None
