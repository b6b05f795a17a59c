"""compress: make a trained policy physically smaller, prove it still plays, report what was saved.

    python -m compress runs/<run_name>          # see `python -m compress --help`

    from compress import compress_run, shrink, low_rank, magnitude_prune, load_compressed
    report = compress_run("runs/<run_name>", wandb_mode="disabled")
    policy = load_compressed("runs/<run_name>/compressed.pt")   # plain torch nn.Sequential

Stages are pure functions on a canonical nn.Sequential chain (compress.chain): `harden`,
`magnitude_prune`, `shrink`, `low_rank`; figures and their definitions live in compress.measure.
"""

from compress.chain import Affine, as_chain
from compress.measure import counts, macs, policy_bytes
from compress.pipeline import ALGOS, METHODS, compress_run
from compress.serialize import load_compressed
from compress.stages import (
    choose_ranks,
    factorize,
    harden,
    low_rank,
    magnitude_prune,
    search_ranks,
    shrink,
)

__all__ = [
    "ALGOS",
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
    "search_ranks",
    "shrink",
]
