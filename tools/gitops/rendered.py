"""What a ring renders, as ``edgeops validate pr`` judges it: the release its nodes read, and the rest.

A ring's nodes run whatever ``kustomize build <ring folder>`` gives Argo CD, not whatever its release file
says: a PR that points the ring's ``configMapGenerator`` at another file, patches the ConfigMap's data, or
mounts another ConfigMap at the updater's ``--release`` path changes the ring's model without touching
``release.yaml``. So the policy builds each ring at the PR's base and head (in trees exported from git, never
the checkout) and reads, from the objects themselves, which text every container started with
``--release=PATH`` would find at ``PATH``: the volume mounted there, the ConfigMap behind it, the key.

:class:`RingRender` keeps that (``releases``) and the ``shape`` of the ring: every object, canonical, with
the data the release rules judge (the release ConfigMap), the signing keys (rotated by their own runbook, for
every ring at once) and the updater's image (the agent rules judge it) left out. Two renders of a ring with
the same shape differ only in what the other rules already check.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import posixpath
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.gitops.gitrepo import Repo
from tools.gitops.images import UPDATER
from tools.gitops.manifests import kustomize_build, parse_objects

__all__ = ["RingRender", "exported_tree", "render_ring"]

# Where a pod spec sits in each workload kind (CronJob: spec.jobTemplate.spec.template.spec).
_POD_SPEC = {
    "Pod": ("spec",),
    "DaemonSet": ("spec", "template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_JUDGED_FLAGS = ("--release", "--public-key")  # files whose content other rules judge
_BLANKED = "<judged by the release and key rules>"


@dataclass(frozen=True)
class RingRender:
    releases: dict[str, str | None]  # "<kind>/<name>/<container>" -> the text its --release file holds
    shape: str  # canonical JSON of the objects, judged data left out
    sources: dict[str, str]  # reader -> where that text comes from, in words ("ConfigMap x, key y")


@contextlib.contextmanager
def exported_tree(repo: Repo, commit: str) -> Iterator[Path]:
    """The files of ``commit`` in a temporary folder (``git archive``; links that leave it are refused,
    as tarfile's ``data`` filter does)."""
    data = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=repo.root, capture_output=True, check=True
    ).stdout
    with tempfile.TemporaryDirectory(prefix="edgeops-render-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _flag_value(argv: list[Any], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if not isinstance(arg, str):
            continue
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(argv) and isinstance(argv[i + 1], str):
            return str(argv[i + 1])
    return None


def _containers(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(reader name, container, pod spec) of every container of a workload object."""
    where = _POD_SPEC.get(str(obj.get("kind")))
    spec = _dig(obj, where) if where else None
    if not isinstance(spec, dict):
        return
    name = _dig(obj, ("metadata", "name"))
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                yield f"{obj.get('kind')}/{name}/{container.get('name')}", container, spec


def _config_map_file(spec: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str] | str:
    """``(ConfigMap name, key)`` that ``path`` reads inside ``container``, or why it is not one."""
    path = posixpath.normpath(path)
    best: dict[str, Any] | None = None
    for mount in container.get("volumeMounts") or []:
        mount_path = posixpath.normpath(str(mount.get("mountPath", "")))
        inside = path == mount_path or path.startswith(mount_path.rstrip("/") + "/")
        if inside and (best is None or len(mount_path) > len(str(best.get("mountPath")))):
            best = mount
    if best is None:
        return f"no volume is mounted at {path} (the image's own file)"
    relative = posixpath.relpath(path, posixpath.normpath(str(best["mountPath"])))
    if best.get("subPath"):
        relative = str(best["subPath"]) if relative == "." else posixpath.join(str(best["subPath"]), relative)
    volume = next((v for v in spec.get("volumes") or [] if v.get("name") == best.get("name")), None)
    if volume is None:
        return f"volume {best.get('name')!r} is not defined"
    sources = [volume]
    if isinstance(volume.get("projected"), dict):
        sources = list(volume["projected"].get("sources") or [])
    for source in sources:
        ref = source.get("configMap") if isinstance(source, dict) else None
        if not isinstance(ref, dict):
            continue
        items = ref.get("items")
        if items:
            for item in items:
                if item.get("path") == relative:
                    return str(ref.get("name")), str(item.get("key"))
            continue
        return str(ref.get("name")), relative
    kinds = sorted({k for s in sources if isinstance(s, dict) for k in s if k != "name"})
    return f"volume {best.get('name')!r} is {', '.join(kinds) or 'empty'}, not a ConfigMap of this ring"


def render_ring(tree: Path, ring_path: str, *, repo_root: Path) -> RingRender:
    """Build the ring at ``tree``/``ring_path`` and read what its nodes would run (raises EdgeopsError
    with kustomize's message when it does not build)."""
    objects = parse_objects(kustomize_build(tree / ring_path, repo_root=repo_root))
    config_maps = {
        (_dig(o, ("metadata", "namespace")), _dig(o, ("metadata", "name"))): o
        for o in objects
        if o.get("kind") == "ConfigMap"
    }
    releases: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    judged: set[tuple[Any, Any]] = set()
    for obj in objects:
        namespace = _dig(obj, ("metadata", "namespace"))
        for reader, container, spec in _containers(obj):
            argv = [*(container.get("command") or []), *(container.get("args") or [])]
            for flag in _JUDGED_FLAGS:
                value = _flag_value(argv, flag)
                if value is None:
                    continue
                found = _config_map_file(spec, container, value)
                text: str | None = None
                if isinstance(found, tuple):
                    name, key = found
                    judged.add((namespace, name))
                    cm = config_maps.get((namespace, name))
                    data = (cm or {}).get("data") or {}
                    text = data.get(key) if isinstance(data.get(key), str) else None
                    where = f"ConfigMap {name}, key {key}" + ("" if cm else " (not in this render)")
                else:
                    where = found
                if flag == "--release":
                    releases[reader], sources[reader] = text, where
    shaped = []
    for original in objects:
        obj = copy.deepcopy(original)
        ident = (_dig(obj, ("metadata", "namespace")), _dig(obj, ("metadata", "name")))
        if obj.get("kind") == "ConfigMap" and ident in judged:
            obj["data"] = _BLANKED
        for _, container, _ in _containers(obj):
            if str(container.get("image", "")).split("@")[0].rsplit(":", 1)[0] == UPDATER or (
                container.get("name") == "model-updater"
            ):
                container["image"] = "<the agent rules judge the updater's image>"
        shaped.append(obj)
    shaped.sort(key=lambda o: json.dumps([o.get("kind"), o.get("metadata")], sort_keys=True, default=str))
    return RingRender(releases, json.dumps(shaped, sort_keys=True, default=str), sources)
