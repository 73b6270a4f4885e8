"""Which ring owns which node, read from the built DaemonSets by the scheduler's own rules.

Every ring of edgeops.yaml is built with the pinned kustomize (what Argo CD syncs) and its DaemonSet's
``nodeSelector`` and required node affinity are evaluated against the nodes a real cluster has: the K3s
server, x86 GPU boxes, edge nodes someone forgot to label, pilot and fleet Jetsons. Every edge arm64 node is
owned by exactly one ring, and no other node by any. The rules are upstream's (tools/kits/nodeaffinity.py
cites them), so a ring.yaml that relies on a convenient misreading (NotIn on an absent label, two terms
meant as AND) fails here.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.conftest import REPO
from tools.core.config import load_config
from tools.gitops.manifests import kustomize_build, parse_objects, selects_node
from tools.kits.nodeaffinity import expression_matches, pod_fits_node, term_matches

EDGE, RING, ARCH = "context-edge.io/edge", "context-edge.io/ring", "kubernetes.io/arch"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


@functools.cache
def ring_daemonsets() -> dict[str, dict[str, Any]]:
    """Each ring's model-updater DaemonSet, as ``kustomize build`` of its folder renders it."""
    rings = load_config(REPO / "edgeops.yaml").rings
    built = {}
    for name, ring in rings.items():
        objects = parse_objects(kustomize_build(REPO / ring.path, repo_root=REPO))
        (daemonset,) = [o for o in objects if o["kind"] == "DaemonSet"]
        built[name] = daemonset
    return built


def owners(labels: dict[str, str]) -> list[str]:
    daemonsets = ring_daemonsets()
    return [ring for ring, ds in daemonsets.items() if pod_fits_node(ds["spec"]["template"]["spec"], labels)]


def node(arch: str, **labels: str) -> dict[str, str]:
    """Labels as the kubelet registers them (os, arch, hostname) plus ``labels``."""
    return {"kubernetes.io/os": "linux", ARCH: arch, "kubernetes.io/hostname": "n", **labels}


# (name, labels, the ring that owns it or None)
NODES: list[tuple[str, dict[str, str], str | None]] = [
    # K3s labels its server control-plane=true and does not taint it: only the labels keep agents off it.
    ("k3s server (amd64)", node("amd64", **{CONTROL_PLANE: "true", "node-role.kubernetes.io/master": "true"}),
     None),
    ("kubeadm control plane (arm64)", node("arm64", **{CONTROL_PLANE: ""}), None),
    ("control plane labelled pilot by mistake", node("arm64", **{CONTROL_PLANE: "", RING: "pilot"}), None),
    ("x86 GPU node with the edge label", node("amd64", **{EDGE: "true", "nvidia.com/gpu.present": "true"}),
     None),
    ("x86 GPU pilot node", node("amd64", **{EDGE: "true", RING: "pilot"}), None),
    ("unlabelled arm64 node", node("arm64"), None),
    ("arm64 node labelled pilot but not edge", node("arm64", **{RING: "pilot"}), None),
    ("edge label set to false", node("arm64", **{EDGE: "false"}), None),
    ("node without an arch label", {EDGE: "true"}, None),
    ("edge arm64 node", node("arm64", **{EDGE: "true"}), "fleet"),
    ("edge arm64 node labelled fleet", node("arm64", **{EDGE: "true", RING: "fleet"}), "fleet"),
    ("edge arm64 node of another ring name", node("arm64", **{EDGE: "true", RING: "canary"}), "fleet"),
    ("edge arm64 pilot node", node("arm64", **{EDGE: "true", RING: "pilot"}), "pilot"),
    ("edge arm64 pilot Jetson with more labels",
     node("arm64", **{EDGE: "true", RING: "pilot", "nvidia.com/jetpack": "6.0", "topology.kubernetes.io/zone":
                      "plant-3"}), "pilot"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "labels", "owner"), NODES, ids=[n for n, _, _ in NODES])
def test_every_edge_arm64_node_has_exactly_one_ring_and_no_other_node_any(
    name: str, labels: dict[str, str], owner: str | None
) -> None:
    assert owners(labels) == ([owner] if owner else []), name


@pytest.mark.parametrize(("name", "labels", "owner"), NODES, ids=[n for n, _, _ in NODES])
def test_the_delivery_sides_own_check_agrees(name: str, labels: dict[str, str], owner: str | None) -> None:
    """tools/gitops/manifests.py's selects_node (the fleet simulator places its nodes with it) gives the same
    answer as the upstream rules on every node above."""
    found = [ring for ring, ds in ring_daemonsets().items() if selects_node(ds, labels)]
    assert found == ([owner] if owner else []), name


def test_both_rings_require_the_edge_label_and_the_architecture_in_one_term() -> None:
    """A strategic-merge patch replaces the nodeSelectorTerms list: what the rings share must be in each
    ring's one term, ANDed with its ring requirement (a second term would be ORed)."""
    for ring, ds in ring_daemonsets().items():
        required = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        (term,) = required["nodeSelectorTerms"]
        expressions = {e["key"]: (e["operator"], e.get("values")) for e in term["matchExpressions"]}
        assert expressions[EDGE] == ("In", ["true"]), ring
        assert expressions[ARCH] == ("In", ["arm64"]), ring
        assert expressions[RING] == (("In", ["pilot"]) if ring == "pilot" else ("NotIn", ["pilot"])), ring


def test_a_fork_with_x86_edge_boxes_lists_amd64_in_both_rings() -> None:
    """docs/cluster.md: a fork adds "amd64" to the arch values in both ring.yaml files; then x86 edge nodes
    join the rings by the same rules, and non-edge x86 nodes still join none."""
    widened = {}
    for ring, ds in ring_daemonsets().items():
        spec = ds["spec"]["template"]["spec"]
        (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        exprs = [
            {**e, "values": ["arm64", "amd64"]} if e["key"] == ARCH else e for e in term["matchExpressions"]
        ]
        widened[ring] = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": exprs}]}}}}  # fmt: skip

    def owned(labels: dict[str, str]) -> list[str]:
        return [ring for ring, spec in widened.items() if pod_fits_node(spec, labels)]

    assert owned(node("amd64", **{EDGE: "true"})) == ["fleet"]
    assert owned(node("amd64", **{EDGE: "true", RING: "pilot"})) == ["pilot"]
    assert owned(node("amd64", **{CONTROL_PLANE: "true"})) == []
    assert owned(node("riscv64", **{EDGE: "true"})) == []


# --- the rules themselves, as upstream states them -------------------------------------------------------


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": op, "values": list(values)} if values else {"key": key, "operator": op}


@pytest.mark.parametrize(
    ("requirement", "labels", "matches"),
    [
        (expr("a", "In", "x", "y"), {"a": "y"}, True),
        (expr("a", "In", "x"), {"a": "z"}, False),
        (expr("a", "In", "x"), {}, False),  # In needs the key
        (expr("a", "NotIn", "x"), {}, True),  # an absent key is "not in" (labels.Requirement.Matches)
        (expr("a", "NotIn", "x"), {"a": "x"}, False),
        (expr("a", "NotIn", "x"), {"a": ""}, True),
        (expr("a", "Exists"), {"a": ""}, True),  # an empty value still exists
        (expr("a", "Exists"), {}, False),
        (expr("a", "DoesNotExist"), {}, True),
        (expr("a", "DoesNotExist"), {"a": "x"}, False),
        (expr("n", "Gt", "4"), {"n": "5"}, True),
        (expr("n", "Gt", "5"), {"n": "5"}, False),
        (expr("n", "Gt", "-1"), {"n": "+0"}, True),  # strconv.ParseInt takes a sign
        (expr("n", "Lt", "5"), {"n": "4"}, True),
        (expr("n", "Lt", "5"), {}, False),  # Gt/Lt need the key
        (expr("n", "Gt", "1"), {"n": "two"}, False),  # ...and an integer value on the node
        (expr("n", "Gt", "1"), {"n": "9223372036854775808"}, False),  # beyond int64: no match
        (expr("n", "Lt", "1"), {"n": "0.5"}, False),
    ],
)
def test_operators_follow_upstream(
    requirement: dict[str, Any], labels: dict[str, str], matches: bool
) -> None:
    assert expression_matches(requirement, labels) is matches


def test_terms_are_ored_expressions_anded_and_an_empty_term_selects_nothing() -> None:
    a_and_b = {"matchExpressions": [expr("a", "Exists"), expr("b", "Exists")]}
    assert term_matches(a_and_b, {"a": "1", "b": "1"})
    assert not term_matches(a_and_b, {"a": "1"})
    assert not term_matches({}, {"a": "1"})  # nil or empty term selects no objects
    assert not term_matches({"matchExpressions": []}, {})

    def spec(*terms: dict[str, Any], selector: dict[str, str] | None = None) -> dict[str, Any]:
        required = {"nodeSelectorTerms": list(terms)}
        out: dict[str, Any] = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                                                             required}}}  # fmt: skip
        return {**out, "nodeSelector": selector} if selector else out

    a_or_b = spec({"matchExpressions": [expr("a", "Exists")]}, {"matchExpressions": [expr("b", "Exists")]})
    assert pod_fits_node(a_or_b, {"b": "1"})
    assert not pod_fits_node(a_or_b, {"c": "1"})
    assert not pod_fits_node(spec(), {"a": "1"})  # no terms: no node
    assert pod_fits_node({}, {}), "no nodeSelector and no required affinity: every node"
    # nodeSelector AND affinity; a nodeSelector key must be present with exactly that value
    both = spec({"matchExpressions": [expr("a", "Exists")]}, selector={"zone": "x"})
    assert pod_fits_node(both, {"a": "1", "zone": "x"})
    assert not pod_fits_node(both, {"a": "1"})
    assert not pod_fits_node(both, {"zone": "x"})
    # A term that does not parse matches nothing; the other terms still may (NewLazyErrorNodeSelector).
    broken = {"matchExpressions": [expr("n", "Gt", "1", "2")]}
    assert not pod_fits_node(spec(broken), {"n": "5"})
    assert pod_fits_node(spec(broken, {"matchExpressions": [expr("n", "Exists")]}), {"n": "5"})
    # matchFields: the node's name (what the DaemonSet controller pins each of its pods with)
    pinned = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["edge-7"]}]}
    assert term_matches(pinned, {}, "edge-7")
    assert not term_matches(pinned, {}, "edge-8")
