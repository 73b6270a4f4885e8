"""The benchmark scripts run, print their side-by-side figures, and read a step profile right."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.conftest import REPO


def _train_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "benchmarks/train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_training_benchmark_prints_both_loops_a_ratio_and_what_bounds_a_step() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/train.py"), "--n", "800", "--epochs", "1", "--device", "cpu",
         "--end-to-end", "--e2e-n", "600", "--e2e-epochs", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    rows = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(seed style \(DataLoader\)|edgeops train)\s+(\d+)", out, re.M)
    }
    assert len(rows) == 2 and rows["seed style (DataLoader)"] == rows["edgeops train"] > 400  # same samples
    assert re.search(r"^ratio: \d+\.\d\dx  \(target >= 2x on CPU: (meets|MISSES)\)$", out, re.M)
    assert re.search(r"step of 256 samples: [\d.]+ ms wall, [\d.]+ GFLOP", out)
    # The end-to-end path a GPU session will run first, tried small here: gpu.yaml's batch, its own profile.
    assert "training/configs/gpu.yaml: batch 1024, 2 epochs" in out
    assert re.search(r"^end to end: [\d.]+s  \(target < 30 s on a GPU: the target is for a GPU\)$", out, re.M)
    steps = re.findall(r"step of (\d+) samples: [\d.]+ ms wall", out)
    assert len(steps) == 2 and 400 < int(steps[1]) < 600  # the e2e train split: smaller than one 1024 batch


def test_a_gpu_step_profile_names_its_bound() -> None:
    explain = _train_bench().explain_bound
    idle = explain({"batch": 256, "wall_ms": 2.0, "gflop": 0.2, "busy_ms": 0.4, "launches": 150})
    assert "GPU busy 0.40 ms of it (20%), 150 kernel launches per step" in idle[1]
    assert idle[2].startswith("bound: launch overhead")
    busy = explain({"batch": 1024, "wall_ms": 2.0, "gflop": 0.2, "busy_ms": 1.8, "launches": 150})
    assert busy[2].startswith("bound: the GPU's own work")
    assert explain({"batch": 256, "wall_ms": 4.6, "gflop": 0.17})[1].startswith(
        "bound: the model's own kernels on the CPU"
    )


def test_the_robustness_benchmark_reports_each_plant_weakest_mode_first_and_the_gates(tmp_path: Path) -> None:
    out_json = tmp_path / "robustness.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/robustness.py"), "--n", "500", "--epochs", "1",
         "--plants", "default", "dropout", "--json", str(out_json)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: a plant misses the target (tiny run)
    for plant in ("default", "dropout"):
        line = re.search(rf"^{plant}: .*\n  AUROC, weakest first: (.*)$", out, re.M)
        assert line, out
        aurocs = [float(a) for a in re.findall(r"[a-z_]+ (\d\.\d{4})", line.group(1))]
        assert len(aurocs) == 5 and aurocs == sorted(aurocs)  # every mode, the weakest first
    rows = json.loads(out_json.read_text())
    assert [r["plant"] for r in rows] == ["default", "dropout"]
    assert all(set(r["auroc"]) == set(r["recall"]) and len(r["auroc"]) == 5 for r in rows)
    verdict = r"^  (default|dropout)\s+weakest AUROC (\d\.\d{4}).*(meets|MISSES) the target$"
    verdicts = re.findall(verdict, out, re.M)
    assert [v[0] for v in verdicts] == ["default", "dropout"]
    assert result.returncode == (0 if all(v[2] == "meets" for v in verdicts) else 1)
