"""The `edgeops` entry point: subcommands, every designed command built, count flags, logging formats."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EDGEOPS, REPO

DESIGN_SUBCOMMANDS = [
    "data", "snapshot", "train", "evaluate", "export", "publish", "propose", "promote", "guard", "rollback",
    "validate", "verify", "status", "render", "pipeline", "updater", "fleet-sim", "demo",
]  # fmt: skip


def edgeops(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGEOPS, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_help_lists_every_design_subcommand() -> None:
    result = edgeops("--help")
    assert result.returncode == 0
    listed = {
        line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ") and line.split()
    }
    assert set(DESIGN_SUBCOMMANDS) <= listed
    assert "config" in listed


def test_every_designed_subcommand_is_built() -> None:
    for name in DESIGN_SUBCOMMANDS:
        result = edgeops(name, "--help")
        assert result.returncode == 0 and "not available yet" not in result.stdout + result.stderr, name


def test_config_check_prints_effective_config() -> None:
    result = edgeops("config", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"# effective configuration from {REPO / 'edgeops.yaml'}")
    assert "soak_hours: 24.0" in result.stdout
    assert "max_p95_latency_ms: 50.0" in result.stdout
    assert "config is valid" in result.stderr


def test_config_check_reports_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "edgeops.yaml"
    bad.write_text("version: 1\nrings: {pilot: {path: p}}\nstoer: {}\n")
    result = edgeops("--config", str(bad), "config", "check")
    assert result.returncode == 1
    assert f"configuration error: {bad}:3: stoer: unknown key (did you mean 'store'?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_log_json_emits_json_lines(tmp_path: Path) -> None:
    result = edgeops("--log-json", "data", "synth", "--n", "5", "--out", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records, "expected at least one JSON log line"
    last = records[-1]
    assert last["level"] == "info" and last["msg"].startswith("wrote 5 synthetic LDOs")
    assert last["seed"] == 0
    assert {"ts", "logger"} <= set(last)


def test_human_log_is_plain_text(tmp_path: Path) -> None:
    result = edgeops("data", "synth", "--n", "5", "--out", str(tmp_path / "d"))
    assert result.returncode == 0
    assert " INFO    wrote 5 synthetic LDOs" in result.stderr
    assert not result.stderr.lstrip().startswith("{")


def test_third_party_info_lines_only_with_verbose() -> None:
    import io
    import logging

    from tools.core.log import setup_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        for verbose in (False, True):
            out = io.StringIO()
            setup_logging(verbose=verbose, stream=out)
            logging.getLogger("onnxscript.optimizer").info("Removed 43 unused nodes")
            logging.getLogger("onnx_ir.passes").warning("a library's warning")
            logging.getLogger("edgeops.export").info("exported model.onnx")
            logging.getLogger("training.something").info("a step of ours")
            text = out.getvalue()
            for kept in ("a library's warning", "exported model.onnx", "a step of ours"):
                assert kept in text
            assert ("Removed 43 unused nodes" in text) is verbose
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_usage_errors_exit_2() -> None:
    assert edgeops("data", "synth").returncode == 2  # --n is required
    assert edgeops("no-such-command").returncode == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "synth", "--n", "0"],
        ["data", "seed", "--workers", "-1"],
        ["snapshot", "--out", "x", "--limit", "0"],
        ["train", "--snapshot", "s", "--out", "r", "--nproc", "0"],
        ["pipeline", "run", "--run-dir", "r", "--nproc", "0"],
        ["demo", "--nodes", "0"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_count_flags_take_positive_integers_only(argv: list[str]) -> None:
    result = edgeops(*argv)
    assert result.returncode == 2
    assert "must be at least 1, got" in result.stderr


def test_a_count_flag_that_is_not_a_number_is_a_usage_error() -> None:
    result = edgeops("demo", "--n", "many")
    assert result.returncode == 2
    assert "argument --n: expected an integer >= 1, got 'many'" in result.stderr
