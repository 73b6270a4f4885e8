"""Signed, immutable model bundles: publish and verify on a file:// store and on a real S3 API server,
immutability, tamper detection naming the file, and version numbering."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tools.artifacts.bundle import (
    VERSION_RE,
    BundleError,
    format_version,
    list_versions,
    next_version,
    parse_sha256sums,
    parse_version,
    publish_bundle,
    sha256sums,
    verify_bundle,
    verify_bundle_uri,
)
from tools.core.errors import EdgeopsError, StoreError
from tools.core.signing import key_id, sign, verify
from tools.core.store import Store, open_store

FILES = {
    "model.onnx": b"\x08\x07onnx-graph-bytes" * 50,
    "weights.safetensors": b"safetensors" * 20,
    "golden.json": b'{"inputs": [], "outputs": []}\n',
    "model.json": b'{"interface": "sha256:abc"}\n',
    "engine-sm87-trt10.3.plan": b"plan",
}


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "file":
        return open_store(f"file://{tmp_path}/store")
    bucket = request.getfixturevalue("s3_bucket")  # real moto server over HTTP; created by the first write
    return open_store(f"s3://{bucket}/edge")


def _overwrite(store: Store, key: str, data: bytes) -> None:
    """Change an object behind the store's back (what an attacker or a bad disk would do)."""
    if store.uri.startswith("file://"):
        path = Path(store.uri[len("file://") :], key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        bucket, _, prefix = store.uri[len("s3://") :].partition("/")
        boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{key}" if prefix else key, Body=data)


def _delete(store: Store, key: str) -> None:
    if store.uri.startswith("file://"):
        Path(store.uri[len("file://") :], key).unlink()
    else:
        bucket, _, prefix = store.uri[len("s3://") :].partition("/")
        boto3.client("s3").delete_object(Bucket=bucket, Key=f"{prefix}/{key}" if prefix else key)


def _flip_byte(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


# --- publish + verify -----------------------------------------------------------------------------------


def test_publish_then_verify(store: Store, key: Ed25519PrivateKey) -> None:
    result = publish_bundle(store, "v1.0", FILES, key)
    assert result.version == "v1.0" and result.outcome == "published"
    assert result.uri == f"{store.uri}/models/v1.0/"
    assert result.files == {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in FILES.items()
    }
    assert sorted(store.list("models/v1.0")) == sorted(
        [f"models/v1.0/{n}" for n in FILES] + ["models/v1.0/SHA256SUMS", "models/v1.0/SHA256SUMS.sig"]
    )
    sums = store.get("models/v1.0/SHA256SUMS")
    assert sums == sha256sums(FILES)
    assert sums.decode().splitlines()[0].endswith("  engine-sm87-trt10.3.plan")  # sorted by name
    signature = store.get("models/v1.0/SHA256SUMS.sig")
    assert signature.endswith(b"\n") and signature.startswith(b"ed25519:")
    verify(key.public_key(), sums, signature.decode().strip())

    report = verify_bundle(store, "v1.0", key.public_key())
    assert report.version == "v1.0" and report.key_id == key_id(key.public_key())
    assert report.files == result.files
    assert verify_bundle_uri(result.uri, key.public_key()) == report
    assert verify_bundle_uri(result.uri.rstrip("/"), key.public_key()) == report
    assert list_versions(store) == ["v1.0"]


def test_sha256sums_matches_coreutils(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    """`sha256sum -c SHA256SUMS` works on a node by hand."""
    store = open_store(f"file://{tmp_path}")
    publish_bundle(store, "v1.0", FILES, key)
    folder = tmp_path / "models" / "v1.0"
    checked = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_write_order_signature_last(key: Ed25519PrivateKey, tmp_path: Path) -> None:
    written: list[str] = []
    inner = open_store(f"file://{tmp_path}")

    class Recording:
        uri = inner.uri

        def __getattr__(self, name: str) -> object:
            return getattr(inner, name)

        def put_immutable(self, k: str, data: bytes) -> str:
            written.append(k.rsplit("/", 1)[1])
            return inner.put_immutable(k, data)

    publish_bundle(Recording(), "v2.3", FILES, key)  # type: ignore[arg-type]
    assert written[-2:] == ["SHA256SUMS", "SHA256SUMS.sig"]
    assert sorted(written[:-2]) == sorted(FILES)


def test_republish_identical_writes_nothing(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    store = open_store(f"file://{tmp_path}")
    publish_bundle(store, "v1.0", FILES, key)
    folder = tmp_path / "models" / "v1.0"
    for path in folder.iterdir():
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in folder.iterdir()}
    result = publish_bundle(store, "v1.0", dict(reversed(FILES.items())), key)
    assert result.outcome == "identical" and result.uri.endswith("/models/v1.0/")
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in folder.iterdir()} == before
    # another key (a rotated one) signs other bytes: the content is what counts, the signature is kept
    other = Ed25519PrivateKey.generate()
    assert publish_bundle(store, "v1.0", FILES, other).outcome == "identical"
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in folder.iterdir()} == before
    verify_bundle(store, "v1.0", key.public_key())


def test_republish_identical_on_s3(s3_env: object, s3_bucket: str, key: Ed25519PrivateKey) -> None:
    store = open_store(f"s3://{s3_bucket}")
    publish_bundle(store, "v1.0", FILES, key)
    client = boto3.client("s3")
    before = {o["Key"]: o["LastModified"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert publish_bundle(store, "v1.0", FILES, key).outcome == "identical"
    after = {o["Key"]: o["LastModified"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert after == before


@pytest.mark.parametrize(
    "change",
    [
        lambda f: {**f, "model.onnx": _flip_byte(f["model.onnx"], 5)},
        lambda f: {**f, "extra.txt": b"new file"},
        lambda f: {k: v for k, v in f.items() if k != "golden.json"},
    ],
    ids=["different-bytes", "added-file", "removed-file"],
)
def test_republish_different_is_refused(
    store: Store, key: Ed25519PrivateKey, change: Callable[[dict[str, bytes]], dict[str, bytes]]
) -> None:
    publish_bundle(store, "v1.0", FILES, key)
    before = {k: store.get(k) for k in store.list("")}
    with pytest.raises(BundleError) as err:
        publish_bundle(store, "v1.0", change(dict(FILES)), key)
    message = str(err.value)
    assert "version v1.0 already exists with different content" in message
    assert "versions are immutable: publish a new version" in message
    assert {k: store.get(k) for k in store.list("")} == before
    verify_bundle(store, "v1.0", key.public_key())


def test_interrupted_publish_is_completed_by_publishing_again(store: Store, key: Ed25519PrivateKey) -> None:
    publish_bundle(store, "v1.0", FILES, key)
    _delete(store, "models/v1.0/SHA256SUMS.sig")
    _delete(store, "models/v1.0/SHA256SUMS")
    _delete(store, "models/v1.0/model.json")
    with pytest.raises(BundleError, match=r"SHA256SUMS is missing"):
        verify_bundle(store, "v1.0", key.public_key())
    assert list_versions(store) == ["v1.0"]  # an incomplete bundle still takes its version
    assert publish_bundle(store, "v1.0", FILES, key).outcome == "published"
    verify_bundle(store, "v1.0", key.public_key())


def test_unsigned_bundle_reads_as_incomplete(store: Store, key: Ed25519PrivateKey) -> None:
    publish_bundle(store, "v1.0", FILES, key)
    _delete(store, "models/v1.0/SHA256SUMS.sig")
    with pytest.raises(BundleError, match=r"SHA256SUMS\.sig is missing"):
        verify_bundle(store, "v1.0", key.public_key())


def test_republish_over_a_damaged_signature_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    store = open_store(f"file://{tmp_path}")
    publish_bundle(store, "v1.0", FILES, key)
    (tmp_path / "models" / "v1.0" / "SHA256SUMS.sig").write_bytes(b"garbage\n")
    with pytest.raises(BundleError, match=r"SHA256SUMS.sig is damaged.*publish a new version"):
        publish_bundle(store, "v1.0", FILES, key)


@pytest.mark.parametrize(
    ("victim", "at"),
    [("model.onnx", 0), ("model.onnx", 799), ("golden.json", 3), ("SHA256SUMS", 0), ("SHA256SUMS", 70),
     ("SHA256SUMS.sig", 12), ("SHA256SUMS.sig", 40)],
)  # fmt: skip
def test_tampering_one_byte_is_detected_and_named(
    store: Store, key: Ed25519PrivateKey, victim: str, at: int
) -> None:
    publish_bundle(store, "v1.0", FILES, key)
    original = store.get(f"models/v1.0/{victim}")
    _overwrite(store, f"models/v1.0/{victim}", _flip_byte(original, at))
    with pytest.raises(BundleError) as err:
        verify_bundle(store, "v1.0", key.public_key())
    message = str(err.value)
    folder = f"{store.uri}/models/v1.0/"
    if victim in FILES:
        digest = hashlib.sha256(FILES[victim]).hexdigest()
        tampered = hashlib.sha256(_flip_byte(original, at)).hexdigest()
        assert f"{folder}{victim}: sha256 {tampered[:12]}" in message
        assert digest[:12] in message
    else:  # the signature covers SHA256SUMS: either change breaks it, and the message names both
        assert f"{folder}SHA256SUMS.sig does not verify SHA256SUMS" in message
        assert "changed in the store" in message


def test_wrong_public_key_names_the_signature(store: Store, key: Ed25519PrivateKey) -> None:
    publish_bundle(store, "v1.0", FILES, key)
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(BundleError) as err:
        verify_bundle(store, "v1.0", other)
    message = str(err.value)
    assert "SHA256SUMS.sig" in message and key_id(other) in message
    assert "signed by another key" in message


def test_missing_file_is_named(store: Store, key: Ed25519PrivateKey) -> None:
    publish_bundle(store, "v1.0", FILES, key)
    _delete(store, "models/v1.0/golden.json")
    with pytest.raises(BundleError, match=r"models/v1.0/golden.json is missing \(listed in SHA256SUMS\)"):
        verify_bundle(store, "v1.0", key.public_key())


def test_extra_file_is_named(store: Store, key: Ed25519PrivateKey) -> None:
    publish_bundle(store, "v1.0", FILES, key)
    _overwrite(store, "models/v1.0/backdoor.py", b"import os")
    _overwrite(store, "models/v1.0/sub/nested.bin", b"x")
    with pytest.raises(BundleError, match=r"not listed in SHA256SUMS: backdoor.py, sub/nested.bin"):
        verify_bundle(store, "v1.0", key.public_key())


def test_verify_a_version_that_does_not_exist(store: Store, key: Ed25519PrivateKey) -> None:
    with pytest.raises(BundleError, match=r"no bundle for version v3.0"):
        verify_bundle(store, "v3.0", key.public_key())


def test_malformed_sha256sums_is_named_even_when_signed(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    """A signer that wrote a bad SHA256SUMS: the signature holds, the parse names the line."""
    store = open_store(f"file://{tmp_path}")
    bad = b"0" * 64 + b"  model.onnx\nnot a line\n"
    store.put_immutable("models/v1.0/model.onnx", b"x")
    store.put_immutable("models/v1.0/SHA256SUMS", bad)
    store.put_immutable("models/v1.0/SHA256SUMS.sig", (sign(key, bad) + "\n").encode())
    with pytest.raises(BundleError, match=r"SHA256SUMS line 2: 'not a line'"):
        verify_bundle(store, "v1.0", key.public_key())


def test_publish_rejects_bad_input(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    store = open_store(f"file://{tmp_path}")
    for files, expected in [
        ({}, "no files"),
        ({"sub/model.onnx": b"x"}, "'sub/model.onnx' is not a valid bundle file name"),
        ({"../x": b"x"}, "not a valid bundle file name"),
        ({"SHA256SUMS": b"x"}, "written by publish itself"),
        ({"SHA256SUMS.sig": b"x"}, "written by publish itself"),
        ({"a b": b"x"}, "not a valid bundle file name"),
    ]:
        with pytest.raises(BundleError, match=expected):
            publish_bundle(store, "v1.0", files, key)
    with pytest.raises(BundleError, match=r"'1\.0' is not a model version"):
        publish_bundle(store, "1.0", FILES, key)
    assert store.list("") == []


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket/prefix/v1.2/", "s3://bucket/models/1.2/", "file:///x/models/", "models/v1.2",
     "file:///models/v1.2/", "s3://bucket/prefix/models/v1.2/model.onnx"],
)  # fmt: skip
def test_verify_bundle_uri_rejects_non_bundle_uris(uri: str, key: Ed25519PrivateKey) -> None:
    with pytest.raises(EdgeopsError) as err:
        verify_bundle_uri(uri, key.public_key())
    assert repr(uri) in str(err.value)


def test_verify_bundle_uri_of_a_bucket_root_store(
    s3_env: object, s3_bucket: str, key: Ed25519PrivateKey
) -> None:
    result = publish_bundle(open_store(f"s3://{s3_bucket}"), "v0.7", FILES, key)
    assert result.uri == f"s3://{s3_bucket}/models/v0.7/"
    assert verify_bundle_uri(result.uri, key.public_key()).version == "v0.7"


# --- SHA256SUMS -----------------------------------------------------------------------------------------


def test_sha256sums_round_trip() -> None:
    text = sha256sums({"b.bin": b"b", "a.bin": b"a"})
    lines = text.decode().splitlines()
    assert lines == [
        f"{hashlib.sha256(b'a').hexdigest()}  a.bin",
        f"{hashlib.sha256(b'b').hexdigest()}  b.bin",
    ]
    assert text.endswith(b"\n")
    assert parse_sha256sums(text) == {
        "a.bin": hashlib.sha256(b"a").hexdigest(),
        "b.bin": hashlib.sha256(b"b").hexdigest(),
    }
    assert parse_sha256sums(b"") == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"abc  model.onnx\n", "line 1"),
        (b"0" * 64 + b" model.onnx\n", "line 1"),  # one space
        (b"0" * 64 + b"  a\n" + b"0" * 63 + b"  b\n", "line 2"),
        (b"A" * 64 + b"  model.onnx\n", "lowercase"),
        (b"0" * 64 + b"  sub/model.onnx\n", "line 1: 'sub/model.onnx' is not a valid bundle file name"),
        (b"0" * 64 + b"  SHA256SUMS\n", "line 1: 'SHA256SUMS' is written by publish itself"),
        (b"0" * 64 + b"  a\n" + b"1" * 64 + b"  a\n", "line 2: 'a' is listed twice"),
        (b"0" * 64 + b"  a", "truncated"),
        (b"0" * 64 + b"  a\r\n", "line 1"),  # CRLF: damaged in transit
        ("0" * 64 + "  mödel\n", "not ASCII"),
    ],
)
def test_parse_sha256sums_names_the_bad_line(text: bytes | str, expected: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(BundleError, match="SHA256SUMS") as err:
        parse_sha256sums(data)
    assert expected in str(err.value)


# --- versions -------------------------------------------------------------------------------------------


def test_version_re_is_the_documented_pattern() -> None:
    assert VERSION_RE == r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)$"


@pytest.mark.parametrize(
    ("text", "parsed"), [("v1.0", (1, 0)), ("v2.1", (2, 1)), ("v0.0", (0, 0)), ("v10.123", (10, 123))]
)
def test_parse_version(text: str, parsed: tuple[int, int]) -> None:
    assert parse_version(text) == parsed
    assert format_version(*parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        "1.0",
        "v1",
        "v1.0.0",
        "v01.0",
        "v1.00",
        "V1.0",
        "v1.0 ",
        "",
        "v-1.0",
        "v1.x",
        "v\u0661.0",
        "v1\u0661.0",
        "v1.0\n",
    ],
)
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(BundleError, match=r"is not a model version: expected vMAJOR\.MINOR") as err:
        parse_version(text)
    assert repr(text) in str(err.value)


def test_format_version_rejects_negative() -> None:
    with pytest.raises(BundleError):
        format_version(-1, 0)


def test_list_versions_sorts_numerically_and_ignores_junk(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    for key in ["models/v1.10/x", "models/v1.9/x", "models/v2.0/x", "models/v1.2/a/b", "models/v01.0/x",
                "models/latest/x", "models/v3.0", "models/README.md", "other/v9.0/x", "v8.0/x"]:  # fmt: skip
        store.put_immutable(key, b"x")
    assert list_versions(store) == ["v1.2", "v1.9", "v1.10", "v2.0"]
    assert list_versions(open_store(f"file://{tmp_path}/empty")) == []


@pytest.mark.parametrize(
    ("existing", "interface", "latest", "expected"),
    [
        ([], "sha256:a", None, "v1.0"),  # first ever
        ([], "sha256:a", "sha256:b", "v1.0"),
        (["v1.0"], "sha256:a", "sha256:a", "v1.1"),  # same interface: MINOR
        (["v1.0", "v1.1", "v1.9"], "sha256:a", "sha256:a", "v1.10"),
        (["v1.9", "v1.10"], "sha256:a", "sha256:a", "v1.11"),  # numeric, not lexical
        (["v1.3"], "sha256:new", "sha256:old", "v2.0"),  # interface changed: MAJOR
        (["v1.3", "v2.0"], "sha256:a", None, "v3.0"),  # unknown latest interface: treated as changed
        (["v2.0", "v1.7"], "sha256:a", "sha256:a", "v2.1"),  # order of `existing` does not matter
        (["v3.4", "v2.9"], "sha256:x", "sha256:y", "v4.0"),  # never reuses: above every existing one
    ],
)
def test_next_version(existing: list[str], interface: str, latest: str | None, expected: str) -> None:
    assert next_version(existing, interface=interface, latest_interface=latest) == expected
    assert expected not in existing


def test_next_version_never_reuses_across_a_sequence() -> None:
    seen: list[str] = []
    interfaces = ["a", "a", "a", "b", "b", "a", "a", "c"]
    latest: str | None = None
    for interface in interfaces:
        version = next_version(seen, interface=interface, latest_interface=latest)
        assert version not in seen
        seen.append(version)
        latest = interface
    assert seen == ["v1.0", "v1.1", "v1.2", "v2.0", "v2.1", "v3.0", "v3.1", "v4.0"]


def test_next_version_rejects_bad_existing() -> None:
    with pytest.raises(BundleError, match="'latest' is not a model version"):
        next_version(["v1.0", "latest"], interface="a", latest_interface="a")
    with pytest.raises(BundleError, match="not one string"):
        next_version("v1.0", interface="a", latest_interface="a")


def test_errors_are_edgeops_errors() -> None:
    assert issubclass(BundleError, EdgeopsError) and not issubclass(BundleError, StoreError)


# --- the delivery side stays light ---------------------------------------------------------------------
