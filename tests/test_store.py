"""Object stores by URI: the same contract for a file:// folder and a real S3 API server over HTTP."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from tools.core.errors import ServiceError, StoreError
from tools.core.store import FileStore, S3Store, Store, open_store
from tools.kits.devservices import S3Endpoint


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.s3)])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path}/store"
    bucket = request.getfixturevalue("s3_bucket")  # a real moto server; the bucket does not exist yet
    return f"s3://{bucket}/edge/models-store"


def test_put_get_exists_list_url(store_uri: str) -> None:
    store = open_store(store_uri)
    assert store.uri == store_uri
    assert store.list("") == [] and not store.exists("a.txt")
    assert store.put_immutable("models/v1.0/model.onnx", b"onnx") == "written"
    assert store.put_immutable("models/v1.0/golden.json", b"{}") == "written"
    assert store.put_immutable("models/v1.10/model.onnx", b"x") == "written"
    assert store.put_immutable("top.txt", b"top") == "written"
    assert store.get("models/v1.0/model.onnx") == b"onnx"
    assert store.exists("models/v1.0/golden.json")
    assert not store.exists("models/v1.0/nope") and not store.exists("models/v1.0")
    assert store.list("") == [
        "models/v1.0/golden.json",
        "models/v1.0/model.onnx",
        "models/v1.10/model.onnx",
        "top.txt",
    ]
    # a prefix is a folder: v1.1 is not a string prefix of v1.10/…
    assert (
        store.list("models/v1.0")
        == store.list("models/v1.0/")
        == [
            "models/v1.0/golden.json",
            "models/v1.0/model.onnx",
        ]
    )
    assert store.list("models/v1.1") == [] and store.list("nothing/here") == []
    assert store.url("models/v1.0/model.onnx") == f"{store_uri}/models/v1.0/model.onnx"
    # empty objects are objects too
    assert store.put_immutable("empty", b"") == "written" and store.get("empty") == b""


def test_put_immutable_identical_and_refused(store_uri: str) -> None:
    store = open_store(store_uri)
    assert store.put_immutable("models/v1.0/model.onnx", b"original") == "written"
    assert store.put_immutable("models/v1.0/model.onnx", b"original") == "identical"
    with pytest.raises(StoreError) as err:
        store.put_immutable("models/v1.0/model.onnx", b"changed")
    message = str(err.value)
    assert store.url("models/v1.0/model.onnx") in message
    assert "immutable" in message and "refusing to overwrite" in message
    assert store.get("models/v1.0/model.onnx") == b"original"
    assert open_store(store_uri).get("models/v1.0/model.onnx") == b"original"  # a fresh view agrees


def test_missing_object(store_uri: str) -> None:
    store = open_store(store_uri)
    with pytest.raises(StoreError, match="no such object") as err:
        store.get("models/v9.9/model.onnx")
    assert store.url("models/v9.9/model.onnx") in str(err.value)


@pytest.mark.parametrize(
    "key",
    ["", "/abs/key", "a/../b", "..", "a/./b", ".", "a//b", "a/", "a\\b", "models\\v1.0", "a/.edgeops-tmp-x"],
)
def test_bad_keys_are_rejected(key: str, tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    for call in (
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.put_immutable(key, b"x"),
        lambda: store.url(key),
    ):
        with pytest.raises(StoreError, match="not a valid object key") as err:
            call()
        assert repr(key) in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_keys_are_rejected_by_s3_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing there: no request may be made
    store = open_store("s3://some-bucket/prefix")
    with pytest.raises(StoreError, match="not a valid object key") as err:
        store.put_immutable("../escape", b"x")
    assert "'../escape'" in str(err.value)
    with pytest.raises(StoreError, match="list prefix"):
        store.list("a/../b")


@pytest.mark.parametrize(
    "uri",
    ["ftp://host/x", "models", "/abs/path", "s3://", "s3://B/x", "s3://ok-bucket/a/../b", "file://", "file:///",
     "http://127.0.0.1/x", "S3://bucket/x"],
)  # fmt: skip
def test_bad_uris_are_rejected(uri: str) -> None:
    with pytest.raises(StoreError) as err:
        open_store(uri)
    assert repr(uri) in str(err.value)


def test_unknown_scheme_lists_accepted_forms() -> None:
    with pytest.raises(StoreError) as err:
        open_store("gs://bucket/x")
    message = str(err.value)
    assert "'gs://bucket/x'" in message
    assert "file:///" in message and "s3://bucket/prefix" in message


def test_uris_are_normalised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("file://.edgeops/store/")
    assert isinstance(relative, FileStore)
    assert relative.uri == f"file://{tmp_path}/.edgeops/store"
    assert relative.url("k") == f"file://{tmp_path}/.edgeops/store/k"
    relative.put_immutable("k", b"v")
    assert (tmp_path / ".edgeops" / "store" / "k").read_bytes() == b"v"
    assert open_store(f"file://{tmp_path}/a/../b/").uri == f"file://{tmp_path}/b"
    s3 = open_store("s3://bucket-name/a/b/")
    assert isinstance(s3, S3Store)
    assert s3.uri == "s3://bucket-name/a/b"
    assert s3.url("models/v1.0/x") == "s3://bucket-name/a/b/models/v1.0/x"
    assert open_store("s3://bucket-name").url("k") == "s3://bucket-name/k"


def test_protocol_is_satisfied() -> None:
    stores: list[Store] = [FileStore(Path("/tmp/x")), open_store("s3://bucket-name/p")]
    assert all(hasattr(s, "put_immutable") for s in stores)


# --- file:// specifics -------------------------------------------------------------------------------------


def test_file_writes_leave_no_temp_files_and_are_listed_without_them(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    store.put_immutable("a/b/c.bin", b"1")
    (tmp_path / "a" / "b" / ".edgeops-tmp-deadbeef-c.bin").write_bytes(b"crashed writer leftover")
    assert store.list("") == ["a/b/c.bin"]
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == [
        ".edgeops-tmp-deadbeef-c.bin",
        "c.bin",
    ]
    store.put_immutable("a/b/d.bin", b"2")
    assert [p.name for p in (tmp_path / "a" / "b").iterdir() if p.name.startswith(".edgeops-tmp-")] == [
        ".edgeops-tmp-deadbeef-c.bin"
    ]


def test_file_identical_write_does_not_touch_the_file(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    store.put_immutable("k", b"data")
    path = tmp_path / "k"
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    inode = path.stat().st_ino
    assert store.put_immutable("k", b"data") == "identical"
    assert path.stat().st_mtime_ns == 1_000_000_000 and path.stat().st_ino == inode


def test_file_race_loser_compares_instead_of_overwriting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer creates the key between our check and our link: we must not overwrite it."""
    store = open_store(f"file://{tmp_path}")
    real_link = os.link

    def racing_link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        Path(dst).write_bytes(b"the other writer won")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    with pytest.raises(StoreError, match="refusing to overwrite"):
        store.put_immutable("k", b"ours")
    assert (tmp_path / "k").read_bytes() == b"the other writer won"
    assert store.list("") == ["k"]  # our temp file is gone


def test_file_concurrent_writers_of_one_key(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    outcomes: list[str] = []
    errors: list[Exception] = []

    def write(data: bytes) -> None:
        try:
            outcomes.append(store.put_immutable("k", data))
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(b"same",)) for _ in range(8)]
    threads += [threading.Thread(target=write, args=(b"other",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("written") == 1 and len(outcomes) + len(errors) == 16
    winner = (tmp_path / "k").read_bytes()
    assert len(errors) == 8 and all(o == "identical" for o in outcomes if o != "written")
    assert winner in (b"same", b"other")


def test_file_system_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    store = open_store(f"file://{tmp_path}")
    assert store.put_immutable("x/k", b"v") == "written"
    assert store.get("x/k") == b"v" and store.list("") == ["x/k"]


def test_file_unwritable_store_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_bytes(b"a file where a folder should be")
    store = open_store(f"file://{tmp_path}")
    with pytest.raises(StoreError) as err:
        store.put_immutable("blocker/k", b"v")
    assert "blocker" in str(err.value)


# --- s3:// specifics ---------------------------------------------------------------------------------------


def test_s3_store_creates_the_bucket_on_first_write(s3_env: S3Endpoint, s3_bucket: str) -> None:
    client = boto3.client("s3")
    assert s3_bucket not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    store = open_store(f"s3://{s3_bucket}/p")
    assert store.list("") == [] and not store.exists("k")  # reading a missing bucket is "nothing there"
    with pytest.raises(StoreError, match="no such object"):
        store.get("k")
    assert store.put_immutable("k", b"v") == "written"
    assert client.get_object(Bucket=s3_bucket, Key="p/k")["Body"].read() == b"v"


def test_s3_objects_outside_the_prefix_are_not_listed(s3_env: S3Endpoint, s3_bucket: str) -> None:
    client = boto3.client("s3")
    client.create_bucket(Bucket=s3_bucket)
    client.put_object(Bucket=s3_bucket, Key="pre", Body=b"sibling")
    client.put_object(Bucket=s3_bucket, Key="prefix2/x", Body=b"sibling folder")
    client.put_object(Bucket=s3_bucket, Key="prefix/a/b", Body=b"ours")
    store = open_store(f"s3://{s3_bucket}/prefix")
    assert store.list("") == ["a/b"]
    assert store.list("a") == ["a/b"]


def test_s3_conditional_write_race_is_detected(s3_env: S3Endpoint, s3_bucket: str) -> None:
    """Someone writes the key after our read but before our PUT: the server's 412 makes us compare."""
    store = open_store(f"s3://{s3_bucket}")
    assert isinstance(store, S3Store)
    store.put_immutable("other", b"creates the bucket")
    real_read = store._read
    calls = {"n": 0}

    def read_then_race(key: str) -> bytes | None:
        calls["n"] += 1
        if calls["n"] == 1:
            found = real_read(key)
            boto3.client("s3").put_object(Bucket=s3_bucket, Key=key, Body=b"the other writer won")
            return found
        return real_read(key)

    store._read = read_then_race  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="refusing to overwrite"):
        store.put_immutable("k", b"ours")
    assert boto3.client("s3").get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"the other writer won"


def test_s3_conditional_write_race_with_same_bytes_is_identical(s3_env: S3Endpoint, s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}")
    assert isinstance(store, S3Store)
    real_read = store._read
    first = True

    def read_then_race(key: str) -> bytes | None:
        nonlocal first
        found = real_read(key)
        if first:
            first = False
            store.client.create_bucket(Bucket=s3_bucket)
            store.client.put_object(Bucket=s3_bucket, Key=key, Body=b"same")
        return found

    store._read = read_then_race  # type: ignore[method-assign]
    assert store.put_immutable("k", b"same") == "identical"


@pytest.mark.parametrize(
    "operation",
    [
        lambda s: s.get("k"),
        lambda s: s.exists("k"),
        lambda s: s.list(""),
        lambda s: s.put_immutable("k", b"v"),
    ],
    ids=["get", "exists", "list", "put_immutable"],
)
def test_s3_down_is_a_service_error_naming_the_endpoint(
    operation: Callable[[Store], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "edgeops-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "edgeops-test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = open_store("s3://edgeops-down/p")
    with pytest.raises(ServiceError) as err:
        operation(store)
    message = str(err.value)
    assert "http://127.0.0.1:9" in message
    assert "s3://edgeops-down/p" in message
    assert "edgeops-test" not in message  # no credentials in messages
