"""compress: make a trained policy physically smaller, prove it still plays, report what was saved.

    python -m l0rl.compress runs/<run_name>          # see `python -m l0rl.compress --help`

    from l0rl.compress import compress_run, shrink, low_rank, magnitude_prune, load_compressed
    report = compress_run("runs/<run_name>", wandb_mode="disabled")
    policy = load_compressed("runs/<run_name>/compressed.pt")   # plain torch nn.Sequential

Stages are pure functions on a canonical nn.Sequential chain (l0rl.policy): `harden`,
`magnitude_prune`, `shrink`, `round_channels`, `low_rank`; figures and their definitions live in compress.measure.
"""

from l0rl._one_name import wrong_import_name

if __name__ != "l0rl.compress":  # this folder installs as l0rl.compress only
    raise wrong_import_name("l0rl.compress")

from l0rl.compress.measure import counts, macs, policy_bytes
from l0rl.compress.pipeline import METHODS, compress_run
from l0rl.compress.serialize import load_compressed
from l0rl.compress.stages import (
    choose_ranks,
    factorize,
    harden,
    low_rank,
    magnitude_prune,
    round_channels,
    search_ranks,
    shrink,
)
from l0rl.policy import Affine, as_chain

__all__ = [
    "METHODS",
    "Affine",
    "as_chain",
    "choose_ranks",
    "compress_run",
    "counts",
    "factorize",
    "harden",
    "load_compressed",
    "low_rank",
    "macs",
    "magnitude_prune",
    "policy_bytes",
    "round_channels",
    "search_ranks",
    "shrink",
]
