"""Hostile DSNs and URLs (issue #19, "Secrets"): no password reaches a terminal, however malformed its DSN.

libpq echoes the part of a DSN it cannot read, and with an unencoded ``@`` in a password that part is a
piece of the password. Every command that takes ``--pg`` (or ``$EDGEOPS_PG_DSN``) is run on a checkout where
it reaches the database (pilot runs a release, so status, promote and guard read its telemetry), with each
DSN below, and its whole output must hold no secret and no traceback. The property-based tests throw
random passwords at the redaction and at ``tools.core.pg.connect``. The CLI's last-resort net for library
exceptions (psycopg2, botocore, OSError) is tested last.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tools.cli.config
from tests.conftest import REPO
from tests.releasekit import git, keys, make_checkout, publish
from tools.cli import main
from tools.core.errors import EdgeopsError
from tools.core.redact import dsn_secrets, known_secrets, redact_dsn, scrub
from tools.gitops.forge import LocalForge
from tools.gitops.promotion import Workspace, propose

EDGEOPS = str(Path(sys.executable).parent / "edgeops")
# Port 9 (discard) refuses at once: a well-formed DSN fails fast, after libpq has read all of it.
HOST = "127.0.0.1"

# (DSN, the strings that must never be shown): each secret holds "S3cr3t", so a leak is easy to spot.
HOSTILE: list[tuple[str, list[str]]] = [
    ("postgresql://u:Pa55%zzS3cr3t@h/db", ["Pa55%zzS3cr3t", "S3cr3t"]),  # not percent-encoding
    ("postgresql://u:S3cr3t@[::1/db", ["S3cr3t"]),  # an IPv6 host without its ']'
    (f"host={HOST} port=9 dbname=x password='a b S3cr3t'", ["a b S3cr3t", "S3cr3t"]),  # quoted, spaces
    (f"postgresql://u:S3cr3tPort@{HOST}:notaport/db", ["S3cr3tPort"]),  # the port is no number
    (f"host={HOST} password=S3cr3tKey bogus=1", ["S3cr3tKey"]),  # a keyword libpq does not know
    (f"postgresql://u:p@ss:w0rd-S3cr3t@{HOST}:9/db", ["w0rd-S3cr3t", "p@ss"]),  # '@' and ':' unencoded
    (f"postgresql://u:pa/ss-S3cr3t@{HOST}:9/db", ["ss-S3cr3t"]),  # '/' unencoded
    (f"host={HOST} password='unterminated S3cr3t", ["unterminated S3cr3t", "S3cr3t"]),  # no closing quote
    (f"postgresql://u:{quote('p@ss:S3cr3t/x', safe='')}@{HOST}:9/db", ["p@ss:S3cr3t/x", "S3cr3t"]),  # fine
    (f"postgresql://{HOST}:9/db?password=S3cr3tQ&sslmode=bogus", ["S3cr3tQ"]),  # libpq refuses the mode
    (f"host={HOST} port=9 password=S3cr\\'3t dbname=x", ["S3cr'3t", "S3cr\\'3t"]),  # an escaped quote
    ("S3cr3tPastedAlone", ["S3cr3tPastedAlone"]),  # the password pasted where the DSN goes
]
IDS = [f"dsn{i}" for i in range(len(HOSTILE))]


def assert_clean(output: str, secrets: list[str]) -> None:
    assert "Traceback" not in output, output
    for secret in secrets:
        assert secret not in output, f"{secret!r} shown in:\n{output}"


# --- the redaction -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dsn", "secrets"), HOSTILE, ids=IDS)
def test_redact_dsn_hides_the_password_of_every_hostile_dsn(dsn: str, secrets: list[str]) -> None:
    assert_clean(redact_dsn(dsn), [s for s in secrets if s != "p@ss"])  # u:***@… keeps nothing of it


def test_scrub_hides_positional_secrets_and_keeps_the_rest() -> None:
    text = "connect to postgresql://u:pw-x@db:5432/x?sslmode=require failed; host=h password='a b' dbname=x"
    out = scrub(text)
    assert out == (
        "connect to postgresql://u:***@db:5432/x?sslmode=require failed; host=h password=*** dbname=x"
    )
    assert scrub("https://minio:9000/bucket, ssh://git@github.com/a/b") == (
        "https://minio:9000/bucket, ssh://git@github.com/a/b"
    )  # no password there: nothing hidden
    assert scrub("GET https://s3/x?X-Amz-Signature=abc123&x=1") == "GET https://s3/x?X-Amz-Signature=***&x=1"
    # The literal, also as libpq, a URL and Python's repr quote it.
    secrets = dsn_secrets("postgresql://u:p%40ss%20S3@h/db")
    for shown in ('token: "p@ss S3"', "p%40ss%20S3", "p@ss%20S3"):
        assert "S3" not in scrub(shown, *secrets), shown


def test_known_secrets_gather_the_environments_dsn_urls_and_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEOPS_PG_DSN", "postgresql://u:EnvS3cr3t@h/db")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:UrlS3cr3t@minio:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "AwsS3cr3t")
    found = known_secrets("host=h password=FlagS3cr3t")
    assert {"EnvS3cr3t", "UrlS3cr3t", "AwsS3cr3t", "FlagS3cr3t"} <= set(found)


def test_s3_errors_and_store_uris_hide_the_secrets_of_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import EndpointConnectionError

    from tools.core.errors import ServiceError, StoreError
    from tools.core.s3 import parse_s3_uri, s3_errors
    from tools.core.store import open_store

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:End%zzS3cr3t@minio:9000")
    with pytest.raises(ServiceError) as info, s3_errors("reading s3://b/k"):
        raise EndpointConnectionError(endpoint_url="http://minio:End%zzS3cr3t@minio:9000/b/k")
    assert "S3cr3t" not in str(info.value) and "http://minio:***@minio:9000" in str(info.value)
    for uri in ("s3://AKIA:UriS3cr3t@bucket/x", "https://k:UriS3cr3t@minio:9000/bucket"):
        with pytest.raises(StoreError) as store_error:
            open_store(uri)
        assert "UriS3cr3t" not in str(store_error.value) and ":***@" in str(store_error.value)
    with pytest.raises(StoreError, match=r"the part before the first '/' is not a valid bucket") as bucket:
        parse_s3_uri("s3://AKIA:UriS3cr3t@bucket/x")
    assert "UriS3cr3t" not in str(bucket.value)


# Passwords from a broad alphabet: every printable class, spaces, quotes, '%', '@', ':', '/', non-ASCII.
PASSWORDS = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(" '\"\\%@:/?#&=;,\t"), min_size=8,
    max_size=40,
).filter(lambda pw: len(set(pw)) >= 5 and pw.strip() == pw)  # fmt: skip


def _forms(password: str) -> list[str]:
    """The password in each DSN form a person writes: encoded or not, quoted or not."""
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    return [
        f"postgresql://u:{quote(password, safe='')}@{HOST}:9/db",  # as it should be
        f"postgresql://u:{password}@{HOST}:9/db",  # pasted raw
        f"host={HOST} port=9 dbname=x user=u password='{escaped}'",  # as it should be
        f"host={HOST} port=9 dbname=x user=u password={password}",  # unquoted
        f"postgresql://{HOST}:9/db?user=u&password={quote(password, safe='')}",
    ]


@given(password=PASSWORDS)
def test_redaction_never_shows_a_random_password(password: str) -> None:
    assume("***" not in password)
    for dsn in _forms(password):
        if " " in password and "password=" in dsn and "'" not in dsn.split("password=")[1][:1]:
            continue  # unquoted with a space: libpq itself cannot tell where it ends (connect says so)
        assert password not in redact_dsn(dsn), dsn


@given(password=PASSWORDS)
def test_connect_errors_never_show_a_random_password(password: str) -> None:
    from tools.core.pg import connect, describe_dsn

    for dsn in _forms(password):
        with pytest.raises(EdgeopsError) as info:
            connect(dsn, connect_timeout=2)
        assert password not in str(info.value), dsn
        assert password not in describe_dsn(dsn), dsn


# --- the commands that take --pg ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this repository whose pilot runs v1.0: status, promote and guard read its telemetry."""
    tmp = tmp_path_factory.mktemp("secrets")
    remote = tmp / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(remote)], check=True)
    k = keys()
    store = f"file://{tmp / 'store'}"
    work = make_checkout(tmp, remote, k, store=store)
    forge = LocalForge(remote)
    ws = Workspace.open(work / "edgeops.yaml", forge=forge)
    outcome = propose(ws, ring="pilot", bundle_uri=publish(store, "v1.0", k), private_key=k.private)
    forge.merge_pr(outcome.pr.number)
    git(work, "fetch", "--quiet", "origin")
    git(work, "merge", "--quiet", "--ff-only", "origin/main")
    return work


@pytest.fixture(scope="module")
def ldos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.config import load_training_config
    from training.data.synth import write_dataset

    out = tmp_path_factory.mktemp("ldos")
    write_dataset(out, 2, 0, load_training_config().data_spec())
    return out


@pytest.fixture
def commands(checkout: Path, ldos: Path, tmp_path: Path) -> dict[str, tuple[Path, list[str]]]:
    """Each command that reads a DSN: (where it runs, its arguments without the DSN)."""
    return {
        "data seed": (REPO, ["data", "seed", "--data-path", str(ldos), "--s3", "s3://bucket-x/ldos"]),
        "snapshot": (REPO, ["snapshot", "--source", "pg+s3", "--s3", "s3://bucket-x/ldos",
                            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "never")]),
        "status": (checkout, ["status"]),
        "promote": (checkout, ["promote", "--from", "pilot", "--dry-run"]),
        "guard": (checkout, ["guard", "--ring", "pilot", "--dry-run"]),
    }  # fmt: skip


Run = Callable[..., tuple[int, str]]


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Run]:
    """``edgeops ARGV`` run in this process (the same ``main`` the installed command calls): its exit code
    and everything it printed."""
    monkeypatch.delenv("EDGEOPS_CONFIG", raising=False)
    monkeypatch.delenv("EDGEOPS_PG_DSN", raising=False)

    def run(cwd: Path, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        monkeypatch.chdir(cwd)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        code = main(argv)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    yield run


COMMANDS = ["data seed", "snapshot", "status", "promote", "guard"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("dsn", "secrets"), HOSTILE, ids=IDS)
def test_no_command_shows_a_hostile_dsns_password(
    command: str, dsn: str, secrets: list[str], commands: dict[str, tuple[Path, list[str]]], in_process: Run
) -> None:
    cwd, argv = commands[command]
    code, output = in_process(cwd, [*argv, "--pg", dsn])
    assert code == 1 and "PostgreSQL" in output, output
    assert_clean(output, secrets)
    code, output = in_process(cwd, argv, {"EDGEOPS_PG_DSN": dsn})
    assert code == 1 and "PostgreSQL" in output, output
    assert_clean(output, secrets)


@pytest.mark.parametrize("command", COMMANDS)
def test_the_installed_command_says_where_a_malformed_dsn_came_from(
    command: str, commands: dict[str, tuple[Path, list[str]]]
) -> None:
    cwd, argv = commands[command]
    dsn, secrets = HOSTILE[0]
    env = {k: v for k, v in os.environ.items() if k != "EDGEOPS_CONFIG"}
    result = subprocess.run(
        [EDGEOPS, *argv], cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
        env={**env, "EDGEOPS_PG_DSN": dsn},
    )  # fmt: skip
    assert result.returncode == 1
    assert "malformed PostgreSQL DSN (from $EDGEOPS_PG_DSN)" in result.stderr, result.stderr
    assert "percent-encoded" in result.stderr or "'%'" in result.stderr
    assert_clean(result.stdout + result.stderr, secrets)


# --- the CLI's last-resort net -----------------------------------------------------------------------------


def _failing_with(exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(args: object) -> int:
        raise exc

    monkeypatch.setattr(tools.cli.config, "cmd_check", handler)


def _net_cases() -> list[tuple[BaseException, str]]:
    import psycopg2
    from botocore.exceptions import ClientError, EndpointConnectionError

    pg = psycopg2.OperationalError(
        'connection to "postgresql://u:NetS3cr3t@db/x" failed: server closed the connection\nDETAIL: x'
    )
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")
    unreachable = EndpointConnectionError(endpoint_url="http://k:UrlS3cr3t@minio:9000/b")
    missing = FileNotFoundError(2, "No such file or directory", "/run/secrets/x")
    return [
        (pg, "PostgreSQL failed: connection to \"postgresql://u:***@db/x\" failed: server closed the "
             "connection; check the server is up"),
        (denied, "S3 failed (ClientError): An error occurred (AccessDenied) when calling the GetObject "
                 "operation: no"),
        (unreachable, "S3 failed (EndpointConnectionError): Could not connect to the endpoint URL: "
                      '"http://k:***@minio:9000/b"'),
        (missing, "No such file or directory: /run/secrets/x"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(4))
def test_the_cli_turns_escaped_service_and_os_failures_into_one_line(
    case: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    exc, expected = _net_cases()[case]
    _failing_with(exc, monkeypatch)
    assert main(["config", "check"]) == 1
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err
    assert "S3cr3t" not in err


def test_the_net_shows_a_scrubbed_traceback_with_verbose_and_lets_bugs_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGEOPS_PG_DSN", "host=db password=EnvS3cr3t")
    exc = _net_cases()[0][0]
    _failing_with(type(exc)("libpq: password=EnvS3cr3t; EnvS3cr3t again"), monkeypatch)
    assert main(["-v", "config", "check"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "EnvS3cr3t" not in err and "PostgreSQL failed" in err, err
    _failing_with(RuntimeError("a bug"), monkeypatch)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["config", "check"])
