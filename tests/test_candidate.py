"""Evaluate, export, model card, publish and verify: a run becomes a signed, immutable candidate bundle."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import boto3
import numpy as np
import psycopg2
import pytest

from tests.conftest import EDGEOPS, REPO, Roles
from tools.core.config import EvaluationGates
from tools.core.errors import EdgeopsError, ServiceError
from tools.core.signing import generate_keypair, load_public_key
from tools.kits.devservices import S3Endpoint
from training.config import load_training_config
from training.data.seed import ensure_ldos_table
from training.data.synth import write_dataset
from training.evaluate import evaluate_run, load_fleet_model
from training.export import export_run
from training.publish import publish_run
from training.snapshot import DirSource, SnapshotOptions, build_snapshot
from training.train import train

SPEC = load_training_config().data_spec()
LOOSE = EvaluationGates(min_subset_accuracy=0.5, max_regression_vs_fleet=0.01, min_recall={}, max_fp_rate=0.5,
                        max_fn_rate=0.5)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A snapshot, a good run and a deliberately worse run (one epoch), both evaluated and exported."""
    root = tmp_path_factory.mktemp("release")
    write_dataset(root / "ldos", 3000, 8, SPEC)
    build_snapshot(DirSource(root / "ldos"), root / "snap", SPEC, SnapshotOptions(limit=10**6))
    cfg = load_training_config()
    train(root / "snap", cfg.model_copy(update={"epochs": 20}), root / "good")
    train(root / "snap", cfg.model_copy(update={"epochs": 1, "lr": 1e-4, "seed": 3}), root / "bad")
    for run in ("good", "bad"):
        export_run(root / run)
    private, public = generate_keypair()
    (root / "release.key").write_bytes(private)
    (root / "release.pub").write_bytes(public)
    return {"root": root, "snap": root / "snap", "good": root / "good", "bad": root / "bad"}


def key_env(world: dict[str, Path]) -> dict[str, str]:
    return {"EDGEOPS_SIGNING_KEY_FILE": str(world["root"] / "release.key")}


def private_key(world: dict[str, Path]) -> object:
    from tools.core.signing import load_private_key

    return load_private_key(key_env(world))


def test_export_parity_latency_golden_and_engine_status(world: dict[str, Path]) -> None:
    report = json.loads((world["good"] / "export" / "export.json").read_text())
    assert report["parity"]["max_abs_diff"] <= 1e-4 and report["parity"]["decision_flips"] == 0
    assert report["parity"]["rows"] > 200
    for batch in ("batch_1", "batch_64"):
        lat = report["latency_cpu_onnxruntime"][batch]
        assert 0 < lat["p50_ms"] <= lat["p99_ms"] < 1000
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert report["engine"] == {"built": False, "reason": "TensorRT unavailable on this runner"}
    golden = json.loads((world["good"] / "export" / "golden.json").read_text())
    assert len(golden["expected"]["probabilities"]) == 9
    assert golden["inputs"]["asset_id"][-1] == 2**40  # the unknown-id path is part of the health check
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(world["good"] / "export" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    feed = {k: np.asarray(v, dtype=golden["dtypes"][k]) for k, v in golden["inputs"].items()}
    np.testing.assert_allclose(
        session.run(["probabilities"], feed)[0], golden["expected"]["probabilities"], atol=1e-6
    )


def test_edgeops_export_prints_the_products_steps_only(world: dict[str, Path], tmp_path: Path) -> None:
    """No third-party INFO chatter: onnxscript's optimizer alone logged ~500 lines per export."""
    run = tmp_path / "run"
    shutil.copytree(world["good"], run, ignore=shutil.ignore_patterns("export"))
    result = subprocess.run([EDGEOPS, "export", "--run", str(run)], cwd=REPO, capture_output=True, text=True,
                            timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    assert len(lines) <= 3, lines
    exported = re.compile(r" INFO +exported .*model\.onnx: parity max \|diff\|")
    assert any(exported.search(line) for line in lines), lines
    assert not any(word in result.stderr for word in ("constant folding", "unused nodes", "unused functions"))
    verbose = subprocess.run([EDGEOPS, "--verbose", "export", "--run", str(run)], cwd=REPO,
                             capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert verbose.returncode == 0 and "unused nodes" in verbose.stderr  # --verbose still shows everything


def test_gates_without_fleet_and_a_worse_candidate_fails_regression(
    world: dict[str, Path], tmp_path: Path
) -> None:
    first = evaluate_run(world["snap"], world["good"], LOOSE, None)
    assert first["passed"] and first["fleet"] is None
    regression = next(g for g in first["gates"] if g["name"] == "max_regression_vs_fleet")
    assert regression["passed"] and "no fleet model yet" in regression["detail"]

    strict = EvaluationGates(min_subset_accuracy=0.999, min_recall={"bearing_wear": 0.9999}, max_fp_rate=0.0)
    failed = evaluate_run(world["snap"], world["good"], strict, None)
    assert not failed["passed"]
    bad_names = {g["name"] for g in failed["gates"] if not g["passed"]}
    assert "min_subset_accuracy" in bad_names
    assert all(g["value"] is not None for g in failed["gates"] if g["name"] != "max_regression_vs_fleet")

    # Publish the good model and make it the fleet's release; then the worse candidate must regress.
    store = tmp_path / "store"
    evaluate_run(world["snap"], world["good"], LOOSE, None)
    outcome = publish_run(world["good"], f"file://{store}", private_key=private_key(world), gpu_hour_usd=2.5)
    env = tmp_path / "environments"
    (env / "fleet").mkdir(parents=True)
    shutil.copy(world["root"] / "release.pub", env / "release-signing.pub")
    from tools.artifacts.bundle import verify_bundle_uri
    from tools.artifacts.release import make_release, render_release
    from tools.core.signing import load_public_key

    files = verify_bundle_uri(outcome.uri, load_public_key(env / "release-signing.pub")).files
    interface = json.loads((store / "models" / "v1.0" / "model.json").read_text())["interface"]
    wanted = {n: files[n] for n in ("model.onnx", "golden.json")}
    release = make_release(
        private_key(world), version=outcome.version, interface=interface, bundle=outcome.uri, files=wanted
    )
    (env / "fleet" / "release.yaml").write_text(render_release(release, ring="fleet"))
    fleet = load_fleet_model(env / "fleet" / "release.yaml", env / "release-signing.pub")
    assert fleet is not None and fleet.version == "v1.0"

    worse = evaluate_run(world["snap"], world["bad"], LOOSE, fleet)
    gate = next(g for g in worse["gates"] if g["name"] == "max_regression_vs_fleet")
    assert not gate["passed"] and gate["value"] > 0.01 and not worse["passed"]
    assert worse["fleet"]["version"] == "v1.0"
    same = evaluate_run(world["snap"], world["good"], LOOSE, fleet)
    assert next(g for g in same["gates"] if g["name"] == "max_regression_vs_fleet")["value"] == 0.0

    with pytest.raises(EdgeopsError, match=r"failed its gates .*max_regression_vs_fleet"):
        publish_run(world["bad"], f"file://{store}", private_key=private_key(world), gpu_hour_usd=2.5)

    # A release file that names a tampered bundle is refused before its model is used.
    onnx = store / "models" / "v1.0" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\0")
    with pytest.raises(EdgeopsError, match=r"model\.onnx"):
        load_fleet_model(env / "fleet" / "release.yaml", env / "release-signing.pub")


def test_publish_verify_republish_and_card(world: dict[str, Path], tmp_path: Path) -> None:
    evaluate_run(world["snap"], world["good"], LOOSE, None)
    store = tmp_path / "store"
    env = {**os.environ, **key_env(world)}
    cmd = [EDGEOPS, "publish", "--run", str(world["good"]), "--store", f"file://{store}"]
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    uri = first.stdout.strip()
    assert uri == f"file://{store}/models/v1.0/"
    names = sorted(p.name for p in (store / "models" / "v1.0").iterdir())
    assert names == sorted(["MODEL_CARD.md", "SHA256SUMS", "SHA256SUMS.sig", "golden.json", "model.json",
                            "model.onnx", "weights.safetensors"])  # fmt: skip
    card = json.loads((store / "models" / "v1.0" / "model.json").read_text())
    assert card["version"] == "v1.0" and card["interface"].startswith("sha256:")
    assert card["engine"]["built"] is False and card["training"]["cost_usd"] == 0.0
    assert set(card["artifacts"]) == {"model.onnx", "weights.safetensors", "golden.json"}
    md = (store / "models" / "v1.0" / "MODEL_CARD.md").read_text()
    assert "# Model card: v1.0" in md and "engine | not built (TensorRT unavailable on this runner)" in md
    assert "How to roll back" in md and "| bearing_wear |" in md
    # What the model can see (#20): every mode's test AUROC, the weakest first, in model.json and the card.
    seen = card["separation"]
    assert [s["mode"] for s in seen] == sorted(
        card["labels"], key=lambda m: card["metrics"]["per_mode"][m]["auroc"]
    )
    assert [s["auroc"] for s in seen] == sorted(s["auroc"] for s in seen)
    listed = re.findall(r"^\d+\. `([a-z_]+)`: (\d\.\d{4})", md.split("## What the model can see")[1], re.M)
    assert [m for m, _ in listed] == [s["mode"] for s in seen]
    assert (
        card["thresholds_raised"] == json.loads((world["good"] / "run.json").read_text())["thresholds_raised"]
    )

    verify = [EDGEOPS, "verify", uri, "--public-key", str(world["root"] / "release.pub")]
    ok = subprocess.run(verify, cwd=REPO, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("OK v1.0"), ok.stderr

    mtimes = {p.name: p.stat().st_mtime_ns for p in (store / "models" / "v1.0").iterdir()}
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "already published as v1.0: nothing to do" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (store / "models" / "v1.0").iterdir()} == mtimes

    # Another model with the same interface: the next MINOR version.
    other = tmp_path / "other"
    shutil.copytree(world["bad"], other)
    evaluate_run(
        world["snap"], other, EvaluationGates(min_subset_accuracy=0.0, max_fp_rate=1.0, max_fn_rate=1.0), None
    )
    second = publish_run(other, f"file://{store}", private_key=private_key(world), gpu_hour_usd=2.5)
    assert second.version == "v1.1"

    wrong = tmp_path / "wrong.pub"
    wrong.write_bytes(generate_keypair()[1])
    bad_key = subprocess.run(
        [*verify[:3], "--public-key", str(wrong)], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert bad_key.returncode == 1 and "SHA256SUMS.sig" in bad_key.stderr
    for name in ("weights.safetensors", "golden.json", "model.json"):
        path = store / "models" / "v1.0" / name
        original = path.read_bytes()
        path.write_bytes(original[:10] + bytes([original[10] ^ 1]) + original[11:])
        tampered = subprocess.run(verify, cwd=REPO, capture_output=True, text=True, check=False)
        assert tampered.returncode == 1 and name in tampered.stderr and "Traceback" not in tampered.stderr
        path.write_bytes(original)


def test_publish_to_s3_and_register(
    world: dict[str, Path], s3_env: S3Endpoint, s3_bucket: str, pg_dsn: str, tmp_path: Path
) -> None:
    """Publish as docs/database.md's publish role, after `db migrate` by the owner; a publish interrupted
    after the upload (registry unreachable), or after the bundle but before its signature, is finished by
    running it again: the bundle whole, one registry row, published.json."""
    from tools.core.schema import migrate

    roles = Roles(pg_dsn)
    roles.create_owner()
    try:
        conn = psycopg2.connect(roles.dsn("owner"))
        try:
            ensure_ldos_table(conn)
            migrate(conn, telemetry=True)
        finally:
            conn.close()
        roles.grant()
        evaluate_run(world["snap"], world["good"], LOOSE, None)
        run = tmp_path / "run"
        shutil.copytree(world["good"], run)
        (run / "published.json").unlink(missing_ok=True)  # an earlier test published the module's run
        uri = f"s3://{s3_bucket}/edge-models"
        key = private_key(world)

        # The registry is down: the bundle is uploaded, the error says how to finish, no published.json.
        down = "postgresql://edgeops@127.0.0.1:9/backend"
        with pytest.raises(ServiceError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:9/backend"):
            publish_run(run, uri, private_key=key, gpu_hour_usd=2.5, dsn=down)
        assert not (run / "published.json").exists()
        # The signature upload is lost too (a publish cut between SHA256SUMS and its .sig).
        s3 = boto3.client("s3")
        s3.delete_object(Bucket=s3_bucket, Key="edge-models/models/v1.0/SHA256SUMS.sig")

        outcome = publish_run(run, uri, private_key=key, gpu_hour_usd=2.5, dsn=roles.dsn("publish"))
        assert outcome.version == "v1.0" and outcome.uri == f"{uri}/models/v1.0/" and outcome.registered
        assert outcome.outcome == "published"  # finished: the signature was added
        from tools.artifacts.bundle import verify_bundle_uri

        report = verify_bundle_uri(outcome.uri, load_public_key(world["root"] / "release.pub"))
        assert "model.onnx" in report.files
        assert json.loads((run / "published.json").read_text())["version"] == "v1.0"
        with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT version, bundle_uri, interface, metrics->>'subset_accuracy' FROM model_versions"
            )
            rows = cur.fetchall()
        assert len(rows) == 1 and rows[0][0] == "v1.0" and rows[0][1] == outcome.uri
        assert float(rows[0][3]) > 0.5

        # Both done: a re-run changes nothing and still leaves published.json and the one row.
        (run / "published.json").unlink()
        again = publish_run(run, uri, private_key=key, gpu_hour_usd=2.5, dsn=roles.dsn("publish"))
        assert again.outcome == "identical" and again.version == "v1.0" and again.registered
        assert (run / "published.json").is_file()
        with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM model_versions")
            assert cur.fetchone() == (1,)
        assert [k["Key"] for k in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]] == sorted(
            f"edge-models/models/v1.0/{name}" for name in set(report.files) | {"SHA256SUMS", "SHA256SUMS.sig"}
        )

        # Without the migration, publish names it instead of creating a table.
        with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE model_versions")
        with pytest.raises(ServiceError, match=r"model_versions does not exist .* `edgeops db migrate --pg"):
            publish_run(run, uri, private_key=key, gpu_hour_usd=2.5, dsn=roles.dsn("owner"))
    finally:
        roles.drop()


def test_keygen_writes_a_private_key_only_the_owner_reads(tmp_path: Path) -> None:
    keygen = [
        EDGEOPS,
        "keygen",
        "--private-key",
        str(tmp_path / "k.pem"),
        "--public-key",
        str(tmp_path / "k.pub"),
    ]
    result = subprocess.run(
        keygen,
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in result.stderr.encode() and "BEGIN" not in result.stdout
    load_public_key(tmp_path / "k.pub")
    again = subprocess.run(
        keygen,
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert again.returncode == 1 and "pass --force" in again.stderr


@pytest.mark.tensorrt
def test_tensorrt_engine_builds_and_matches_onnxruntime(world: dict[str, Path]) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installable from this project's registries")
    report = json.loads((world["good"] / "export" / "export.json").read_text())
    engine = report["engine"]
    assert engine["built"], engine
    assert re.fullmatch(r"engine-sm\d+-trt[\d.]+\.plan", engine["file"])
    assert engine["parity_max_abs_diff"] <= 2e-2
    print(f"\nTensorRT: {engine}")


def test_a_fleet_card_without_thresholds_is_a_clear_error(tmp_path: Path) -> None:
    """A signed, intact bundle whose card lacks what evaluation needs: refused by name, not a KeyError."""
    from tests.releasekit import INTERFACE, keys, publish
    from tools.artifacts.bundle import verify_bundle_uri
    from tools.artifacts.release import make_release, render_release
    from tools.core.signing import load_public_key

    k = keys()
    uri = publish(f"file://{tmp_path / 'store'}", "v1.0", k)  # its card has no "thresholds"
    env = tmp_path / "environments"
    (env / "fleet").mkdir(parents=True)
    (env / "release-signing.pub").write_bytes(k.public_pem)
    files = verify_bundle_uri(uri, load_public_key(env / "release-signing.pub")).files
    release = make_release(
        k.private, version="v1.0", interface=INTERFACE, bundle=uri,
        files={n: files[n] for n in ("model.onnx", "golden.json")},
    )  # fmt: skip
    (env / "fleet" / "release.yaml").write_text(render_release(release, ring="fleet"))
    with pytest.raises(EdgeopsError, match=r"model\.json: the fleet model's card has no usable 'thresholds'"):
        load_fleet_model(env / "fleet" / "release.yaml", env / "release-signing.pub")
