"""Day one on a real node: the built DaemonSet's init step and agent, started the way the kubelet starts them.

K3s cannot run here, so this test plays the kubelet, from the **built** DaemonSet (`edgeops render fleet`) and
the image's Dockerfile, with the behaviour that made the seed's agent exit 1 on a fresh node:

- the hostPath model root (type DirectoryOrCreate) is created by the kubelet, which runs as root: root:root,
  mode 0755 (Kubernetes docs, "Volumes", hostPath), and a hostPath gets no fsGroup ownership change;
- ConfigMap volumes hold their data keys as root-owned 0644 files; an emptyDir is a 0777 folder;
- each container runs its rendered ``command`` (else the image's ENTRYPOINT) plus its ``args``, as its
  securityContext's user and group (container over pod; the pod's fsGroup and supplementalGroups as extra
  groups), with its capability set (containerd's default set, minus ``drop``, plus ``add``) as the bounding
  and inheritable set, and no_new_privs for ``allowPrivilegeEscalation: false`` (util-linux ``setpriv``);
- env: the image's ENV, the container's ``env`` (the downward API's ``spec.nodeName`` is the node's name)
  and ``envFrom`` (the store credentials Secret: dummy values, the bundle is in a ``file://`` store).

Mount paths are mapped to folders under a temporary directory: every argument that names a path under a
volume's mountPath names the mapped folder instead (an argument naming any other absolute path fails the test:
with a read-only root file system it could only be a file of the image). What is not emulated: mount
namespaces and the read-only root file system itself, seccomp, cgroup limits, the container's /etc/passwd.

The node needs nothing but its labels: the init step makes the root the agent's, the agent installs the
signed release and ``/ready`` answers 200. Without the init step, the agent fails on the root-owned folder
exactly as it did on the first real node. Runs as root (it creates root-owned folders and switches users);
elsewhere it is skipped with the reason, and under CI=true it fails.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EDGEOPS, REPO, unavailable
from tests.test_updater import http_get as updater_http_get
from tools.artifacts.bundle import publish_bundle
from tools.artifacts.release import make_release, render_release
from tools.core.signing import generate_keypair, private_key_from_pem
from tools.core.store import open_store
from tools.gitops.manifests import parse_objects
from tools.kits.fleetsim import build_golden, build_model

RING = "fleet"
NODE_NAME = "edge-arm64-0001"
VERSION = "v1.0"
DOCKERFILE = REPO / "tools" / "edge" / "Dockerfile"
# containerd's default capability set for a container (pkg/oci/spec.go, defaultUnixCaps; moby's is the same),
# what the kubelet asks for when a securityContext drops nothing.
RUNTIME_DEFAULT_CAPS = ("chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid",
                        "setuid", "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill",
                        "audit_write")  # fmt: skip
DUMMY_SECRET = {"AWS_ACCESS_KEY_ID": "AKIDNODESTART", "AWS_SECRET_ACCESS_KEY": "not-used-file-store",
                "AWS_DEFAULT_REGION": "eu-central-1"}  # fmt: skip


# --- the image, as its Dockerfile builds it --------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    entrypoint: list[str]
    env: dict[str, str]
    user: tuple[int, int]
    workdir: str


def image_from_dockerfile(path: Path = DOCKERFILE) -> Image:
    """ENTRYPOINT (exec form), ENV, USER uid:gid and the last WORKDIR of the updater's Dockerfile."""
    text = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    entrypoint: list[str] = []
    env: dict[str, str] = {}
    user = (0, 0)
    workdir = "/"
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "ENV":
            env.update(token.split("=", 1) for token in shlex.split(rest))
        elif word == "USER":
            uid, _, gid = rest.strip().partition(":")
            user = (int(uid), int(gid or uid))
        elif word == "WORKDIR":
            workdir = rest.strip()
    assert entrypoint, f"{path}: no ENTRYPOINT in exec form"
    return Image(entrypoint, env, user, workdir)


# --- the kubelet, emulated --------------------------------------------------------------------------------


@dataclass
class Kubelet:
    """Starts the containers of one pod of the built DaemonSet on this machine, as the kubelet would."""

    base: Path  # everything of this node lives under it: the host's folders, the pod's volumes
    pod: dict[str, Any]  # the pod template's spec
    objects: list[dict[str, Any]]  # the ring's built objects (the ConfigMaps the volumes name)
    image: Image
    node_name: str
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    configmap_overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # volume → key → text
    volume_dirs: dict[str, Path] = field(default_factory=dict)

    def host_path(self, path: str) -> Path:
        return self.base / "host" / path.lstrip("/")

    def create_volumes(self) -> None:
        for volume in self.pod["volumes"]:
            name = volume["name"]
            if "hostPath" in volume:
                folder = self.host_path(volume["hostPath"]["path"])
                kind = volume["hostPath"].get("type", "")
                if not folder.exists():
                    assert kind == "DirectoryOrCreate", f"hostPath {folder} of type {kind!r} must exist"
                    # pkg/volume/hostpath: os.MkdirAll(path, 0755), by the kubelet (root).
                    folder.mkdir(parents=True, mode=0o755)
                    os.chown(folder, 0, 0)
                    folder.chmod(0o755)
            elif "configMap" in volume:
                folder = self.base / "volumes" / name
                folder.mkdir(parents=True, mode=0o755)
                source = volume["configMap"]["name"]
                (configmap,) = [
                    o for o in self.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == source
                ]
                data = {**configmap["data"], **self.configmap_overrides.get(name, {})}
                mode = volume["configMap"].get("defaultMode", 0o644)
                for key, text in data.items():
                    (folder / key).write_text(text)
                    (folder / key).chmod(mode)
            elif "emptyDir" in volume:
                folder = self.base / "volumes" / name
                folder.mkdir(parents=True)
                folder.chmod(0o777)  # pkg/volume/emptydir: created 0777
            else:
                raise AssertionError(f"volume {name}: a type this emulation does not know")
            self.volume_dirs[name] = folder

    def _mounts(self, container: dict[str, Any]) -> dict[str, Path]:
        return {m["mountPath"]: self.volume_dirs[m["name"]] for m in container.get("volumeMounts", [])}

    def map_path(self, container: dict[str, Any], text: str) -> str:
        """``text`` with a leading container path (alone, or after ``--flag=``) under a mount mapped to its
        folder here. A container path under no mount is an error: the image's own files are not here."""
        mounts = self._mounts(container)
        prefix, sep, value = text.partition("=") if text.startswith("-") else ("", "", text)
        if not value.startswith("/"):
            return text
        for mount_path in sorted(mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return f"{prefix}{sep}{mounts[mount_path]}{value[len(mount_path) :]}"
        raise AssertionError(f"container {container['name']}: {text!r} names a path that no volume mounts")

    def argv(self, container: dict[str, Any], *, replace: dict[str, str] | None = None) -> list[str]:
        """``command`` (else the image's ENTRYPOINT) + ``args``, paths mapped; ``replace``: flag → value."""
        command = container.get("command") or self.image.entrypoint
        args = list(container.get("args", []))
        for flag, value in (replace or {}).items():
            hits = [i for i, a in enumerate(args) if a.startswith(f"{flag}=")]
            assert len(hits) == 1, f"{flag} appears {len(hits)} times in {args}"
            args[hits[0]] = f"{flag}={value}"
        argv = [self.map_path(container, a) for a in [*command, *args]]
        executable = EDGEOPS if argv[0] == "edgeops" else shutil.which(argv[0])
        assert executable, f"{argv[0]} is not on this machine"
        return [executable, *argv[1:]]

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {**self.image.env, "HOME": "/nonexistent"}  # the image user's home (useradd --home-dir)
        for source in container.get("envFrom", []):
            ref = source["secretRef"]
            if ref["name"] not in self.secrets:
                # The kubelet does not start the container: CreateContainerConfigError, "secret not found".
                assert ref.get("optional"), f"secret {ref['name']} is required and absent"
                continue
            env.update(self.secrets[ref["name"]])
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
            else:
                assert var["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}, var
                env[var["name"]] = self.node_name
        # This machine's programs first (the image's `edgeops` is this checkout's); the emptyDir at /tmp.
        env["PATH"] = f"{Path(EDGEOPS).parent}:/usr/local/bin:/usr/bin:/bin"
        if any(m["mountPath"] == "/tmp" for m in container.get("volumeMounts", [])):
            env["TMPDIR"] = self.map_path(container, "/tmp")
        return env

    def workdir(self, container: dict[str, Any]) -> Path:
        """The image's WORKDIR: its volume's folder when mounted, else a root-owned stand-in for the image's
        own (read-only) folder."""
        try:
            return Path(self.map_path(container, self.image.workdir))
        except AssertionError:
            folder = self.base / "image" / container["name"] / self.image.workdir.lstrip("/")
            folder.mkdir(parents=True, exist_ok=True)
            return folder

    def identity(self, container: dict[str, Any]) -> tuple[int, int, list[int]]:
        """uid, gid and extra groups: the container's securityContext over the pod's over the image's USER."""
        pod_sc, sc = self.pod.get("securityContext", {}), container.get("securityContext", {})
        uid = sc.get("runAsUser", pod_sc.get("runAsUser", self.image.user[0]))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", self.image.user[1]))
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
            raise AssertionError(
                f"{container['name']}: runAsNonRoot and uid 0: the kubelet refuses to start it"
            )
        groups = [
            *pod_sc.get("supplementalGroups", []),
            *([pod_sc["fsGroup"]] if "fsGroup" in pod_sc else []),
        ]
        return uid, gid, groups

    def setpriv(self, container: dict[str, Any]) -> list[str]:
        """The user, groups, capabilities and no_new_privs of ``container`` as a setpriv prefix."""
        uid, gid, groups = self.identity(container)
        sc = container.get("securityContext", {})
        caps = sc.get("capabilities", {})
        drop = {c.lower() for c in caps.get("drop", [])}
        kept = [] if "all" in drop else [c for c in RUNTIME_DEFAULT_CAPS if c not in drop]
        kept += [c.lower() for c in caps.get("add", []) if c.lower() not in kept]
        capset = "".join(f",+{c}" for c in kept)
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
        prefix += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
        prefix += [f"--inh-caps=-all{capset}", f"--bounding-set=-all{capset}"]
        if sc.get("allowPrivilegeEscalation") is False:
            prefix.append("--no-new-privs")
        return prefix

    def popen(
        self, container: dict[str, Any], *, replace: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.setpriv(container), *self.argv(container, replace=replace)],
            cwd=self.workdir(container),
            env=self.env(container),
            umask=0o022,  # the runtime's default
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, container: dict[str, Any], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        with self.popen(container) as process:
            out, _ = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, None)


# --- the node: a rendered pod, a signed release in a file:// store -----------------------------------------


@functools.cache
def built() -> list[dict[str, Any]]:
    """The ring as Argo CD applies it: ``edgeops render fleet`` (the pinned kustomize); built once."""
    result = subprocess.run([EDGEOPS, "render", RING], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return parse_objects(result.stdout)


@functools.cache
def _why_not_here() -> str | None:
    """Why this machine cannot play the kubelet (None: it can)."""
    if os.geteuid() != 0:
        return "emulating the kubelet needs root: it creates the hostPath as root and switches users"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing: it runs each container as its user and capabilities"
    probe = subprocess.run(
        ["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups", "--inh-caps=-all",
         "--bounding-set=-all", "--no-new-privs", EDGEOPS, "updater", "run", "--help"],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    if probe.returncode != 0:
        return (
            f"uid 10001 cannot run this checkout's edgeops ({probe.stderr.strip()[-200:]}): "
            "its Python and virtualenv must be readable by other users"
        )
    return None


@dataclass
class Node:
    kubelet: Kubelet
    model: bytes  # what the signed release ships: <root>/current/model.onnx once installed


@pytest.fixture
def node() -> Iterator[Node]:
    """A fresh node of the ring: a release of a real (tiny) ONNX model, signed, in a file:// store; the
    ring's ConfigMaps as built, but with this release and its public key in place of the repository's."""
    reason = _why_not_here()
    if reason:
        unavailable(reason)  # a skip with the reason; under CI=true a failure
    base = Path(tempfile.mkdtemp(prefix="edgeops-node-"))
    base.chmod(0o755)  # the agent's user must reach the store and the volumes (mkdtemp makes it 0700)
    try:
        objects = built()
        (daemonset,) = [o for o in objects if o["kind"] == "DaemonSet"]
        pod = daemonset["spec"]["template"]["spec"]
        (agent,) = pod["containers"]
        private_pem, public_pem = generate_keypair()
        private = private_key_from_pem(private_pem, source="test")
        (base / "store").mkdir()
        interface = next(a.split("=", 1)[1] for a in agent["args"] if a.startswith("--accept-interface="))
        model = build_model(0.25)
        files = {
            "model.onnx": model,
            "golden.json": build_golden(model),
            "model.json": json.dumps({"version": VERSION, "interface": interface}).encode(),
        }
        published = publish_bundle(open_store(f"file://{base / 'store'}"), VERSION, files, private)
        release = make_release(
            private, version=VERSION, interface=interface, bundle=published.uri, files=published.files
        )
        configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
        overrides: dict[str, dict[str, str]] = {}
        for volume in pod["volumes"]:
            data = configmaps[volume["configMap"]["name"]]["data"] if "configMap" in volume else {}
            for key, text in data.items():
                if key == "release.yaml":
                    overrides.setdefault(volume["name"], {})[key] = render_release(release, ring=RING)
                elif "PUBLIC KEY" in text:
                    overrides.setdefault(volume["name"], {})[key] = public_pem.decode()
        assert len(overrides) == 2, f"expected a release and a signing-key ConfigMap volume: {overrides}"
        kubelet = Kubelet(
            base, pod, objects, image_from_dockerfile(), NODE_NAME,
            secrets={"model-store-credentials": DUMMY_SECRET}, configmap_overrides=overrides,
        )  # fmt: skip
        yield Node(kubelet, model)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def model_root(kubelet: Kubelet) -> Path:
    (volume,) = [v for v in kubelet.pod["volumes"] if "hostPath" in v]
    return kubelet.host_path(volume["hostPath"]["path"])


def http_get(url: str) -> tuple[int, str]:
    """The updater tests' GET, plus "not listening yet" as status 0 (the agent's port opens after start)."""
    try:
        return updater_http_get(url)
    except OSError as exc:
        return 0, str(exc)


def owner_and_mode(path: Path) -> tuple[int, int, str]:
    st = path.stat()
    return st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))


# --- the tests ----------------------------------------------------------------------------------------------


def test_a_fresh_node_installs_the_release_and_reports_ready(node: Node) -> None:
    kubelet = node.kubelet
    kubelet.create_volumes()
    root = model_root(kubelet)
    assert owner_and_mode(root) == (0, 0, "0o755"), "the kubelet's folder, as the agent found it on day one"
    (init,) = kubelet.pod["initContainers"]
    (agent,) = kubelet.pod["containers"]
    uid, gid, _ = kubelet.identity(agent)

    done = kubelet.run(init)
    assert done.returncode == 0, done.stdout
    assert owner_and_mode(root) == (uid, gid, "0o755")
    assert kubelet.run(init).returncode == 0, "a restarted pod runs it again: it must be idempotent"

    # The agent listens where its probes look (the named port); here on a free port of the loopback.
    listen = next(a.split("=", 1)[1] for a in agent["args"] if a.startswith("--listen="))
    ports = {p["name"]: p["containerPort"] for p in agent["ports"]}
    assert int(listen.rsplit(":", 1)[1]) == ports[agent["readinessProbe"]["httpGet"]["port"]]
    ready_path = agent["readinessProbe"]["httpGet"]["path"]
    lines: list[str] = []
    with kubelet.popen(agent, replace={"--listen": "127.0.0.1:0"}) as process:
        reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 30
            address = None
            answer = (0, "")
            while answer[0] != 200:
                assert process.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, f"not ready: {answer}\n{''.join(lines)}"
                records = [json.loads(line) for line in list(lines) if line.startswith("{")]
                address = address or next((r["address"] for r in records if "address" in r), None)
                if address:
                    answer = http_get(f"http://{address}{ready_path}")
                time.sleep(0.1)
            assert answer == (200, f"serving {VERSION}\n")
        finally:
            process.terminate()  # SIGTERM, as the kubelet stops a container
            code = process.wait(30)
            reader.join(10)
    assert code == 0, "".join(lines)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(r.get("node") == NODE_NAME for r in records), "NODE_NAME comes from the downward API"

    assert os.readlink(root / "current") == VERSION
    assert (root / "current" / "model.onnx").read_bytes() == node.model
    assert owner_and_mode(root / VERSION)[:2] == (uid, gid)
    # The inference service, whatever user it runs as, reads <root>/current/model.onnx.
    model_file = str(root / "current" / "model.onnx")
    other = subprocess.run(
        ["setpriv", "--reuid=20002", "--regid=20002", "--clear-groups", "cat", model_file],
        capture_output=True, check=False,
    )  # fmt: skip
    assert other.returncode == 0 and other.stdout == node.model, other.stderr


def test_without_the_init_step_the_agent_cannot_write_the_kubelets_folder(node: Node) -> None:
    """The seed's failure on the first real node, reproduced: the emulation behaves as the kubelet does."""
    kubelet = node.kubelet
    kubelet.create_volumes()
    root = model_root(kubelet)
    (agent,) = kubelet.pod["containers"]
    with kubelet.popen(agent, replace={"--listen": "127.0.0.1:0"}) as process:
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 1, out
    assert ".updater.lock" in out and "Permission denied" in out, out
    assert owner_and_mode(root) == (0, 0, "0o755") and list(root.iterdir()) == []


def test_the_init_step_may_chown_and_nothing_more(node: Node) -> None:
    """A root made by hand with another mode stops the init step: it may chown, never chmod another user's
    folder (no FOWNER). Unrestricted root fixes the same folder, so the emulation applies the capabilities."""
    kubelet = node.kubelet
    kubelet.create_volumes()
    root = model_root(kubelet)
    root.chmod(0o700)
    (init,) = kubelet.pod["initContainers"]
    refused = kubelet.run(init)
    assert refused.returncode != 0 and "Operation not permitted" in refused.stdout, refused.stdout
    assert owner_and_mode(root)[2] == "0o700"
    as_full_root = subprocess.run(kubelet.argv(init), capture_output=True, text=True, check=False)
    assert as_full_root.returncode == 0, as_full_root.stderr
    assert owner_and_mode(root) == (*kubelet.identity(kubelet.pod["containers"][0])[:2], "0o755")
