"""The robustness benchmark, small, in the suite (issue #20): the default config learns every plant of the
synthetic family (training/data/plants.py), not only the one it was designed beside, under each CPU
kernel set (tests/conftest.py, KERNEL_SETS).

`benchmarks/robustness.py` itself runs, once per kernel set, on N LDOs per plant (snapshots made once and
reused through ``--keep``). The full benchmark (20,000 LDOs) asks every mode for AUROC >= 0.97 and the
shipped gates; with N LDOs a plant's weakest mode is learnt less well, so the bounds here are looser, with
the margin stated next to each (measured figures in benchmarks/README.md, "Robustness").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXPECTED_CAPABILITY, KERNEL_SETS, REPO, kernel_env

N = 8000
# Per plant: the weakest mode's AUROC must reach this. Measured at N (native / baseline kernels, see
# benchmarks/README.md): default 0.9967 / 0.9978, impulsive 0.9684 / 0.9647, dropout 0.9731 / 0.9786; each
# bound sits 0.017-0.025 under the lower of the two. The model before the context view (commit 54c89a3)
# reached 0.717 on impulsive's overheating at this size and flagged 47% of the healthy windows.
MIN_WEAKEST_AUROC = {"default": 0.98, "impulsive": 0.94, "dropout": 0.95}
# Thresholds hold 0.04 on ~400 healthy validation windows at this size; the ~400 healthy test windows are
# another sample: measured 0.0027-0.0769 over both kernel sets (impulsive the highest). Before #20 the
# impulsive plant flagged 0.47 of them.
MAX_FP_RATE = 0.12


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("robustness")


@pytest.mark.parametrize("kernels", list(KERNEL_SETS))
def test_every_plant_is_learnt_under_each_kernel_set(work: Path, kernels: str, tmp_path: Path) -> None:
    out = tmp_path / "robustness.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/robustness.py"), "--n", str(N), "--keep", str(work / "data"),
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=1200, check=False, env=kernel_env(kernels),
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: a plant misses the 20k target
    print(result.stdout)
    rows = {row["plant"]: row for row in json.loads(out.read_text())}
    assert set(rows) == set(MIN_WEAKEST_AUROC)
    for plant, row in rows.items():
        if kernels in EXPECTED_CAPABILITY:
            assert row["cpu_capability"] == EXPECTED_CAPABILITY[kernels]
        weakest = min(row["auroc"].values())
        assert weakest >= MIN_WEAKEST_AUROC[plant], (plant, row["auroc"])
        assert row["fp_rate"] <= MAX_FP_RATE, (plant, row["fp_rate"])
    assert rows["default"]["subset_accuracy"] >= 0.97, rows["default"]  # measured 0.9933 / 0.9946
