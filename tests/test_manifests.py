"""The cluster side as Argo CD sees it: rings build with the pinned kustomize and validate strictly."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EDGEOPS, REPO
from tests.releasekit import INTERFACE, Keys, keys
from tools.artifacts.bundle import FileEntry
from tools.artifacts.release import Release, edit_release_text, make_release, parse_release
from tools.gitops.manifests import (
    kustomize_build,
    parse_objects,
    validate_manifests,
    validate_object,
)

RINGS = {"pilot": "environments/pilot", "fleet": "environments/fleet"}


def build(ring: str, root: Path = REPO) -> list[dict[str, Any]]:
    return parse_objects(kustomize_build(root / RINGS[ring], repo_root=REPO))


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_every_ring_and_the_argo_objects_validate_strictly(
    crds: dict[tuple[str, str], dict[str, Any]],
) -> None:
    report = validate_manifests(REPO, RINGS, ["manifests/argocd"])
    assert report.problems == []
    assert report.built == {"ring pilot": 5, "ring fleet": 5, "manifests/argocd": 2}
    result = subprocess.run(
        [EDGEOPS, "validate", "manifests"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "all manifests valid" in result.stdout, result.stderr


def test_strict_validation_catches_unknown_fields(crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    ds = by_kind(build("pilot"), "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    problems = validate_object(ds, crds)
    assert problems and "imagePullPolicyy" in problems[0]
    (appset,) = [o for o in parse_objects(kustomize_build(REPO / "manifests/argocd", repo_root=REPO))
                 if o["kind"] == "ApplicationSet"]  # fmt: skip
    appset["spec"]["template"]["spec"]["syncPolicy"]["automated"]["prunee"] = True
    problems = validate_object(appset, crds)
    assert problems and "prunee" in " ".join(problems)


def _normalised(value: Any, ring: str) -> Any:
    """The value with the ring's name and kustomize's content-hash suffixes taken out of every string."""
    if isinstance(value, dict):
        return {_normalised(k, ring): _normalised(v, ring) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v, ring) for v in value]
    if isinstance(value, str):
        return re.sub(r"-[a-z0-9]{10}$", "-HASH", value.replace(ring, "RING"))
    return value


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [path]


def test_rings_differ_only_where_they_should() -> None:
    pilot, fleet = build("pilot"), build("fleet")
    diffs: list[str] = []
    for kind in ("Namespace", "ServiceAccount", "DaemonSet"):
        a, b = _normalised(by_kind(pilot, kind), "pilot"), _normalised(by_kind(fleet, kind), "fleet")
        diffs += [f"{kind}{d}" for d in _differences(a, b)]
    allowed = {
        "DaemonSet.spec.updateStrategy.rollingUpdate.maxUnavailable",  # the rollout budget
        # The ring requirement, after the shared edge and arch ones (tests/test_ring_ownership.py): In pilot
        # vs NotIn pilot...
        "DaemonSet.spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[2].operator",
        # ...and both name the pilot ring (fleet = every edge node that is not pilot), which the ring-name
        # normalisation turns into RING on one side only.
        "DaemonSet.spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[2].values[0]",
    }
    assert set(diffs) == allowed
    ds = {r: by_kind(o, "DaemonSet") for r, o in (("pilot", pilot), ("fleet", fleet))}
    assert ds["pilot"]["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == "100%"
    assert ds["fleet"]["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == "10%"


def _release(
    k: Keys, version: str, *, previous: Release | None = None, percent: float | None = None
) -> Release:
    digest = hashlib.sha256(version.encode()).hexdigest()
    files = {
        name: FileEntry(sha256=digest, bytes=size) for name, size in (("model.onnx", 999), ("golden.json", 9))
    }
    release = make_release(
        k.private, version=version, interface=INTERFACE, bundle=f"s3://models/models/{version}/", files=files
    )
    return dataclasses.replace(release, previous=previous, rollout_percent=percent)


def test_a_release_changes_the_configmap_data_never_the_daemonset(tmp_path: Path) -> None:
    """Issue #16: the DaemonSet object is byte-identical at every release and wave of a ring, so Kubernetes'
    DaemonSet controller (and its maxUnavailable, which counts offline nodes) never paces a model rollout;
    only the stable-name ConfigMap's data changes, and the agents reconcile in their waves."""
    for folder in ("manifests", "environments"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    k = keys()
    v1 = _release(k, "v1.0")
    releases = {
        "no release": None,
        "v1.0": v1,
        "v1.1 at 5%": _release(k, "v1.1", previous=v1, percent=5),
        "v1.1 at 25%": _release(k, "v1.1", previous=v1, percent=25),
        "v1.1 at 100%": _release(k, "v1.1", previous=v1, percent=100),
        "v1.2 at 5%": _release(k, "v1.2", previous=_release(k, "v1.1"), percent=5),
    }
    file = tmp_path / "environments" / "fleet" / "release.yaml"
    original = file.read_text()
    daemonsets: dict[str, str] = {}
    configmaps: dict[str, dict[str, Any]] = {}
    for name, release in releases.items():
        file.write_text(edit_release_text(original, release, ring="fleet", source=str(file)))
        rendered = kustomize_build(tmp_path / RINGS["fleet"], repo_root=REPO)
        objects = parse_objects(rendered)
        (daemonset,) = [d for d in rendered.split("\n---\n") if "\nkind: DaemonSet\n" in f"\n{d}\n"]
        daemonsets[name] = daemonset  # the bytes Argo CD applies
        (configmap,) = [o for o in objects if o["kind"] == "ConfigMap" and "release.yaml" in o["data"]]
        configmaps[name] = configmap
        assert parse_release(configmap["data"]["release.yaml"], source=name) == release
    assert len(set(daemonsets.values())) == 1, "a release changed the DaemonSet"
    assert {c["metadata"]["name"] for c in configmaps.values()} == {"model-release-fleet"}
    assert len({c["data"]["release.yaml"] for c in configmaps.values()}) == len(releases)
    volume = next(
        v for v in by_kind(build("fleet"), "DaemonSet")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "release"
    )  # fmt: skip
    assert volume["configMap"]["name"] == "model-release-fleet"  # the ConfigMap the agents mount


def test_hardening_of_the_agent() -> None:
    objects = build("fleet")
    assert by_kind(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = by_kind(objects, "DaemonSet")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert {p["httpGet"]["path"] for p in (container["readinessProbe"], container["livenessProbe"])} == {
        "/ready",
        "/healthz",
    }
    assert any(t["key"] == "context-edge.io/edge" for t in pod["tolerations"])
    # Required: a node without S3 credentials does not start (and says why), never fails every download.
    assert container["envFrom"] == [{"secretRef": {"name": "model-store-credentials"}}]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["release"]["readOnly"] and mounts["signing"]["readOnly"]
    assert "fsGroup" not in pod["securityContext"]  # it never applied to the hostPath (daemonset.yaml)


@pytest.mark.parametrize("ring", ["pilot", "fleet"])
def test_the_init_step_hands_the_model_root_to_the_agent_with_chown_only(ring: str) -> None:
    """Issue 17: the kubelet creates the hostPath root as root, 0755; one init step, in the agent's own image,
    with one capability, makes it the agent's (tests/test_node_start.py runs it as the kubelet would)."""
    objects = build(ring)
    pod = by_kind(objects, "DaemonSet")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (agent,) = pod["containers"]
    assert init["image"] == agent["image"], "one image to pin and pull"
    sc = init["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert (sc["runAsUser"], sc["runAsNonRoot"]) == (0, False)
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert "privileged" not in sc
    (root_mount,) = init["volumeMounts"]  # the model root and nothing else
    agent_mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert root_mount["mountPath"] == agent_mounts[root_mount["name"]]
    (volume,) = [v for v in pod["volumes"] if v["name"] == root_mount["name"]]
    assert volume["hostPath"]["type"] == "DirectoryOrCreate"
    owner = f"{agent['securityContext'].get('runAsUser', pod['securityContext']['runAsUser'])}"
    assert init["command"][:2] == ["install", "-d"] and init["command"][-1] == root_mount["mountPath"]
    assert init["command"][init["command"].index("-o") + 1] == owner
    assert init["command"][init["command"].index("-m") + 1] == "0755"
    assert f"--root={root_mount['mountPath']}" in agent["args"]
    # Pod Security: a hostPath is forbidden from Baseline up, so the ring's namespace enforces Privileged
    # and warns at Baseline, audits at Restricted, so the exception stays visible.
    labels = by_kind(objects, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == "baseline"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"


@pytest.mark.parametrize("ring", ["pilot", "fleet"])
def test_every_agent_knows_its_node_name_for_its_wave(ring: str) -> None:
    """The updater places itself in a rollout wave by NODE_NAME: the built DaemonSet must set it from the
    downward API, or every node would stay outside any partial wave (tools/artifacts/release.py, for_node)."""
    (container,) = by_kind(build(ring), "DaemonSet")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_render_names_unknown_rings() -> None:
    result = subprocess.run(
        [EDGEOPS, "render", "canary"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1 and "no ring named 'canary'" in result.stderr
    ok = subprocess.run([EDGEOPS, "render", "pilot"], cwd=REPO, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "name: model-updater-pilot" in ok.stdout


def test_the_agents_accept_the_training_configs_interface() -> None:
    from training.config import load_training_config
    from training.interface import interface_hash

    args = by_kind(build("fleet"), "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["args"]
    accepted = [a.split("=", 1)[1] for a in args if a.startswith("--accept-interface=")]
    assert accepted == [interface_hash(load_training_config().data_spec())]
