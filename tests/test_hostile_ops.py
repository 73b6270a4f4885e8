"""Issue #19, "Interrupted work" and "Tracebacks instead of errors": operations cut short, or given hostile
arguments, end in a state the next run finishes, or in an error that says what to do; never a traceback.

- publish: the signature upload fails (only that request, through an HTTP proxy in front of the S3 API
  server), or PostgreSQL is down; running it again finishes the bundle, the registry row and published.json.
  A version that holds the model but was damaged in the store is refused by name, never called identical.
- the model-updater: a store that trickles a body (1 byte per 0.5 s) meets the download's overall deadline;
  the node keeps its model, reports reason "deadline", and the next loop installs.
- ``--out`` naming a file, ``--listen`` on a busy port: the project's error with what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from prometheus_client import generate_latest

from tests.conftest import EDGEOPS, REPO, Roles, cli
from tests.test_updater import World, leftovers, served
from tools.artifacts.bundle import BundleError, verify_bundle_uri
from tools.core.config import EvaluationGates
from tools.core.errors import ConfigError, ServiceError
from tools.core.signing import generate_keypair, key_id, private_key_from_pem, public_key_from_pem, sign
from tools.edge.updater import Updater, download_deadline, run_from_args
from tools.kits.devservices import S3Endpoint

PASS_ALL = EvaluationGates(min_subset_accuracy=0.0, max_fp_rate=1.0, max_fn_rate=1.0)


# --- an S3 API server that fails or trickles chosen requests ---------------------------------------------


class S3Faults:
    """An HTTP proxy in front of the S3 API server. Every request is forwarded unchanged, except those whose
    method and key suffix a rule names: ``fail`` answers S3's 500 InternalError (the request never reaches
    the store), ``trickle`` forwards it and sends the response body one byte every ``interval`` seconds.
    boto3 reaches it through ``AWS_ENDPOINT_URL``, as a publisher or a node would reach a store."""

    def __init__(self, upstream: str, *, interval: float = 0.5) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.interval = interval
        self.fail: set[tuple[str, str]] = set()
        self.trickle: set[tuple[str, str]] = set()
        self.failed: list[str] = []
        self.stopped = threading.Event()
        faults = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as boto3's pool expects

            def _matches(self, rules: set[tuple[str, str]]) -> bool:
                path = urllib.parse.unquote(self.path.split("?", 1)[0])
                return any(self.command == m and path.endswith("/" + suffix) for m, suffix in rules)

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self._matches(faults.fail):
                    faults.failed.append(f"{self.command} {self.path}")
                    error = b"<Error><Code>InternalError</Code><Message>injected failure</Message></Error>"
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                upstream = HTTPConnection(*faults.upstream, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                    response = upstream.getresponse()
                    data = response.read()
                    headers = response.getheaders()
                finally:
                    upstream.close()
                self.send_response(response.status, response.reason)
                skip = {"connection", "transfer-encoding", "content-length", "date", "server", "keep-alive"}
                for name, value in headers:
                    if name.lower() not in skip:
                        self.send_header(name, value)
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if not self._matches(faults.trickle):
                    self.wfile.write(data)
                    return
                for index in range(len(data)):
                    if faults.stopped.wait(faults.interval):
                        break
                    self.wfile.write(data[index : index + 1])
                    self.wfile.flush()
                self.close_connection = True

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def s3_faults(s3_env: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Faults]:
    """The proxy, and the AWS environment pointed at it (one attempt per request: a failure is final)."""
    faults = S3Faults(s3_env.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", faults.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    try:
        yield faults
    finally:
        faults.close()


# --- a tiny real run: trained for one epoch, exported, evaluated -------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.config import load_training_config
    from training.data.synth import write_dataset
    from training.evaluate import evaluate_run
    from training.export import export_run
    from training.snapshot import DirSource, SnapshotOptions, build_snapshot
    from training.train import train

    root = tmp_path_factory.mktemp("tiny-run")
    cfg = load_training_config()
    spec = cfg.data_spec()
    write_dataset(root / "ldos", 300, 8, spec)
    build_snapshot(DirSource(root / "ldos"), root / "snap", spec, SnapshotOptions(limit=10**6))
    train(root / "snap", cfg.model_copy(update={"epochs": 1}), root / "run")
    export_run(root / "run")
    assert evaluate_run(root / "snap", root / "run", PASS_ALL, None)["passed"]
    return root / "run"


class Keys:
    """A release-signing key pair, and its PEM files in ``tmp``."""

    def __init__(self, tmp: Path, name: str = "release") -> None:
        private_pem, public_pem = generate_keypair()
        self.private = private_key_from_pem(private_pem, source="test")
        self.public = public_key_from_pem(public_pem, source="test")
        self.private_path, self.public_path = tmp / f"{name}.key", tmp / f"{name}.pub"
        self.private_path.write_bytes(private_pem)
        self.public_path.write_bytes(public_pem)


@pytest.fixture
def run(tiny_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    (copy / "published.json").unlink(missing_ok=True)
    return copy


def publish(run: Path, store: str, keys: Keys, **kwargs: Any) -> Any:
    from training.publish import publish_run

    return publish_run(run, store, private_key=keys.private, gpu_hour_usd=2.5, **kwargs)


# --- publish: interrupted, then run again ------------------------------------------------------------------


def test_a_publish_whose_signature_upload_failed_is_finished_by_running_it_again(
    run: Path, tmp_path: Path, s3_faults: S3Faults, s3_bucket: str
) -> None:
    keys = Keys(tmp_path)
    store = f"s3://{s3_bucket}/edge-models"
    s3_faults.fail.add(("PUT", "SHA256SUMS.sig"))
    with pytest.raises(ServiceError) as failed:
        publish(run, store, keys)
    message = str(failed.value)
    assert "SHA256SUMS.sig" in message and "InternalError" in message, message
    assert "is incomplete, so no node installs it" in message and "run the same publish again" in message
    assert s3_faults.failed and all(  # only that request failed (boto3 may have retried it once)
        line.startswith("PUT ") and line.endswith("/models/v1.0/SHA256SUMS.sig") for line in s3_faults.failed
    )
    assert not (run / "published.json").exists()
    uri = f"{store}/models/v1.0/"
    with pytest.raises(BundleError, match=r"SHA256SUMS\.sig is missing"):
        verify_bundle_uri(uri, keys.public)

    s3_faults.fail.clear()
    again = publish(run, store, keys)
    assert (again.version, again.uri, again.outcome) == ("v1.0", uri, "published")  # finished, not identical
    assert json.loads((run / "published.json").read_text())["version"] == "v1.0"
    verify = subprocess.run([EDGEOPS, "verify", uri, "--public-key", str(keys.public_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert verify.returncode == 0 and verify.stdout.startswith("OK v1.0"), verify.stderr
    assert publish(run, store, keys).outcome == "identical"  # now whole: nothing more to do


def test_a_publish_with_postgresql_down_registers_when_run_again(
    run: Path, tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str, pg_roles: Roles
) -> None:
    """The rerun registers as docs/database.md's publish role (SELECT, INSERT, UPDATE on model_versions),
    after the owner ran the migration: what a fork grants its publish step."""
    from tools.core.schema import migrate
    from training.data.seed import ensure_ldos_table

    keys = Keys(tmp_path)
    store = f"s3://{s3_bucket}/edge-models"
    env = {**os.environ, "EDGEOPS_SIGNING_KEY_FILE": str(keys.private_path)}
    cmd = [EDGEOPS, "publish", "--run", str(run), "--store", store]
    down = subprocess.run([*cmd, "--pg", "postgresql://edgeops@127.0.0.1:9/backend"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert down.returncode == 1 and "Traceback" not in down.stderr, down.stderr
    assert "registering v1.0: cannot connect to PostgreSQL at 127.0.0.1:9/backend" in down.stderr
    assert "The bundle is published; once PostgreSQL answers, run publish again" in down.stderr
    assert not (run / "published.json").exists()
    verify_bundle_uri(f"{store}/models/v1.0/", keys.public)  # the bundle itself is whole and signed

    conn = psycopg2.connect(pg_roles.dsn("owner"))
    try:
        ensure_ldos_table(conn)
        migrate(conn, telemetry=True)
    finally:
        conn.close()
    pg_roles.grant()
    as_publish = [*cmd, "--pg", pg_roles.dsn("publish")]
    up = subprocess.run(as_publish, cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                        check=False)  # fmt: skip
    assert up.returncode == 0, up.stderr
    assert "already published as v1.0: nothing to do" in up.stderr
    assert "registered in model_versions" in up.stderr
    assert json.loads((run / "published.json").read_text())["version"] == "v1.0"
    with psycopg2.connect(pg_roles.dsn("owner")) as conn, conn.cursor() as cur:
        cur.execute("SELECT version, bundle_uri FROM model_versions")
        assert cur.fetchall() == [("v1.0", f"{store}/models/v1.0/")]


# --- publish: a damaged version is refused, never "identical" ---------------------------------------------


def _reject(text: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / "SHA256SUMS").write_text((folder / "SHA256SUMS").read_text() + text)

    return damage


def _flip(name: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[:20] + bytes([data[20] ^ 1]) + data[21:])

    return damage


def _foreign_signature(folder: Path) -> None:
    other = private_key_from_pem(generate_keypair()[0], source="other")
    (folder / "SHA256SUMS.sig").write_text(sign(other, (folder / "SHA256SUMS").read_bytes()) + "\n")


def _sums_edited_unsigned(folder: Path) -> None:
    sums = folder / "SHA256SUMS"
    lines = sums.read_text().split("\n")
    sums.write_text("\n".join(("0" * 64 + x[64:]) if x.endswith("model.json") else x for x in lines))
    (folder / "SHA256SUMS.sig").unlink()


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "signed by an untrusted key": (_foreign_signature, r"SHA256SUMS\.sig does not sign SHA256SUMS under"),
    "content changed": (_flip("model.onnx"), r"model\.onnx does not match SHA256SUMS"),
    "card changed": (_flip("model.json"), r"model\.json does not match SHA256SUMS"),
    "SHA256SUMS unreadable": (_reject("garbage\n"), r"SHA256SUMS line \d+: 'garbage'"),
    "SHA256SUMS edited, unsigned": (_sums_edited_unsigned, r"model\.json does not match SHA256SUMS"),
    "an extra file": (lambda f: (f / "notes.txt").write_text("hi\n"), r"files SHA256SUMS does not list"),
}


def _store_state(store: Path) -> dict[str, tuple[int, str]]:
    return {
        str(p.relative_to(store)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_version_of_this_model_is_refused_with_what_to_do(
    run: Path, tmp_path: Path, damage: str
) -> None:
    keys = Keys(tmp_path)
    store = tmp_path / "store"
    assert publish(run, f"file://{store}", keys).version == "v1.0"
    (run / "published.json").unlink()
    spoil, expected = DAMAGE[damage]
    spoil(store / "models" / "v1.0")
    before = _store_state(store)

    with pytest.raises(BundleError, match=expected) as refused:
        publish(run, f"file://{store}", keys)
    message = str(refused.value)
    assert f"file://{store}/models/v1.0/ holds this model but is damaged" in message
    assert "delete" in message and "run publish again: it writes v1.0 whole" in message
    assert _store_state(store) == before and not (run / "published.json").exists()  # nothing written

    if damage == "signed by an untrusted key":  # the advice works
        shutil.rmtree(store / "models" / "v1.0")
        again = publish(run, f"file://{store}", keys)
        assert (again.version, again.outcome) == ("v1.0", "published")
        verify_bundle_uri(again.uri, keys.public)


def test_publish_restores_only_what_it_can_prove(run: Path, tmp_path: Path) -> None:
    """A lost content file (its bytes are listed in the signed SHA256SUMS) and a lost card are restored;
    a signature made by a key the project still trusts (a rotation) is kept, and the version identical."""
    old, new = Keys(tmp_path, "old"), Keys(tmp_path, "new")
    store = tmp_path / "store"
    first = publish(run, f"file://{store}", old)
    folder = store / "models" / "v1.0"
    signature = (folder / "SHA256SUMS.sig").read_bytes()
    (folder / "golden.json").unlink()
    (folder / "MODEL_CARD.md").unlink()

    repaired = publish(run, f"file://{store}", old)
    assert (repaired.version, repaired.outcome) == ("v1.0", "published")
    assert verify_bundle_uri(first.uri, old.public).files.keys() >= {"golden.json", "MODEL_CARD.md"}

    trusted = {key_id(k.public): k.public for k in (old, new)}
    rotated = publish(run, f"file://{store}", new, trusted_keys=trusted)
    assert (rotated.version, rotated.outcome) == ("v1.0", "identical")
    assert (folder / "SHA256SUMS.sig").read_bytes() == signature
    with pytest.raises(BundleError, match=r"SHA256SUMS\.sig does not sign SHA256SUMS"):
        publish(
            run, f"file://{store}", new
        )  # the old key not among the trusted: the signature proves nothing


# --- the updater: an overall deadline per download ---------------------------------------------------------


def test_download_deadline_policy() -> None:
    assert download_deadline(1 << 20, 120.0, 64 * 1024) == 120.0  # a small bundle gets the floor
    assert download_deadline(10 << 20, 120.0, 64 * 1024) == 160.0  # a big one, what 64 KiB/s needs
    with pytest.raises(ConfigError, match="download_deadline 0"):
        key = public_key_from_pem(generate_keypair()[1], source="t")
        Updater(Path("/nonexistent"), key, download_deadline=0)


def test_the_flags_of_the_download_deadline(tmp_path: Path) -> None:
    from tools.edge.updater import build_parser

    base = ["run", "--release", "r", "--root", str(tmp_path), "--public-key", "k"]
    args = build_parser().parse_args(base)
    assert (args.download_deadline, args.download_min_rate) == (120.0, 64.0)
    for flag in ("--download-deadline", "--download-min-rate"):
        with pytest.raises(ConfigError, match=f"{flag} -1: give a positive number"):
            run_from_args(build_parser().parse_args([*base, flag, "-1"]))


def test_a_trickling_download_stops_at_its_deadline_and_the_next_loop_installs(
    tmp_path: Path, s3_faults: S3Faults, s3_bucket: str
) -> None:
    keys = Keys(tmp_path)
    world = World(tmp_path, f"s3://{s3_bucket}/edge", keys.private, keys.public, keys.public_path)
    v10, v11 = world.publish("v1.0"), world.publish("v1.1")
    root = tmp_path / "node"
    with world.updater(root, download_deadline=1.0, download_min_rate=1e12) as updater:
        assert updater.reconcile(v10).outcome == "installed"
        s3_faults.trickle.add(("GET", "v1.1/model.onnx"))  # 1 byte per 0.5 s: a whole model takes hours

        start = time.monotonic()
        result = updater.reconcile(v11)
        assert time.monotonic() - start < 3.0
        assert (result.outcome, result.reason) == ("failed", "deadline"), result
        assert (
            "ran past its deadline of 1 s" in result.detail and "stopped during model.onnx" in result.detail
        )
        assert updater.current_version() == "v1.0" and served(root) == world.models["v1.0"]
        assert leftovers(root) == [] and not (root / "v1.1").exists()  # nothing half-installed
        ready, why = updater.ready()
        assert not ready and "failed (deadline)" in why
        metrics = generate_latest(updater.registry).decode()
        assert 'edgeops_updater_failures_total{reason="deadline"} 1.0' in metrics
        # The worker's socket was cut: it stops at its next read instead of trickling on.
        for _ in range(30):
            if not any(t.name == "updater-download" for t in threading.enumerate()):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the download's worker thread still runs after its deadline")

        s3_faults.trickle.clear()  # the link recovers: the next loop installs
        assert updater.reconcile(v11).outcome == "installed"
        assert served(root) == world.models["v1.1"]


# --- --out naming a file, --listen on a busy port ---------------------------------------------------------


OUT_COMMANDS = {
    "data synth": ["data", "synth", "--n", "3", "--out"],
    "snapshot": ["snapshot", "--out"],
    "train": ["train", "--snapshot", "SNAP", "--out"],
    "train --nproc 2": ["train", "--snapshot", "SNAP", "--nproc", "2", "--out"],
    "pipeline render": ["pipeline", "render", "--out"],
    "pipeline run": ["pipeline", "run", "--run-dir"],
}


@pytest.mark.parametrize("inside", [False, True], ids=["a file", "inside a file"])
@pytest.mark.parametrize("command", OUT_COMMANDS)
def test_an_output_folder_that_is_a_file_is_an_error_that_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, inside: bool
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me\n")
    out = blocker / "sub" if inside else blocker
    argv = [a.replace("SNAP", str(tmp_path)) for a in OUT_COMMANDS[command]]
    assert cli("--config", str(REPO / "edgeops.yaml"), *argv, str(out)) == 1
    err = capsys.readouterr().err
    flag = argv[-1]
    if inside:
        assert f"{flag} {out}: {blocker} is a file, so no folder can be made inside it; name a folder" in err
    else:
        assert f"{flag} {out} is a file; name a folder (it is created)" in err
    assert "Traceback" not in err and blocker.read_text() == "keep me\n"


def test_output_folder_checks_without_making_anything(tmp_path: Path) -> None:
    from tools.core.errors import EdgeopsError
    from tools.core.fsutil import output_folder

    assert output_folder(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # the writer makes it, so a command that fails first leaves nothing
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    with pytest.raises(EdgeopsError, match=r"--out .*dangling is a link to nothing"):
        output_folder(tmp_path / "dangling", "--out")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(EdgeopsError, match=r"this user cannot write in .*locked; name a folder you can"):
            output_folder(locked / "run", "--out")


def test_the_training_entry_point_and_export_refuse_a_file_for_their_folder(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.train import main as train_main

    blocker = tmp_path / "a-file"
    blocker.write_text("keep me\n")
    assert train_main(["--snapshot", str(tmp_path), "--out", str(blocker)]) == 1  # what torchrun starts
    assert f"--out {blocker} is a file; name a folder" in capsys.readouterr().err

    shutil.rmtree(run / "export")
    (run / "export").write_text("keep me\n")
    assert cli("export", "--run", str(run)) == 1
    err = capsys.readouterr().err
    assert f"{run / 'export'} is a file; export writes its files into that folder" in err
    assert "Traceback" not in err


@pytest.fixture
def busy_port() -> Iterator[int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


@pytest.mark.parametrize("command", ["updater run", "inference serve"])
def test_listen_on_a_busy_port_is_an_error_that_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], busy_port: int, command: str
) -> None:
    keys = Keys(tmp_path)
    listen = ["--listen", f"127.0.0.1:{busy_port}"]
    if command == "updater run":
        argv = ["updater", "run", "--release", str(tmp_path / "release.yaml"), "--root", str(tmp_path / "m"),
                "--public-key", str(keys.public_path), "--once", *listen]  # fmt: skip
    else:
        argv = ["inference", "serve", "--root", str(tmp_path / "m"), "--poll-interval", "5", *listen]
    (tmp_path / "m").mkdir()
    assert cli(*argv) == 1
    err = capsys.readouterr().err
    assert (
        f"cannot listen on 127.0.0.1:{busy_port}: address already in use; pick another --listen port" in err
    )
    assert "Traceback" not in err
