"""ONNX export of a compressed policy, checked against torch with onnxruntime (optional extra)."""

import io
import warnings

import numpy as np
import torch
from torch import nn

from l0rl.compress.measure import latency_us
from l0rl.errors import UsageError

INSTALL_HINT = 'pip install -e ".[onnx]"'


def require_onnx() -> None:
    """Raise a one-line UsageError when onnx or onnxruntime is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ModuleNotFoundError as e:
        raise UsageError(f"--onnx needs the {e.name!r} package; install it with {INSTALL_HINT}") from None


def export_onnx(policy: nn.Module, observations: np.ndarray) -> tuple[bytes, dict]:
    """The ONNX model (input "obs" with a dynamic batch, output "out") and its check: the largest
    |torch - onnxruntime| difference on `observations` (a batch), and the single-thread onnxruntime
    latency for one observation. Raises RuntimeError when the outputs do not match."""
    require_onnx()
    import onnx
    import onnxruntime as ort

    policy = policy.eval()
    x = torch.as_tensor(observations, dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated; the dynamo one needs onnxscript, which l0rl does not pin
        warnings.simplefilter("ignore")
        torch.onnx.export(
            policy,
            (x[:1],),
            buf,
            dynamo=False,
            input_names=["obs"],
            output_names=["out"],
            dynamic_axes={"obs": {0: "batch"}, "out": {0: "batch"}},
        )
    model_bytes = buf.getvalue()
    onnx.checker.check_model(onnx.load_from_string(model_bytes))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"obs": x.numpy()})[0]
    with torch.no_grad():
        want = policy(x).numpy()
    diff = float(np.abs(got - want).max())
    if not np.allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max()))):
        raise RuntimeError(f"onnxruntime and torch disagree on the exported policy (max |diff| {diff:.3g})")
    one = x[:1].numpy()
    latency = latency_us(lambda: session.run(None, {"obs": one}))
    return model_bytes, {"bytes": len(model_bytes), "max_abs_diff": diff, "latency_us": latency}
