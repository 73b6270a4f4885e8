"""Which nodes a pod may run on, by the scheduler's rules: its ``nodeSelector`` and required node affinity.

A stand-in for upstream's code, for tests that ask "which ring owns this node" of the built DaemonSets
(tests/test_ring_ownership.py). It follows, rule for rule:

- ``k8s.io/component-helpers/scheduling/corev1/nodeaffinity`` (``GetRequiredNodeAffinity``): a pod fits a
  node when its ``nodeSelector`` matches (every key present with exactly that value) AND its
  ``requiredDuringSchedulingIgnoredDuringExecution`` matches; within that, the ``nodeSelectorTerms`` are
  ORed, a term with neither ``matchExpressions`` nor ``matchFields`` selects nothing, and a term that does not
  parse matches nothing; the ``matchExpressions`` of a term are ANDed (Kubernetes docs, "Assign Pods to
  Nodes", node affinity; the API's NodeSelector: "The terms are ORed").
- ``k8s.io/apimachinery/pkg/labels`` (``Requirement.Matches``), which the node affinity's expressions become:
  ``In``: the key is present and its value listed; ``NotIn``: the key is absent, or its value not listed;
  ``Exists`` / ``DoesNotExist``: presence; ``Gt`` / ``Lt``: the key is present, its value and the single
  listed value both parse as 64-bit integers, and compare so (absent or non-integer values do not match).
  ``NewRequirement``'s checks: ``In``/``NotIn`` need values, ``Exists``/``DoesNotExist`` none,
  ``Gt``/``Lt`` exactly one integer.
- ``matchFields``: only ``metadata.name`` with ``In``/``NotIn`` and exactly one value (upstream's
  ``nodeSelectorRequirementsAsFieldSelector``); the DaemonSet controller itself adds such a term per node.

What it does not model: taints and tolerations, resources, the preferred affinity (scoring only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tools.core.errors import ConfigError

__all__ = ["expression_matches", "pod_fits_node", "term_matches"]

_INT64 = (-(2**63), 2**63 - 1)


def _int64(text: str) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``: an optional sign and decimal digits, in range; else None."""
    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    value = int(text)
    return value if _INT64[0] <= value <= _INT64[1] else None


def _check(expr: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """The requirement's parts, or ConfigError where the API server would reject it (upstream: a parse
    error, and the term matches nothing)."""
    key, op, values = expr.get("key"), expr.get("operator"), list(expr.get("values") or [])
    if not isinstance(key, str) or not key:
        raise ConfigError(f"node selector requirement {dict(expr)}: a key is required")
    if op not in ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"):
        raise ConfigError(f"{key}: {op!r} is not a valid node selector operator")
    if not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{key} {op}: values are strings (quote `true`, numbers), got {values}")
    if op in ("In", "NotIn") and not values:
        raise ConfigError(f"{key} {op}: at least one value is required")
    if op in ("Exists", "DoesNotExist") and values:
        raise ConfigError(f"{key} {op}: values must be empty")
    if op in ("Gt", "Lt") and (len(values) != 1 or _int64(str(values[0])) is None):
        raise ConfigError(f"{key} {op}: exactly one integer value is required, got {values}")
    return key, op, values


def expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """One ``matchExpressions`` entry against a node's labels (``labels.Requirement.Matches``)."""
    key, op, values = _check(expr)
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values  # an absent key is "not in"
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if not present:  # Gt, Lt
        return False
    have, want = _int64(labels[key]), _int64(values[0])
    if have is None or want is None:
        return False
    return have > want if op == "Gt" else have < want


def _field_matches(expr: Mapping[str, Any], node_name: str) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), list(expr.get("values") or [])
    if key != "metadata.name" or op not in ("In", "NotIn") or len(values) != 1:
        raise ConfigError(f"matchFields {dict(expr)}: only metadata.name In/NotIn one value is supported")
    named: bool = node_name == values[0]
    return named if op == "In" else not named


def term_matches(term: Mapping[str, Any], labels: Mapping[str, str], node_name: str = "") -> bool:
    """One ``nodeSelectorTerms`` entry: its expressions ANDed; an empty term selects nothing."""
    expressions: Sequence[Mapping[str, Any]] = term.get("matchExpressions") or []
    fields: Sequence[Mapping[str, Any]] = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    try:
        if not all(expression_matches(e, labels) for e in expressions):
            return False
        # Upstream checks the fields only when the node has any (its name): a nameless node passes.
        return not node_name or all(_field_matches(f, node_name) for f in fields)
    except ConfigError:
        return False  # upstream: a term that does not parse matches nothing (the others still may)


def pod_fits_node(pod_spec: Mapping[str, Any], labels: Mapping[str, str], node_name: str = "") -> bool:
    """Whether the scheduler (or the DaemonSet controller) may place a pod of ``pod_spec`` on the node.

    ``pod_spec`` is a pod template's ``spec``; ``labels`` the node's labels.
    """
    selector: Mapping[str, str] = pod_spec.get("nodeSelector") or {}
    if any(key not in labels or labels[key] != value for key, value in selector.items()):
        return False
    affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    return any(term_matches(t, labels, node_name) for t in required.get("nodeSelectorTerms") or [])
