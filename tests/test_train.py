"""Training: accuracy on synthetic data, determinism, SIGTERM + resume, DDP, and the exported interface."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import EDGEOPS, EXPECTED_CAPABILITY, KERNEL_SETS, REPO, kernel_env
from training.config import load_training_config
from training.data.synth import write_dataset
from training.export import export_onnx
from training.interface import interface_hash
from training.model import FailureModeModel, SensorStatistics, WithProbabilities, count_parameters
from training.snapshot import DirSource, SnapshotOptions, build_snapshot
from training.train import EXIT_PREEMPTED

DEFAULT_CONFIG = REPO / "training/configs/default.yaml"
SPEC = load_training_config().data_spec()


def make_snapshot(root: Path, n: int, seed: int) -> Path:
    write_dataset(root / "ldos", n, seed, SPEC)
    build_snapshot(DirSource(root / "ldos"), root / "snap", SPEC, SnapshotOptions(limit=10**6))
    return root / "snap"


def config(tmp: Path, **changes: object) -> Path:
    """default.yaml with some keys changed: a delta over it (`base:`), as demo.yaml and gpu.yaml are."""
    changed = "".join(f"{key}: {json.dumps(value)}\n" for key, value in changes.items())
    text = f"base: {DEFAULT_CONFIG}\n{changed}"
    path = tmp / f"train-{abs(hash(tuple(sorted(changes.items()))))}.yaml"
    path.write_text(text)
    effective = load_training_config(path)  # an unknown key or a wrong type fails here, naming it
    assert all(getattr(effective, key) == value for key, value in changes.items())
    return path


def train(
    snapshot: Path,
    out: Path,
    cfg: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    kernels: str = "native",
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGEOPS, "train", "--snapshot", str(snapshot), "--out", str(out), "--config", str(cfg), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
        env={**kernel_env(kernels), **(env or {})},
    )  # fmt: skip


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "weights.safetensors"))


@pytest.fixture(scope="module")
def small_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_snapshot(tmp_path_factory.mktemp("small"), 1500, 3)


@pytest.fixture(scope="module")
def snapshot_20k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_snapshot(tmp_path_factory.mktemp("20k"), 20_000, 0)


@pytest.mark.parametrize("kernels", list(KERNEL_SETS))
def test_default_config_reaches_090_on_20k(snapshot_20k: Path, tmp_path: Path, kernels: str) -> None:
    """Acceptance: 20,000 synthetic LDOs, CPU, default config -> >= 0.90 subset accuracy on the test split,
    under each CPU kernel set (another CPU rounds differently; the margins below hold on all of them)."""
    result = train(snapshot_20k, tmp_path / "run", DEFAULT_CONFIG, kernels=kernels)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    if kernels in EXPECTED_CAPABILITY:
        assert run["source"]["cpu_capability"] == EXPECTED_CAPABILITY[kernels]
    test = run["metrics"]["test"]
    print(
        f"\ntest subset accuracy {test['subset_accuracy']:.4f}, "
        f"always-healthy {test['healthy_baseline_subset_accuracy']:.4f}, FP {test['fp_rate']:.4f}, "
        f"FN {test['fn_rate']:.4f}, epochs {run['epochs_run']}, {run['timing']['wall_seconds']}s"
    )
    assert test["n"] > 1500
    assert test["subset_accuracy"] >= 0.90
    assert test["subset_accuracy"] - test["healthy_baseline_subset_accuracy"] >= 0.35  # a wide margin
    assert test["fp_rate"] <= 0.05 and test["fn_rate"] <= 0.05
    for mode in SPEC.labels:
        assert test["per_mode"][mode]["recall"] >= 0.85, mode
        assert 0.05 <= run["thresholds"][mode] <= 0.95
    assert run["interface"] == interface_hash(SPEC)
    assert run["model"]["parameters"] <= 1_000_000
    assert run["timing"]["device"] == "cpu" and run["timing"]["gpu_hours"] == 0.0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, run["epochs_run"] + 1))
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    for png in ("curves.png", "confusion.png"):
        assert (tmp_path / "run" / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kernels", list(KERNEL_SETS))
def test_same_seed_same_weights_and_another_seed_differs(
    small_snapshot: Path, tmp_path: Path, kernels: str
) -> None:
    """The promise is per machine and kernel set: bit-identical weights within each set."""
    cfg = config(tmp_path, epochs=3, early_stop_patience=0)
    assert train(small_snapshot, tmp_path / "a", cfg, kernels=kernels).returncode == 0
    assert train(small_snapshot, tmp_path / "b", cfg, kernels=kernels).returncode == 0
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = config(tmp_path, epochs=3, early_stop_patience=0, seed=1)
    assert train(small_snapshot, tmp_path / "c", other, kernels=kernels).returncode == 0
    c = weights(tmp_path / "c")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_a_mode_the_model_cannot_see_is_named_and_does_not_flag_the_healthy_windows(
    small_snapshot: Path, tmp_path: Path
) -> None:
    """Issue #20: overheating's labels shuffled (no signal left), so the model scores it at chance. F-beta
    alone would flag most healthy windows to keep its recall; the false-alarm budget raises that threshold
    instead, and the run says so by name."""
    import shutil

    from safetensors.torch import save_file

    snap = tmp_path / "snap"
    shutil.copytree(small_snapshot, snap)
    tensors = load_file(str(snap / "tensors.safetensors"))
    labels = tensors["labels"].clone()
    mode = SPEC.labels.index("overheating")
    labels[:, mode] = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0)), mode]
    save_file({**tensors, "labels": labels}, str(snap / "tensors.safetensors"))
    result = train(snap, tmp_path / "run", config(tmp_path, epochs=4, early_stop_patience=0))
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    raised = run["thresholds_raised"]
    assert "overheating" in raised and raised["overheating"]["to"] > raised["overheating"]["from"]
    assert raised["overheating"]["val_recall_to"] < raised["overheating"]["val_recall_from"]
    assert "overheating: threshold raised from" in result.stderr
    val = run["metrics"]["val"]
    assert val["fp_rate"] <= 0.04  # the budget holds where it was set
    assert val["per_mode"]["overheating"]["auroc"] < 0.7  # it really is blind to it
    assert run["metrics"]["test"]["fp_rate"] <= 0.10  # and it carries over: not "most healthy windows"


def test_another_kernel_set_learns_the_same_within_tolerance(small_snapshot: Path, tmp_path: Path) -> None:
    """Across kernel sets nothing is promised bit for bit: the same run lands close, not equal."""
    cfg = config(tmp_path, epochs=3, early_stop_patience=0)
    runs = {}
    for kernels in KERNEL_SETS:
        assert train(small_snapshot, tmp_path / kernels, cfg, kernels=kernels).returncode == 0
        rows = (tmp_path / kernels / "metrics.jsonl").read_text().splitlines()
        runs[kernels] = [json.loads(line)["val_loss"] for line in rows]
    native, baseline = runs["native"], runs["baseline"]
    assert len(native) == len(baseline) == 3
    assert all(abs(a - b) <= 0.05 * a for a, b in zip(native, baseline, strict=True)), runs


def test_sigterm_mid_epoch_then_resume_gives_identical_weights(small_snapshot: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, epochs=4, early_stop_patience=0, batch_size=64)
    assert train(small_snapshot, tmp_path / "whole", cfg).returncode == 0
    steps_per_epoch = -(
        -json.loads((small_snapshot / "snapshot.json").read_text())["counts"]["splits"]["train"] // 64
    )
    stop_at = steps_per_epoch + steps_per_epoch // 2  # the middle of epoch 2

    stopped = train(
        small_snapshot, tmp_path / "cut", cfg, env={"EDGEOPS_FAULT_SIGTERM_AT_STEP": str(stop_at)}
    )
    assert stopped.returncode == EXIT_PREEMPTED, stopped.stderr[-2000:]
    assert "stopped by SIGTERM at epoch 2" in stopped.stderr and "--resume" in stopped.stderr
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (1, stop_at - steps_per_epoch)  # mid-epoch, not a boundary
    assert not (tmp_path / "cut" / "weights.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoint").iterdir()) == [
        "state.json",
        "tensors.safetensors",
    ]

    refused = train(small_snapshot, tmp_path / "cut", cfg)
    assert refused.returncode == 1 and "pass --resume" in refused.stderr

    resumed = train(small_snapshot, tmp_path / "cut", cfg, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole, cut = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    rows = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    ref = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in ref]


def test_resume_without_checkpoint_is_refused(small_snapshot: Path, tmp_path: Path) -> None:
    result = train(small_snapshot, tmp_path / "none", DEFAULT_CONFIG, "--resume")
    assert result.returncode == 1 and "no checkpoint to resume from" in result.stderr


def test_ddp_two_processes_on_cpu_matches_single_process(small_snapshot: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, epochs=4, early_stop_patience=0)
    single = train(small_snapshot, tmp_path / "one", cfg)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = train(small_snapshot, tmp_path / "two", cfg, "--nproc", "2")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "run.json").read_text())
    two = json.loads((tmp_path / "two" / "run.json").read_text())
    assert two["timing"]["world_size"] == 2
    v1 = [json.loads(x)["val_loss"] for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    v2 = [json.loads(x)["val_loss"] for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(v1) == len(v2) == 4
    # Same global batch and schedule; only the summation order and batch-norm statistics differ per rank.
    assert abs(v1[-1] - v2[-1]) <= 0.1 * v1[-1] + 0.01, (v1, v2)
    assert abs(one["metrics"]["val"]["subset_accuracy"] - two["metrics"]["val"]["subset_accuracy"]) <= 0.1


def test_the_torchrun_entry_point_takes_set_and_the_run_records_the_effective_config(
    small_snapshot: Path, tmp_path: Path
) -> None:
    """`python -m training.train` (what torchrun starts for `edgeops train --nproc N`) takes --set; run.json
    and the checkpoint carry the effective config, whole: the run can be rebuilt without its config files."""
    delta = tmp_path / "delta.yaml"
    delta.write_text(f"base: {REPO / 'training/configs/demo.yaml'}\nseed: 4\n")
    overrides = ["epochs=1", "conv_channels=[8, 16]"]

    def entry(out: Path, *sets: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "training.train", "--snapshot", str(small_snapshot), "--out", str(out),
               "--config", str(delta), *(a for s in sets for a in ("--set", s))]  # fmt: skip
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
                              env=kernel_env("native"))  # fmt: skip

    result = entry(tmp_path / "run", *overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = load_training_config(delta, overrides=overrides)
    # default.yaml's interface, demo.yaml's batch, delta.yaml's seed, --set's epochs and channels
    assert (expected.window, expected.batch_size, expected.seed, expected.epochs) == (128, 128, 4, 1)
    assert expected.conv_channels == [8, 16]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"] == expected.model_dump(mode="json") and "base" not in run["config"]
    assert run["epochs_run"] == 1 and run["interface"] == interface_hash(SPEC)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["config"] == run["config"]
    bad = entry(tmp_path / "bad", "epochs=zero")
    assert bad.returncode == 1 and "--set epochs=zero: epochs: input should be a valid integer" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_model_takes_raw_values_and_exports_to_onnx(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    cfg = load_training_config()
    vocab = {"product_id": [3, 5, 8], "recipe_id": [1, 2], "asset_id": list(range(1, 151))}
    torch.manual_seed(0)
    stats = SensorStatistics(
        torch.tensor([0.0, 0.0, 55.0, 9.0]), torch.tensor([1.0, 1.0, 5.0, 2.0]),
        torch.tensor([1.0, 1.0, 0.5, 0.2]),
    )  # fmt: skip
    model = FailureModeModel(cfg, vocab, stats)
    assert count_parameters(model) <= 1_000_000
    # Unknown ids all land on the reserved row 0: no error, same embedding.
    emb = model.ids["product_id"]
    np.testing.assert_array_equal(
        emb(torch.tensor([999, -1, 4])).detach(), emb(torch.tensor([0, 0, 0])).detach()
    )
    assert not torch.equal(emb(torch.tensor([3])), emb(torch.tensor([999])))

    wrapped = WithProbabilities(model).eval()
    x = torch.randn(5, 4, 128) + torch.tensor([0.0, 0.0, 55.0, 9.0]).view(1, 4, 1)
    ids = (torch.tensor([3, 5, 8, 42, 0]), torch.tensor([1, 2, 1, 9, 2]), torch.tensor([1, 2, 3, 500, 7]))
    path = export_onnx(model, tmp_path / "model.onnx", SPEC)
    proto = onnx.load(str(path))
    graph = proto.graph
    assert [i.name for i in graph.input] == ["sensors", "product_id", "recipe_id", "asset_id"]
    assert [o.name for o in graph.output] == ["probabilities"]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert not {n.op_type for n in graph.node} & {
        "If",
        "Loop",
        "Scan",
        "NonZero",
    }  # static graph for TensorRT
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        feed = {"sensors": x[:batch].numpy(), "product_id": ids[0][:batch].numpy(),
                "recipe_id": ids[1][:batch].numpy(), "asset_id": ids[2][:batch].numpy()}  # fmt: skip
        (probs,) = session.run(["probabilities"], feed)
        with torch.inference_mode():
            expected = wrapped(x[:batch], *(i[:batch] for i in ids)).numpy()
        assert probs.shape == (batch, 5)
        np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_interface_hash_tracks_the_interface() -> None:
    base = interface_hash(SPEC)
    assert base.startswith("sha256:") and len(base) == 71
    assert interface_hash(SPEC) == base
    from dataclasses import replace

    assert interface_hash(replace(SPEC, window=64)) != base
    assert interface_hash(replace(SPEC, labels=SPEC.labels[:4])) != base
    assert interface_hash(replace(SPEC, channels=tuple(reversed(SPEC.channels)))) != base
