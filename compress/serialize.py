"""How compress stores a policy: an architecture description (a list of plain dicts) plus a state_dict
whose floating tensors each take whichever of two encodings saves to fewer bytes, dense or (bitmask +
non-zero values), so unstructured zeros save bytes honestly. Everything is plain Python and tensors: a compressed file
loads with `torch.load(..., weights_only=True)` and rebuilds with torch alone (no l0 gates, no algos).
"""

import io
import math
from pathlib import Path

import numpy as np
import torch
from l0rl.compress.chain import ACTIVATIONS, Affine
from torch import nn

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


def _describe(m: nn.Module) -> dict:
    if isinstance(m, nn.Linear):
        return {
            "type": "Linear",
            "in_features": m.in_features,
            "out_features": m.out_features,
            "bias": m.bias is not None,
        }
    if isinstance(m, nn.Conv2d):
        return {
            "type": "Conv2d",
            "in_channels": m.in_channels,
            "out_channels": m.out_channels,
            "kernel_size": list(m.kernel_size),
            "stride": list(m.stride),
            "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
            "dilation": list(m.dilation),
            "groups": m.groups,
            "bias": m.bias is not None,
            "padding_mode": m.padding_mode,
        }
    if isinstance(m, nn.Flatten):
        return {"type": "Flatten", "start_dim": m.start_dim, "end_dim": m.end_dim}
    if isinstance(m, Affine):
        return {"type": "Affine", "scale_shape": list(m.scale.shape), "shift_shape": list(m.shift.shape)}
    if isinstance(m, ACTIVATIONS):
        return {"type": type(m).__name__}
    raise ValueError(f"cannot describe {type(m).__name__}; pass the policy through compress.as_chain first")


def describe(chain: nn.Sequential) -> list[dict]:
    """The architecture of a canonical chain as a list of plain dicts."""
    return [_describe(m) for m in chain]


def _build(spec: dict) -> nn.Module:
    kind = spec["type"]
    if kind == "Linear":
        return torch.nn.utils.skip_init(
            nn.Linear, spec["in_features"], spec["out_features"], bias=spec["bias"]
        )
    if kind == "Conv2d":
        padding = spec["padding"] if isinstance(spec["padding"], str) else tuple(spec["padding"])
        return torch.nn.utils.skip_init(
            nn.Conv2d,
            spec["in_channels"],
            spec["out_channels"],
            tuple(spec["kernel_size"]),
            stride=tuple(spec["stride"]),
            padding=padding,
            dilation=tuple(spec["dilation"]),
            groups=spec["groups"],
            bias=spec["bias"],
            padding_mode=spec["padding_mode"],
        )
    if kind == "Flatten":
        return nn.Flatten(spec["start_dim"], spec["end_dim"])
    if kind == "Affine":
        return Affine(torch.zeros(spec["scale_shape"]), torch.zeros(spec["shift_shape"]))
    activations = {cls.__name__: cls for cls in ACTIVATIONS}
    if kind in activations:
        return activations[kind]()
    raise ValueError(f"unknown layer type {kind!r} in a compressed policy; was it written by a newer l0rl?")


def build(arch: list[dict]) -> nn.Sequential:
    """An uninitialised chain with the described architecture (load a state_dict into it)."""
    return nn.Sequential(*[_build(spec) for spec in arch])


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
