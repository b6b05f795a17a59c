"""How compress stores a policy: an architecture description (a list of plain dicts) plus a state_dict
whose floating tensors each take whichever of two encodings saves to fewer bytes, dense or (bitmask +
non-zero values), so unstructured zeros save bytes honestly. Everything is plain Python and tensors: a compressed file
loads with `torch.load(..., weights_only=True)` and rebuilds with torch alone (no l0 gates, no algorithm file).
"""

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from l0rl.errors import RunError
from l0rl.policy import build, check_size, describe
from l0rl.runkit.files import TORCH_FILE_LIMIT, load_plain

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
    """The dense tensor of an encoded one; a sparse record whose parts do not fit its declared shape
    is a ValueError, so the zeros allocated never exceed 8 per byte of mask the file holds."""
    if isinstance(x, torch.Tensor):
        return x
    if not isinstance(x, dict) or set(x) != {"shape", "mask", "values"}:
        raise ValueError("a tensor is neither dense nor a sparse record")
    shape, mask, values = x["shape"], x["mask"], x["values"]
    if not isinstance(shape, list) or len(shape) > 8 or any(type(d) is not int or d < 0 for d in shape):
        raise ValueError(f"a sparse record's shape {str(shape)[:40]} is not a list of sizes")
    numel = math.prod(shape)
    if (
        not isinstance(mask, torch.Tensor)
        or mask.dtype != torch.uint8
        or mask.shape != (math.ceil(numel / 8),)
    ):
        raise ValueError(f"a sparse record's mask does not hold one bit per element of its shape {shape}")
    bits = torch.from_numpy(np.unpackbits(mask.numpy(), count=numel).astype(bool))
    if (
        not isinstance(values, torch.Tensor)
        or not values.is_floating_point()
        or values.shape != (int(bits.sum()),)
    ):
        raise ValueError(f"a sparse record's values do not match its mask (shape {shape})")
    flat = torch.zeros(numel, dtype=values.dtype)
    flat[bits] = values
    return flat.reshape(shape)


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
    """Rebuild a policy saved by compress (eval mode); with_meta=True also returns its metadata. The
    file is read through runkit.files (a regular file, plain data, bounded); a record that is not
    what compress writes, or declares more numbers than it holds, is a one-line RunError."""
    path = Path(path)
    if not os.path.lexists(path):
        raise RunError(f"{path} does not exist; compressed policies are runs/<run_name>/compressed*.pt")
    blob = load_plain(path, TORCH_FILE_LIMIT, "compressed policy")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise RunError(f"{path} is not an l0rl compressed policy; write one with python -m l0rl.compress")
    if blob.get("version") != VERSION:
        raise RunError(
            f"{path} has compressed format {str(blob.get('version'))[:20]}, this l0rl reads {VERSION}"
        )
    try:
        if not isinstance(blob.get("state"), dict):
            raise ValueError("its state is not a dict of tensors")
        state = decode_state(blob["state"])
        check_size(blob.get("arch"), state)
        policy = build(blob["arch"])
        policy.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise RunError(f"{path} is not a policy compress wrote ({first}); it was not loaded") from None
    policy.eval()
    return (policy, blob.get("meta", {})) if with_meta else policy
