"""The set-up promises of `make test`: missing services fail under CI=true, PostgreSQL gets installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PG_TEST = "tests/test_services.py::test_postgres_is_a_real_server"


def run_pytest(env_overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_overrides}
    return subprocess.run(
        [sys.executable, "-m", "pytest", PG_TEST, "-p", "no:cacheprovider", "-q"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_missing_postgres_fails_under_ci_and_skips_locally() -> None:
    dead = "postgresql://nobody@127.0.0.1:9/none"
    in_ci = run_pytest({"CI": "true", "EDGEOPS_TEST_PG_DSN": dead})
    assert in_ci.returncode == 1, in_ci.stdout
    assert "CI=true: a missing service is a failure, never a skip" in in_ci.stdout
    assert "1 error" in in_ci.stdout

    local = run_pytest({"CI": "", "EDGEOPS_TEST_PG_DSN": dead})
    assert local.returncode == 0, local.stdout
    assert "1 skipped" in local.stdout


def test_make_installs_postgres_binaries_with_apt_when_missing(tmp_path: Path) -> None:
    """With no initdb anywhere, `make postgres-binaries` runs apt-get install postgresql (recorded by a
    stand-in apt-get on PATH; the real one would need the network and root)."""
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    log = tmp_path / "apt.log"
    apt = fakebin / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    apt.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "EDGEOPS_TEST_PG_DSN"}
    env["PATH"] = f"{fakebin}:/usr/bin:/bin"
    if os.geteuid() != 0:
        result = subprocess.run(
            ["make", "--no-print-directory", "postgres-binaries", "PG_INITDB_GLOB=/nonexistent/initdb"],
            cwd=REPO, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode != 0
        assert "PostgreSQL server binaries (initdb, pg_ctl) are missing" in result.stderr
        return
    result = subprocess.run(
        ["make", "--no-print-directory", "postgres-binaries", "PG_INITDB_GLOB=/nonexistent/initdb"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("update")
    assert "install" in calls[1] and calls[1].endswith("postgresql")

    # When the binaries are there, nothing is installed.
    log.unlink()
    present = subprocess.run(
        ["make", "--no-print-directory", "postgres-binaries"],
        cwd=REPO, env={**env, "PATH": os.environ["PATH"]},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert present.returncode == 0
    assert not log.exists()
