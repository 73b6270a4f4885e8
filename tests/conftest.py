"""Real services for the suite: PostgreSQL, an S3 API server over HTTP, bare git remotes.

Started on demand, once per session, torn down at the end. Locally a service that cannot start skips the
tests that need it, with the reason; under ``CI=true`` it fails them: CI never passes without them.
``EDGEOPS_TEST_PG_DSN`` points the suite at an existing PostgreSQL server instead of a throwaway one
(each test still gets a fresh database of its own there).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from hypothesis import HealthCheck, settings

from tools.core.errors import ServiceError
from tools.kits.devservices import S3Endpoint, ThrowawayPostgres, ThrowawayS3

REPO = Path(__file__).resolve().parent.parent

# Property-based tests (tests/test_hostile_*.py): the same examples on every run and machine (a failure in
# CI reproduces locally), no example database written into the clone, and each example bounded: hostile
# input is answered in well under 5 s, or it is a finding.
settings.register_profile(
    "edgeops", derandomize=True, database=None, deadline=5000, max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
settings.load_profile("edgeops")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
EDGEOPS = str(Path(sys.executable).parent / "edgeops")

# "Another CPU" on this machine. PyTorch picks its vectorised kernels by CPU capability and oneDNN its
# convolution kernels by instruction set; lowering either picks other kernels, which sum in another order
# and round differently, as another CPU would. What a training run learns is asserted under each set (with
# margins that hold on all of them); bit-identical weights are promised within one set only.
# `native` is whatever this CPU offers (AVX2 here, AVX512 on newer servers); `baseline` is the oldest x86-64
# kernels both libraries ship: PyTorch's scalar `default` and oneDNN's SSE4.1.
KERNEL_SETS: dict[str, dict[str, str]] = {
    "native": {},
    "baseline": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
EXPECTED_CAPABILITY = {"baseline": "DEFAULT"}  # what torch.backends.cpu.get_cpu_capability() then reports


def cli(*argv: str) -> int:
    """``edgeops …`` in this process; the CLI sets up its own logging (to stderr), so pytest's capture gets
    its handlers back afterwards."""
    from tools.cli import main

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return main(list(argv))
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def kernel_env(name: str) -> dict[str, str]:
    """This process's environment with kernel set ``name`` applied (and any inherited setting removed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    return {**env, **KERNEL_SETS[name]}


def project_files() -> list[str]:
    """What a clone of this repository holds (plus files not committed yet, when run from a work tree)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


def copy_project(dest: Path, *, installed: bool = False) -> Path:
    """A fresh copy of the repository at ``dest``, as a clone would be. ``installed``: with this checkout's
    ``.venv`` and ``node_modules`` linked in, as after the README's first ``make``."""
    import shutil

    for name in project_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    if installed:
        for name in (".venv", "node_modules"):
            (dest / name).symlink_to(REPO / name, target_is_directory=True)
    return dest


_SERVICE_MARKERS = {"pg_server": "postgres", "pg_dsn": "postgres", "s3_server": "s3", "s3_env": "s3",
                    "s3_bucket": "s3"}  # fmt: skip
_service_info: dict[str, str] = {}
_outcomes: Counter[tuple[str, str]] = Counter()
_db_counter = itertools.count()


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, never a skip)", pytrace=False)
    pytest.skip(reason)


# --- the upstream Argo CRDs (manifests, the rendered pipeline) ---------------------------------------------


@pytest.fixture(scope="session")
def crd_folder() -> Path:
    """The schemas `edgeops validate manifests` uses: vendored, or ``$EDGEOPS_CRD_SCHEMAS`` when set."""
    from tools.gitops.manifests import crd_folder

    return crd_folder()


@pytest.fixture(scope="session")
def crds(crd_folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    from tools.gitops.manifests import load_crd_schemas

    return load_crd_schemas(crd_folder)


# --- git: commits in tests never depend on the machine's global config ----------------------------------


@pytest.fixture(autouse=True, scope="session")
def _git_identity() -> Iterator[None]:
    env = {
        "GIT_AUTHOR_NAME": "edgeops tests",
        "GIT_AUTHOR_EMAIL": "tests@edgeops.invalid",
        "GIT_COMMITTER_NAME": "edgeops tests",
        "GIT_COMMITTER_EMAIL": "tests@edgeops.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def git_remote(tmp_path: Path) -> Path:
    """A bare git repository standing in for GitHub: clone it, push to it."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(remote)], check=True)
    return remote


# --- PostgreSQL ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """DSN of a maintenance database on a real PostgreSQL server."""
    existing = os.environ.get("EDGEOPS_TEST_PG_DSN")
    if existing:
        try:
            psycopg2.connect(existing, connect_timeout=5).close()
        except psycopg2.Error as exc:
            unavailable(f"EDGEOPS_TEST_PG_DSN is set but the server does not answer: {str(exc).strip()}")
        _service_info["postgres"] = "PostgreSQL from EDGEOPS_TEST_PG_DSN"
        yield existing
        return
    server = ThrowawayPostgres()
    try:
        dsn = server.start()
    except ServiceError as exc:
        unavailable(f"PostgreSQL: {exc}")
    _service_info["postgres"] = f"PostgreSQL {server.version}, throwaway server on 127.0.0.1:{server.port}"
    yield dsn
    server.stop()


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"edgeops_test_{os.getpid()}_{next(_db_counter)}"
    admin = psycopg2.connect(pg_server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg2.extensions.make_dsn(pg_server, dbname=name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --- S3 --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Endpoint]:
    server = ThrowawayS3()
    try:
        endpoint = server.start()
    except ServiceError as exc:
        unavailable(f"S3 API server: {exc}")
    _service_info["s3"] = f"S3 API server (moto) over HTTP at {endpoint.url}"
    yield endpoint
    server.stop()


@pytest.fixture
def s3_env(s3_server: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    """The standard AWS variables point at the test server for this test (and its subprocesses)."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: S3Endpoint) -> str:
    """A bucket name no other test uses (not created: code under test creates or expects it)."""
    return f"edgeops-test-{uuid.uuid4().hex[:12]}"


# --- reporting: show that the real services ran ------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in _SERVICE_MARKERS.items():
            if fixture in getattr(item, "fixturenames", ()) and not item.get_closest_marker(marker):
                item.add_marker(marker)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        for marker in ("postgres", "s3"):
            if marker in report.keywords:
                _outcomes[(marker, report.outcome)] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.section("real services")
    for marker, label in (("postgres", "PostgreSQL"), ("s3", "S3 API")):
        info = _service_info.get(marker, f"{label}: not started")
        counts = ", ".join(f"{n} {outcome}" for (m, outcome), n in sorted(_outcomes.items()) if m == marker)
        terminalreporter.write_line(f"{info}: {counts or 'no tests used it'}")


# --- least-privilege roles (docs/database.md) ---------------------------------------------------------

_role_sets = itertools.count()


def doc_grants() -> str:
    text = (REPO / "docs/database.md").read_text()
    (sql,) = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    return sql


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


class Roles:
    """The doc's roles in one test database, under names unique to this test (roles are cluster-wide)."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.dbname = psycopg2.extensions.parse_dsn(admin_dsn)["dbname"]
        self.prefix = f"t{os.getpid()}_{next(_role_sets)}_"
        self.names = {r: self.prefix + r for r in ("owner", "snapshot", "publish", "telemetry")}

    def dsn(self, role: str) -> str:
        return psycopg2.extensions.make_dsn(self.admin_dsn, user=self.names[role])

    @staticmethod
    def _run(dsn: str, *statements: str) -> None:
        """Each statement in autocommit (CREATE ROLE, GRANT, DROP cannot share a transaction block)."""
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()

    def _admin(self, *statements: str) -> None:
        self._run(self.admin_dsn, *statements)

    def create_owner(self) -> None:
        """A plain login role that owns the database (and so its public schema), not a superuser."""
        owner = self.names["owner"]
        self._admin(f'CREATE ROLE "{owner}" LOGIN', f'ALTER DATABASE "{self.dbname}" OWNER TO "{owner}"')

    def grant(self) -> None:
        """docs/database.md's statements, with this test's role names, run by the owner."""
        sql = doc_grants().replace('"edgeops_', f'"{self.prefix}').replace(':"dbname"', f'"{self.dbname}"')
        sql = re.sub(r"\bedgeops_(snapshot|publish|telemetry)\b", lambda m: self.names[m.group(1)], sql)
        # CREATE ROLE needs CREATEROLE: the admin makes the roles, the owner grants on its own tables.
        creates = [s for s in _statements(sql) if s.upper().startswith("CREATE ROLE")]
        grants = [s for s in _statements(sql) if not s.upper().startswith("CREATE ROLE")]
        assert len(creates) == 3 and len(grants) == 9, sql
        self._admin(*creates)
        self._run(self.dsn("owner"), *grants)

    def drop(self) -> None:
        names = list(self.names.values())
        self._admin(f'ALTER DATABASE "{self.dbname}" OWNER TO CURRENT_USER',
                    *(f'DROP OWNED BY "{name}"' for name in names))  # fmt: skip
        postgres = psycopg2.extensions.make_dsn(self.admin_dsn, dbname="postgres")
        self._run(postgres, *(f'DROP ROLE IF EXISTS "{name}"' for name in names))


@pytest.fixture
def pg_roles(pg_dsn: str) -> Iterator[Roles]:
    """docs/database.md's roles in this test's database, its owner made a plain login role."""
    made = Roles(pg_dsn)
    made.create_owner()
    try:
        yield made
    finally:
        made.drop()
