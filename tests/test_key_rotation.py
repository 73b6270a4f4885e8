"""Rotating the release-signing key (docs/runbooks.md, "Rotate the release-signing key"), real updaters.

A ring of real in-process :class:`~tools.edge.updater.Updater` agents, each reading its release file and its
trusted-keys file from a mount the test refreshes the way the kubelet refreshes a ConfigMap volume (files in
a timestamped folder, an atomic rename of the ``..data`` link), runs a wave: some nodes the target release,
the others ``previous``. The runbook's three PRs are walked on a checkout (edgeops.yaml + the ring's files):
trust {old, new} → the ring's release re-signed with the new key by ``edgeops release resign`` → trust {new}.
After every step every node is reconciled, and none ever refuses what it serves, downloads anything or
moves ``current``. The wrong orders fail safe: the old key removed before re-signing, or a release signed
by a key nobody trusts, is refused with the key ids named while every node keeps serving its model. On a
git checkout, ``edgeops validate pr`` accepts each of the three PRs and refuses one that brings its own key.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import REPO, cli
from tests.releasekit import git, keys, make_checkout
from tests.test_updater import INTERFACE, build_golden
from tools.artifacts.bundle import BundleError, publish_bundle, verify_bundle_uri
from tools.artifacts.release import (
    Release,
    in_wave,
    load_release,
    make_release,
    render_release,
    verify_release,
)
from tools.core.config import load_config
from tools.core.project import Project
from tools.core.signing import (
    SignatureError,
    generate_keypair,
    key_id,
    load_public_key,
    load_public_keys,
    private_key_from_pem,
    public_key_from_pem,
    public_keys_from_pem,
)
from tools.core.store import Store, open_store
from tools.edge.updater import CURRENT, ReconcileResult, TrustFile, Updater, build_parser, run
from tools.gitops.gitrepo import Repo
from tools.gitops.policy import validate_pr
from tools.gitops.resign import ResignError, resign_ring, resign_text
from tools.kits.fleetsim import build_model

RING = "pilot"
SIGNING_KEY = "environments/release-signing/release-signing.pub"


@dataclass
class Key:
    private: Ed25519PrivateKey
    private_pem: bytes
    public_pem: bytes

    @property
    def id(self) -> str:
        return key_id(self.private)


def new_key() -> Key:
    private_pem, public_pem = generate_keypair()
    return Key(private_key_from_pem(private_pem, source="test"), private_pem, public_pem)


def kubelet_refresh(mount: Path, files: dict[str, bytes]) -> None:
    """Update a ConfigMap volume the kubelet's way (pkg/volume/util/atomic_writer.go): the data goes into
    a new timestamped folder, ``..data`` is swapped onto it by a rename, and each file is a link through
    ``..data``; a reader sees the old or the new set of files, never a mix."""
    mount.mkdir(parents=True, exist_ok=True)
    folder = mount / f"..{datetime.now(UTC):%Y_%m_%d_%H_%M_%S}.{time.monotonic_ns()}"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    tmp = mount / "..data_tmp"
    tmp.symlink_to(folder.name)
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    os.replace(tmp, mount / "..data")
    for name in files:
        if not (mount / name).is_symlink():
            (mount / name).symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(mount / old)


@dataclass
class Node:
    name: str
    updater: Updater
    release_mount: Path
    keys_mount: Path

    def reconcile(self) -> ReconcileResult:
        release = load_release(self.release_mount / "release.yaml")
        return self.updater.reconcile(release)

    @property
    def current(self) -> str | None:
        return self.updater.current_version()

    def served(self) -> bytes:
        return (self.updater.root / CURRENT / "model.onnx").read_bytes()


class CountingStore:
    def __init__(self, inner: Store, reads: list[str]) -> None:
        self.inner, self.reads, self.uri = inner, reads, inner.uri

    def get(self, key: str) -> bytes:
        self.reads.append(key)
        return self.inner.get(key)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@dataclass
class Ring:
    """A checkout (edgeops.yaml, the trusted keys, the ring's release file), a store and the ring's nodes."""

    tmp: Path
    checkout: Path
    store_uri: str
    nodes: list[Node]
    reads: list[str]
    old: Key  # the key every node trusts at first
    new: Key  # the key `edgeops keygen` made for the rotation
    models: dict[str, bytes]

    @property
    def project(self) -> Project:
        return Project.load(self.checkout / "edgeops.yaml")

    @property
    def release_path(self) -> Path:
        return self.checkout / "environments" / RING / "release.yaml"

    @property
    def keys_path(self) -> Path:
        return self.checkout / SIGNING_KEY

    def merge(self) -> None:
        """A merged PR reaches every node: Argo CD syncs the ConfigMaps, the kubelet refreshes the mounts."""
        for node in self.nodes:
            kubelet_refresh(node.release_mount, {"release.yaml": self.release_path.read_bytes()})
            kubelet_refresh(node.keys_mount, {"release-signing.pub": self.keys_path.read_bytes()})

    def reconcile_all(self) -> dict[str, ReconcileResult]:
        return {node.name: node.reconcile() for node in self.nodes}

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def expected(self) -> dict[str, str]:
        """What each node serves: the target v1.1 inside the 50% wave, ``previous`` v1.0 outside it."""
        inside, _ = wave_names()
        return {n.name: "v1.1" if n.name in inside else "v1.0" for n in self.nodes}

    def assert_serves_what_it_had(self, node: Node) -> None:
        version = self.expected()[node.name]
        assert node.current == version and node.served() == self.models[version]

    def assert_every_node_serves(self) -> None:
        """Every node reconciles OK without a download, ready, on the version it had."""
        before = len(self.reads)
        for name, result in self.reconcile_all().items():
            node = self.node(name)
            assert result.ok and result.outcome == "unchanged", (name, result)
            self.assert_serves_what_it_had(node)
            assert node.updater.ready() == (True, f"serving {self.expected()[name]}")
        assert self.reads[before:] == []  # nothing downloaded: the signed content did not change

    def restart(self, node: Node) -> None:
        """The agent restarts (a new process on the same model root and mounts)."""
        node.updater.close()
        trust = TrustFile(node.keys_mount / "release-signing.pub")
        node.updater = Updater(node.updater.root, trust, node=node.name)


def wave_names() -> tuple[list[str], list[str]]:
    """Node names inside and outside a 50% wave (the stable hash decides; pick two of each)."""
    inside = [n for n in (f"edge-{i:03d}" for i in range(200)) if in_wave(n, 50)][:2]
    outside = [n for n in (f"edge-{i:03d}" for i in range(200)) if not in_wave(n, 50)][:2]
    return inside, outside


def publish(store_uri: str, version: str, model: bytes, key: Key, *, signer: Key | None = None) -> Release:
    files = {"model.onnx": model, "golden.json": build_golden(model)}
    result = publish_bundle(open_store(store_uri), version, files, key.private)
    return make_release(
        (signer or key).private, version=version, interface=INTERFACE, bundle=result.uri, files=result.files
    )


@pytest.fixture
def ring(tmp_path: Path) -> Ring:
    """Every node trusts the old key only and serves the ring's wave: v1.1 inside it, v1.0 outside."""
    old, new = new_key(), new_key()
    models = {"v1.0": build_model(0.1), "v1.1": build_model(0.2), "v1.2": build_model(0.3)}
    checkout = tmp_path / "checkout"
    (checkout / "environments" / RING).mkdir(parents=True)
    (checkout / "environments" / "release-signing").mkdir(parents=True)
    shutil.copy(REPO / "edgeops.yaml", checkout / "edgeops.yaml")
    (checkout / SIGNING_KEY).write_bytes(old.public_pem)
    store_uri = f"file://{tmp_path / 'store'}"
    v10 = publish(store_uri, "v1.0", models["v1.0"], old)
    v11 = publish(store_uri, "v1.1", models["v1.1"], old)
    wave = dataclasses.replace(v11, previous=v10, rollout_percent=50.0)
    (checkout / "environments" / RING / "release.yaml").write_text(render_release(wave, ring=RING))

    reads: list[str] = []

    def opener(uri: str) -> Store:
        return CountingStore(open_store(uri), reads)  # type: ignore[return-value]

    inside, outside = wave_names()
    nodes = []
    for name in inside + outside:
        mounts = tmp_path / "nodes" / name
        kubelet_refresh(mounts / "signing", {"release-signing.pub": old.public_pem})
        trust = TrustFile(mounts / "signing" / "release-signing.pub")
        updater = Updater(mounts / "models", trust, node=name, store_opener=opener, lock=False)
        nodes.append(Node(name, updater, mounts / "release", mounts / "signing"))
    r = Ring(tmp_path, checkout, store_uri, nodes, reads, old, new, models)
    r.merge()
    for name, result in r.reconcile_all().items():
        assert result.ok and result.outcome == "installed", (name, result)
    return r


def trusted_ids(node: Node) -> set[str]:
    return {
        sample.labels["key_id"]
        for metric in node.updater.registry.collect()
        if metric.name == "edgeops_updater_trusted_key"
        for sample in metric.samples
        if sample.value == 1
    }


def signature_lines_only(before: str, after: str) -> list[str]:
    """The changed lines of a diff; asserts each is a ``signature:`` line."""
    changed = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed and all(line[1:].strip().startswith("signature: ed25519:") for line in changed), changed
    return changed


def resign_with_cli(ring: Ring, key: Key, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    monkeypatch.setenv("EDGEOPS_SIGNING_KEY", key.private_pem.decode())
    monkeypatch.delenv("EDGEOPS_SIGNING_KEY_FILE", raising=False)
    config = str(ring.checkout / "edgeops.yaml")
    return cli("--config", config, "release", "resign", "--ring", RING, *extra)


# --- the runbook, in order ------------------------------------------------------------------------------


def test_rotation_in_the_runbooks_order_never_refuses_what_a_node_serves(
    ring: Ring, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    old = ring.old
    assert set(ring.expected().values()) == {"v1.0", "v1.1"}  # both sides of the wave are on the ring
    ring.assert_every_node_serves()
    assert all(trusted_ids(node) == {old.id} for node in ring.nodes)

    # 1. `edgeops keygen --add` makes the new pair and appends its public key after the old one (old first:
    #    agents that predate trust sets read only the first block). Merged and synced: every node trusts
    #    both, reloaded in place.
    private = ring.tmp / "release-2027.key"
    assert cli("keygen", "--private-key", str(private), "--public-key", str(ring.keys_path), "--add") == 0
    private_pem = private.read_bytes()
    new = Key(private_key_from_pem(private_pem, source="test"), private_pem, b"")
    text = ring.keys_path.read_text()
    assert text.startswith(old.public_pem.decode()) and f"# key {new.id}, added " in text
    assert list(load_public_keys(ring.keys_path)) == [old.id, new.id]
    assert cli("keygen", "--private-key", str(private), "--public-key", str(ring.keys_path), "--add") == 1
    assert ring.keys_path.read_text() == text  # the private key exists: nothing is written
    ring.merge()
    with caplog.at_level(logging.INFO, logger="edgeops.updater"):
        ring.assert_every_node_serves()
    assert all(trusted_ids(node) == {old.id, new.id} for node in ring.nodes)
    changed = [r for r in caplog.records if r.getMessage() == "trusted release-signing keys changed"]
    assert len(changed) == len(ring.nodes)
    assert changed[0].fields["added"] == new.id  # type: ignore[attr-defined]

    # 2. The ring's release (target and previous) re-signed with the new key by the CLI: only the two
    #    signature lines change. Every node keeps what it serves; nothing is downloaded.
    before = ring.release_path.read_text()
    assert resign_with_cli(ring, new, monkeypatch) == 0
    out = capsys.readouterr().out
    assert f"release v1.1: key {old.id} → {new.id}" in out
    assert f"previous v1.0: key {old.id} → {new.id}" in out
    after = ring.release_path.read_text()
    assert len(signature_lines_only(before, after)) == 4  # two lines out, two in
    resigned = load_release(ring.release_path)
    assert resigned is not None and resigned.previous is not None
    only_new = {new.id: new.private.public_key()}
    assert verify_release(resigned, only_new) == verify_release(resigned.previous, only_new) == new.id
    assert resign_with_cli(ring, new, monkeypatch) == 0  # again: nothing to change
    assert "already signed by this key" in capsys.readouterr().out
    assert ring.release_path.read_text() == after
    ring.merge()
    ring.assert_every_node_serves()

    # 3. The old key removed. Every node trusts the new key only and keeps serving.
    ring.keys_path.write_text(text[len(old.public_pem.decode()) :])
    assert list(load_public_keys(ring.keys_path)) == [new.id]
    ring.merge()
    ring.assert_every_node_serves()
    assert all(trusted_ids(node) == {new.id} for node in ring.nodes)

    # A restarted agent (new process, same model root) checks its model in place and stays on it.
    for node in (ring.nodes[0], ring.nodes[-1]):
        ring.restart(node)
        result = node.reconcile()
        assert result.ok and result.outcome == "unchanged", result
        ring.assert_serves_what_it_had(node)

    # Bundles keep their old signature (immutable); nodes never check it. `edgeops verify` of an older
    # bundle takes the retired key; with the new key alone it fails, naming the key it checked with.
    with pytest.raises(BundleError, match=f"public key {new.id}"):
        verify_bundle_uri(resigned.bundle, load_public_keys(ring.keys_path))
    assert verify_bundle_uri(resigned.bundle, {old.id: old.private.public_key()}).key_id == old.id


def test_every_verifier_accepts_either_key_of_the_trusted_set(ring: Ring) -> None:
    old, new = ring.old, ring.new
    ring.keys_path.write_bytes(old.public_pem + new.public_pem)
    trusted = load_public_keys(ring.keys_path)
    v12 = publish(ring.store_uri, "v1.2", ring.models["v1.2"], new)  # published after the rotation
    assert verify_bundle_uri(v12.bundle, trusted).key_id == new.id
    v11 = load_release(ring.release_path)
    assert v11 is not None and verify_release(v11, trusted) == old.id
    assert verify_release(v12, trusted) == new.id


# --- the wrong orders fail safe -----------------------------------------------------------------------------


def test_removing_the_old_key_before_re_signing_is_refused_and_every_node_keeps_its_model(
    ring: Ring, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = ring.old, ring.new
    ring.keys_path.write_bytes(old.public_pem + new.public_pem)
    ring.merge()
    ring.assert_every_node_serves()

    ring.keys_path.write_bytes(new.public_pem)  # step 3 before step 2
    ring.merge()
    for name, result in ring.reconcile_all().items():
        node = ring.node(name)
        assert (result.outcome, result.reason) == ("refused", "signature"), (name, result)
        assert (
            f"signed by key {old.id}, which this node no longer trusts (trusted: {new.id})" in result.detail
        )
        ring.assert_serves_what_it_had(node)
        ready, why = node.updater.ready()
        version = ring.expected()[name]
        assert not ready and f"refused (signature): release {version} is signed by key {old.id}" in why

    # A restarted agent still names the key: the completion marker recorded who signed what it installed.
    node = ring.nodes[-1]
    ring.restart(node)
    result = node.reconcile()
    assert result.reason == "signature" and f"signed by key {old.id}" in result.detail, result
    ring.assert_serves_what_it_had(node)

    # Re-signing refuses to bless signatures no trusted key made, unless the retired key is given; then
    # the ring recovers without a download.
    text = ring.release_path.read_text()
    capsys.readouterr()
    assert resign_with_cli(ring, new, monkeypatch) == 1
    err = capsys.readouterr().err
    assert f"verifies under none of key {new.id}" in err and "--old-public-key" in err
    assert ring.release_path.read_text() == text
    retired = ring.tmp / "retired.pub"
    retired.write_bytes(old.public_pem)
    assert resign_with_cli(ring, new, monkeypatch, "--old-public-key", str(retired)) == 0
    capsys.readouterr()
    ring.merge()
    ring.assert_every_node_serves()


def test_a_release_signed_by_an_untrusted_key_is_refused_and_never_re_signed(ring: Ring) -> None:
    old, new = ring.old, ring.new
    ring.keys_path.write_bytes(old.public_pem + new.public_pem)
    ring.merge()
    stranger = new_key()
    forged = publish(ring.store_uri, "v1.2", ring.models["v1.2"], old, signer=stranger)
    ring.release_path.write_text(render_release(forged, ring=RING))
    ring.merge()
    before = len(ring.reads)
    for name, result in ring.reconcile_all().items():
        assert (result.outcome, result.reason) == ("refused", "signature"), (name, result)
        assert f"trusted ones (keys {', '.join(sorted([old.id, new.id]))})" in result.detail
        ring.assert_serves_what_it_had(ring.node(name))
    assert ring.reads[before:] == []  # refused before any download

    text = ring.release_path.read_text()
    trusted = load_public_keys(ring.keys_path)
    with pytest.raises(ResignError, match="verifies under none of keys"):
        resign_text(text, new.private, trusted, source="release.yaml")
    with pytest.raises(ResignError, match=f"the signing key {stranger.id} is not trusted"):
        resign_text(text, stranger.private, trusted, source="release.yaml")
    with pytest.raises(ResignError, match="is not trusted"):
        resign_ring(ring.project, RING, stranger.private)
    assert ring.release_path.read_text() == text


# --- the trusted-keys file --------------------------------------------------------------------------------


def test_a_broken_trusted_keys_file_fails_the_reconcile_and_the_node_keeps_its_model(ring: Ring) -> None:
    ring.keys_path.write_bytes(ring.old.public_pem + b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n")
    ring.merge()
    for name, result in ring.reconcile_all().items():
        node = ring.node(name)
        assert (result.outcome, result.reason) == ("failed", "signature"), (name, result)
        assert "release-signing.pub: key block 2 (line 4) has no matching -----END line" in result.detail
        ring.assert_serves_what_it_had(node)
        assert not node.updater.ready()[0]
    ring.keys_path.write_bytes(ring.old.public_pem)
    ring.merge()
    ring.assert_every_node_serves()


def test_the_agent_loop_retries_a_refused_release_when_the_trusted_keys_change(ring: Ring) -> None:
    """A node that refused a release (the new key not synced to it yet) installs it as soon as the key
    arrives, without waiting out --retry-refused."""
    old, new = ring.old, ring.new
    node = ring.nodes[0]
    node.updater.close()
    v12 = publish(ring.store_uri, "v1.2", ring.models["v1.2"], old, signer=new)
    ring.release_path.write_text(render_release(v12, ring=RING))
    kubelet_refresh(node.release_mount, {"release.yaml": ring.release_path.read_bytes()})
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(run(
            release_path=node.release_mount / "release.yaml", root=node.updater.root,
            public_key_path=node.keys_mount / "release-signing.pub", interval=0.05, retry_refused=3600,
            stop=stop,
        )),
        daemon=True,
    )  # fmt: skip
    thread.start()
    try:
        time.sleep(1.0)  # a few loops: refused (only the old key is trusted), not retried for an hour
        assert os.readlink(node.updater.root / CURRENT) != "v1.2"
        kubelet_refresh(node.keys_mount, {"release-signing.pub": old.public_pem + new.public_pem})
        deadline = time.monotonic() + 60
        while os.readlink(node.updater.root / CURRENT) != "v1.2":
            assert time.monotonic() < deadline, "the refused release was not retried after the keys changed"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(60)
    assert codes == [0]


def test_the_updater_flag_takes_several_trusted_key_files(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    a, b = tmp_path / "a.pub", tmp_path / "b.pub"
    a.write_bytes(old.public_pem)
    b.write_bytes(new.public_pem)
    args = build_parser().parse_args(
        ["run", "--release", "r.yaml", "--root", "m", "--public-key", str(a), "--public-key", str(b)]
    )
    assert set(TrustFile(args.public_key).keys()) == {old.id, new.id}


# --- the PRs, as `edgeops validate pr` sees them --------------------------------------------------------


def test_validate_pr_accepts_the_rotations_prs_and_no_pr_brings_its_own_key(
    tmp_path: Path, git_remote: Path
) -> None:
    k = keys()
    old = Key(k.private, k.private_pem, k.public_pem)
    new = new_key()
    store = f"file://{tmp_path / 'store'}"
    work = make_checkout(tmp_path, git_remote, k, store=store)
    release_file = work / "environments" / RING / "release.yaml"
    keys_file = work / SIGNING_KEY
    v10 = publish(store, "v1.0", build_model(0.1), old)
    release_file.write_text(render_release(v10, ring=RING))
    git(work, "commit", "--quiet", "-am", "pilot: model v1.0")
    git(work, "push", "--quiet", "origin", "main")
    cfg = load_config(work / "edgeops.yaml")
    now = datetime.now(UTC) + timedelta(days=1)

    def check(branch: str) -> tuple[list[str], dict[str, str]]:
        git(work, "commit", "--quiet", "-am", branch)
        report = validate_pr(Repo(work), cfg, base="origin/main", head="HEAD", now=now)
        return [f"{f.rule}: {f.message}" for f in report.findings], report.rings

    def merge() -> None:
        git(work, "push", "--quiet", "origin", "HEAD:main")
        git(work, "fetch", "--quiet", "origin")
        git(work, "checkout", "--quiet", "-B", "main", "origin/main")

    # A PR that re-signs with a key the base branch does not trust yet, bringing the key along: refused.
    git(work, "checkout", "--quiet", "-B", "sneaky", "origin/main")
    keys_file.write_bytes(old.public_pem + new.public_pem)
    release_file.write_text(resign_text(
        release_file.read_text(), new.private, load_public_keys(keys_file), source="release.yaml"
    )[0])  # fmt: skip
    findings, _ = check("sneaky")
    assert any(f.startswith("release-file: release v1.0: signature does not match") for f in findings)
    assert any(f.startswith("release-only:") for f in findings), findings

    # 1. The new key beside the old: changes no release, accepted.
    git(work, "checkout", "--quiet", "-B", "trust-new-key", "origin/main")
    keys_file.write_bytes(old.public_pem + new.public_pem)
    assert check("trust-new-key") == ([], {})
    merge()

    # 2. The ring re-signed: accepted, and reported as a re-signing.
    git(work, "checkout", "--quiet", "-B", "resign/pilot", "origin/main")
    outcome = resign_ring(Project.load(work / "edgeops.yaml"), RING, new.private)
    assert outcome.changed and [b.new_key for b in outcome.blocks] == [new.id]
    assert check("resign/pilot") == ([], {RING: "v1.0 re-signed (signed content unchanged)"})
    merge()

    # 3. The old key removed: changes no release, accepted; a release signed by it is refused from now on.
    git(work, "checkout", "--quiet", "-B", "drop-old-key", "origin/main")
    keys_file.write_bytes(new.public_pem)
    assert check("drop-old-key") == ([], {})
    merge()
    git(work, "checkout", "--quiet", "-B", "old-signature", "origin/main")
    release_file.write_text(render_release(v10, ring=RING))  # the block from before the rotation
    findings, _ = check("old-signature")
    assert findings and all(f.startswith("release-file:") for f in findings), findings


def test_the_trusted_keys_file_parses_every_block_and_names_the_one_at_fault(tmp_path: Path) -> None:
    a, b = new_key(), new_key()
    text = (
        b"# the old key\n"
        + a.public_pem
        + b"\n# the new key, added 2027-01-04\n"
        + b.public_pem
        + a.public_pem
    )
    assert list(public_keys_from_pem(text, source="f.pub")) == [a.id, b.id]  # a repeated key counts once
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    cases = {
        a.public_pem + rsa_pem: "f.pub, key block 2 holds a RSAPublicKey public key, not Ed25519",
        a.public_pem
        + b"stray text\n"
        + b.public_pem: "f.pub: line 4 is outside any PEM block (before key block 2)",
        a.public_pem + b"stray": "f.pub: line 4 is outside any PEM block (after key block 1)",
        a.public_pem + a.private_pem: "f.pub holds a private key where the public key belongs",
        b"": "f.pub is not a PEM public key",
    }
    for pem, message in cases.items():
        with pytest.raises(SignatureError) as err:
            public_keys_from_pem(pem, source="f.pub")
        assert message in str(err.value)
        assert b.public_pem.decode().splitlines()[1] not in str(err.value)  # never key material
    with pytest.raises(SignatureError, match="holds 2 PEM blocks where one public key is expected"):
        public_key_from_pem(a.public_pem + b.public_pem, source="f.pub")
    path = tmp_path / "both.pub"
    path.write_bytes(a.public_pem + b.public_pem)
    with pytest.raises(SignatureError, match=f"holds 2 public keys \\({', '.join(sorted([a.id, b.id]))}"):
        load_public_key(path)
