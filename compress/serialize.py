"""How compress stores a policy: an architecture description (a list of plain dicts) plus a state_dict
whose floating tensors each take whichever of two encodings saves to fewer bytes, dense or (bitmask +
non-zero values), so unstructured zeros save bytes honestly. Everything is plain Python and tensors: a compressed file
loads with `torch.load(..., weights_only=True)` and rebuilds with torch alone (no l0 gates, no algorithm file).
"""

import io
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from l0rl.policy import build, describe

FORMAT = "l0rl-compressed"
VERSION = 1


def payload_bytes(t: torch.Tensor) -> int:
    """Bytes of a tensor's numbers in the cheaper encoding, not counting the file's per-record cost."""
    dense = t.numel() * t.element_size()
    if not t.is_floating_point():
        return dense
    sparse = math.ceil(t.numel() / 8) + int(torch.count_nonzero(t)) * t.element_size()
    return min(dense, sparse)


def encode_tensor(t: torch.Tensor, force_dense: bool = False) -> torch.Tensor | dict:
    """The tensor itself (dense), or {"shape", "mask", "values"} when that saves to fewer bytes
    (for a small tensor the extra record can cost more than its zeros save)."""
    t = (
        t.detach().cpu().clone().contiguous()
    )  # a clone owns its storage: torch.save never writes a larger base
    if force_dense or not t.is_floating_point() or payload_bytes(t) >= t.numel() * t.element_size():
        return t
    mask = t.reshape(-1) != 0
    bits = torch.from_numpy(np.packbits(mask.numpy()))
    sparse = {"shape": list(t.shape), "mask": bits, "values": t.reshape(-1)[mask].clone()}
    return sparse if len(to_bytes(sparse)) < len(to_bytes(t)) else t


def decode_tensor(x: torch.Tensor | dict) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    numel = math.prod(x["shape"])
    mask = torch.from_numpy(np.unpackbits(x["mask"].numpy(), count=numel).astype(bool))
    flat = torch.zeros(numel, dtype=x["values"].dtype)
    flat[mask] = x["values"]
    return flat.reshape(x["shape"])


def encode_state(state: dict[str, torch.Tensor], force_dense: bool = False) -> dict:
    """Every tensor encoded, keys sorted: torch.save aligns each tensor to 64 bytes, so the file size
    depends on the order, and the same tensors must give the same size however they were built."""
    return {k: encode_tensor(state[k], force_dense) for k in sorted(state)}


def decode_state(encoded: dict) -> dict[str, torch.Tensor]:
    return {k: decode_tensor(v) for k, v in encoded.items()}


def policy_blob(chain: nn.Sequential, force_dense: bool = False) -> dict:
    """What a saved policy holds: architecture + encoded state_dict."""
    return {"arch": describe(chain), "state": encode_state(chain.state_dict(), force_dense)}


def to_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def compressed_bytes(chain: nn.Sequential, meta: dict) -> bytes:
    """The bytes of a compressed-policy file: format tag, policy blob and metadata (plain values)."""
    return to_bytes({"format": FORMAT, "version": VERSION, **policy_blob(chain), "meta": meta})


def load_compressed(path: str | Path, with_meta: bool = False) -> nn.Module | tuple[nn.Module, dict]:
    """Rebuild a policy saved by compress (eval mode); with_meta=True also returns its metadata."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; compressed policies are runs/<run_name>/compressed*.pt")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...
        raise ValueError(f"{path} is not a readable compressed policy ({type(e).__name__})") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not an l0rl compressed policy; write one with python -m l0rl.compress")
    if blob.get("version") != VERSION:
        raise ValueError(f"{path} has compressed format {blob.get('version')}, this l0rl reads {VERSION}")
    policy = build(blob["arch"])
    policy.load_state_dict(decode_state(blob["state"]))
    policy.eval()
    return (policy, blob["meta"]) if with_meta else policy
