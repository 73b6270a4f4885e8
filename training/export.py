"""Export a trained model to ONNX with the interface's names and a dynamic batch dimension.

    from training.export import export_onnx
    export_onnx(model, "model.onnx", spec)

Uses torch.onnx's maintained exporter (``dynamo=True``, onnxscript). The graph is static: the id lookups are
comparisons, not branches, so ONNX Runtime and TensorRT run it as is.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tools.core.errors import EdgeopsError
from training.config import DataSpec
from training.interface import INPUT_NAMES, OUTPUT_NAME
from training.model import FailureModeModel, WithProbabilities
from training.train import TrainingTensors, load_snapshot

__all__ = ["OPSET", "build_tensorrt_engine", "export_onnx", "export_run", "run_tensorrt"]

log = logging.getLogger("edgeops.export")

OPSET = 18  # the exporter's own opset; TensorRT 10 and ONNX Runtime 1.16+ read it


def export_onnx(model: FailureModeModel, path: Path | str, spec: DataSpec) -> Path:
    path = Path(path)
    wrapped = WithProbabilities(model).eval()
    batch = torch.export.Dim("batch", min=1, max=65536)
    example = (
        torch.zeros(2, len(spec.channels), spec.window),
        *(torch.zeros(2, dtype=torch.int64) for _ in INPUT_NAMES[1:]),
    )
    # The exporter logs a line per torchvision operator it cannot register; we use none of them.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # Both come from inside torch 2.13's exporter, not from our model: its pytree helper still calls a
        # deprecated API, and it notes that all four inputs share the one batch dimension (they do).
        warnings.filterwarnings(
            "ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning
        )
        warnings.filterwarnings(
            "ignore", message=r".*The axis name: .* will not be used.*", category=UserWarning
        )
        torch.onnx.export(
            wrapped,
            example,
            str(path),
            dynamo=True,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes=tuple({0: batch} for _ in INPUT_NAMES),
            external_data=False,
            verbose=False,
        )
    return path


# --- the export step ------------------------------------------------------------------------------------

PARITY_ATOL = 1e-4  # ONNX Runtime vs PyTorch, on probabilities
TRT_ATOL = 2e-2  # FP16 engine vs ONNX Runtime: half precision moves probabilities by ~1e-3
GOLDEN_ROWS = 8


def _latency_ms(session: object, feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
    run = session.run  # type: ignore[attr-defined]
    for _ in range(5):  # warm-up
        run(["probabilities"], feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(["probabilities"], feed)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 4),
        "p99_ms": round(float(np.percentile(times, 99)), 4),
    }


def _golden(snap: TrainingTensors, test_idx: torch.Tensor, session: object) -> dict[str, object]:
    """A few fixed inputs with the outputs the deployed runtime must reproduce: the node's health check.

    Test rows, plus the same first row with ids no vocabulary holds (the "unknown" path must work too).
    """
    rows = test_idx[:GOLDEN_ROWS]
    feed = snap.feed(rows)
    unknown = {k: v[:1].copy() for k, v in feed.items()}
    for name in INPUT_NAMES[1:]:
        unknown[name][:] = 2**40  # far outside any vocabulary
    inputs = {k: np.concatenate([feed[k], unknown[k]]) for k in feed}
    (probs,) = session.run(["probabilities"], inputs)  # type: ignore[attr-defined]
    return {
        "format": "edgeops-golden/v1",
        "atol": PARITY_ATOL,
        "inputs": {k: v.tolist() for k, v in inputs.items()},
        "dtypes": {k: str(v.dtype) for k, v in inputs.items()},
        "expected": {"probabilities": probs.tolist()},
    }


def build_tensorrt_engine(onnx_path: Path, out_dir: Path, *, max_batch: int = 1024) -> dict[str, Any]:
    """Build an FP16 engine with the TensorRT Python API; the engine file is named by its target.

    An engine only runs on the GPU architecture and TensorRT version it was built for, so the name carries
    both: ``engine-sm<major><minor>-trt<version>.plan``. Jetson nodes build or receive their own.
    Returns a report; ``{"built": False, "reason": ...}`` where TensorRT or a GPU is missing.
    """
    try:
        import tensorrt as trt
    except ImportError:
        return {"built": False, "reason": "TensorRT unavailable on this runner"}
    if not torch.cuda.is_available():
        return {"built": False, "reason": "no CUDA GPU on this runner"}
    major, minor = torch.cuda.get_device_capability()
    target = f"sm{major}{minor}-trt{trt.__version__}"
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeopsError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        lo, opt, hi = ([1, *shape[1:]], [64, *shape[1:]], [max_batch, *shape[1:]])
        profile.set_shape(tensor.name, lo, opt, hi)
    config.add_optimization_profile(profile)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeopsError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    build_s = time.perf_counter() - start
    path = out_dir / f"engine-{target}.plan"
    path.write_bytes(bytes(serialized))
    return {"built": True, "target": target, "file": path.name, "build_seconds": round(build_s, 2)}


def run_tensorrt(plan: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    """Run an engine on one batch (torch CUDA tensors as buffers; no pycuda needed)."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    context = engine.create_execution_context()
    buffers = {k: torch.from_numpy(v).cuda() for k, v in feed.items()}
    batch = next(iter(feed.values())).shape[0]
    for name, tensor in buffers.items():
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    out = torch.empty((batch, engine.get_tensor_shape(OUTPUT_NAME)[1]), device="cuda", dtype=torch.float32)
    context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
    stream = torch.cuda.current_stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise EdgeopsError(f"TensorRT execution of {plan.name} failed")
    stream.synchronize()
    return out.cpu().numpy()


def export_run(run_dir: Path, snapshot_dir: Path | None = None) -> dict[str, Any]:
    """``edgeops export``: ONNX, parity, latency, golden (+ TensorRT where available) into ``run/export/``."""
    import onnxruntime as ort

    from training.evaluate import load_run, predict_onnx, predict_torch

    model, cfg, run = load_run(run_dir)
    spec = cfg.data_spec()
    snap = load_snapshot(Path(snapshot_dir or run["snapshot"]["path"]), spec, torch.device("cpu"))
    test_idx = snap.index(2) if len(snap.index(2)) else snap.index(1)
    out = run_dir / "export"
    if out.exists() and not out.is_dir():
        raise EdgeopsError(f"{out} is a file; export writes its files into that folder: move the file away")
    out.mkdir(exist_ok=True)
    onnx_path = export_onnx(model, out / "model.onnx", spec)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    # Parity on the whole test split: probabilities and the decisions they lead to.
    thresholds = np.array([run["thresholds"][n] for n in spec.labels])
    reference = predict_torch(model, snap, test_idx)
    onnx_probs = predict_onnx(session, snap, test_idx)
    max_diff = float(np.abs(onnx_probs - reference).max())
    flips = int(((onnx_probs >= thresholds) != (reference >= thresholds)).any(axis=1).sum())
    if max_diff > PARITY_ATOL or flips:
        raise EdgeopsError(
            f"ONNX Runtime disagrees with PyTorch on the test split: max |diff| {max_diff:.2e} "
            f"(limit {PARITY_ATOL:.0e}), {flips} windows decided differently; the export is not usable"
        )
    # Rows for a batch of b: the first test rows, repeated when the split is smaller than b.
    latency = {
        f"batch_{b}": _latency_ms(session, snap.feed(test_idx.repeat(-(-b // len(test_idx)))[:b]), runs)
        for b, runs in ((1, 300), (64, 100))
    }
    golden = _golden(snap, test_idx, session)
    (out / "golden.json").write_text(json.dumps(golden) + "\n")

    engine = build_tensorrt_engine(onnx_path, out)
    if engine.get("built"):
        plan = out / str(engine["file"])
        feed = snap.feed(test_idx[:64])
        trt_probs = run_tensorrt(plan, feed)
        (ort_probs,) = session.run(["probabilities"], feed)
        engine["parity_max_abs_diff"] = float(np.abs(trt_probs - ort_probs).max())
        if engine["parity_max_abs_diff"] > TRT_ATOL:
            raise EdgeopsError(
                f"the TensorRT engine disagrees with ONNX Runtime by {engine['parity_max_abs_diff']:.2e}"
            )
        times = []
        for _ in range(50):
            start = time.perf_counter()
            run_tensorrt(plan, feed)
            times.append((time.perf_counter() - start) * 1000)
        engine["latency_batch_64_p50_ms"] = round(float(np.percentile(times, 50)), 4)
    else:
        log.warning(f"engine: not built ({engine['reason']})")

    report: dict[str, Any] = {
        "format": "edgeops-export/v1",
        "onnx": {"file": "model.onnx", "opset": OPSET, "bytes": onnx_path.stat().st_size},
        "parity": {
            "rows": len(test_idx),
            "max_abs_diff": max_diff,
            "atol": PARITY_ATOL,
            "decision_flips": flips,
        },
        "latency_cpu_onnxruntime": latency,
        "golden": {"file": "golden.json", "rows": len(golden["expected"]["probabilities"])},  # type: ignore[index]
        "engine": engine,
    }
    (out / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info(
        f"exported {onnx_path}: parity max |diff| {max_diff:.1e} on {len(test_idx)} test windows, "
        f"0 decision flips; CPU latency p50 {latency['batch_1']['p50_ms']:.3f} ms (batch 1), "
        f"{latency['batch_64']['p50_ms']:.3f} ms (batch 64)"
    )
    return report
