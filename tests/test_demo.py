"""`make demo` runs its path end to end (small) and says what it did and did not do."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import EDGEOPS, REPO


def test_demo_runs_and_is_honest(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    result = subprocess.run(
        [EDGEOPS, "demo", "--n", "150", "--workspace", str(ws)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "150 of 150 records valid" in out
    assert "first load:  seeded 150 LDOs" in out and "second load: nothing to do" in out
    assert "warm: snapshot sha256:" in out and "0 fetched (0.0 MB)" in out
    assert "Not built yet" not in out and "not yet part of this story (issue #9" in out
    assert "edgeops fleet-sim" in out
    assert "test split (" in out and (ws / "run" / "weights.safetensors").is_file()
    assert "ONNX parity max |diff|" in out and "TensorRT engine: not built (" in out
    # 150 LDOs are too few for a good model: the demo must say the gates failed and publish nothing.
    assert "not published: the candidate failed its gates" in out
    assert not (ws / "store").exists()
    assert (ws / "snapshot" / "snapshot.json").is_file()
    assert len(list((ws / "ldos").glob("*.json"))) == 150

    # A folder that is not a demo workspace is never wiped.
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    refused = subprocess.run(
        [EDGEOPS, "demo", "--n", "10", "--workspace", str(precious)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "is not a demo workspace" in refused.stderr
    assert (precious / "keep.txt").read_text() == "mine"
