"""What the repository vendors from upstream (tools/gitops/vendored): the Argo CRD schemas and
the action pins."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tools.core.errors import ConfigError, EdgeopsError
from tools.gitops.manifests import VENDORED_CRDS, crd_folder, load_crd_schemas, validate_object
from tools.gitops.vendored.refresh import (
    ARGO,
    PINS,
    compact_crd,
    parse_pins,
    read_upstream,
    refresh_crds,
    refresh_pins,
)

SHARED_SCHEMAS = REPO.parent / "shared" / "schemas"  # the originals, in this project's workspace only

KINDS = {"Application", "ApplicationSet", "AppProject", "Workflow", "WorkflowTemplate", "CronWorkflow"}

# A CRD in upstream's form, small: a property literally named `description` must survive the compaction.
TOY_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: toys.example.io
spec:
  group: example.io
  names: {kind: Toy, plural: toys}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          description: A toy.
          type: object
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            spec:
              description: What the toy is.
              type: object
              required: [size]
              properties:
                description: {type: string, description: a field named description}
                size: {type: integer, minimum: 1, description: how big}
                tags:
                  type: array
                  items: {type: string, description: one tag}
"""


def test_the_six_argo_kinds_are_vendored_with_their_provenance(tmp_path: Path) -> None:
    pinned = {
        (src["repository"], path): (src["commit"], digest, src["license"])
        for src in read_upstream()
        for path, digest in src["files"].items()
    }
    seen = set()
    for path in sorted(ARGO.glob("*.json")):
        doc = json.loads(path.read_text())
        source = doc["source"]
        assert (source["commit"], source["sha256"], source["license"]) == pinned[
            (source["repository"], source["path"])
        ], path.name
        assert path.name == f"{doc['kind']}.json" and doc["versions"], path.name
        seen.add(doc["kind"])
    assert seen == KINDS
    assert sum(p.stat().st_size for p in ARGO.glob("*.json")) < 2_000_000  # compact: upstream is 10 MB
    schemas = load_crd_schemas(VENDORED_CRDS)
    assert {kind for _, kind in schemas} == KINDS
    assert ("argoproj.io/v1alpha1", "Workflow") in schemas

    # In this project's workspace the originals sit beside the checkout: the refresh reproduces the
    # vendored bytes from them exactly (elsewhere the provenance above is what can be checked).
    if SHARED_SCHEMAS.is_dir():
        before = {p.name: p.read_bytes() for p in ARGO.glob("*.json")}
        written = refresh_crds(from_dir=SHARED_SCHEMAS, out_dir=tmp_path, say=lambda _: None)
        assert {p.name: p.read_bytes() for p in written} == before


def test_compaction_drops_description_texts_and_keeps_every_rule() -> None:
    name, data = compact_crd(TOY_CRD, {"repository": "example/toys", "path": "toy.yaml"})
    assert name == "Toy.json"
    doc = json.loads(data)
    spec = doc["versions"]["v1"]["properties"]["spec"]
    assert "description" not in doc["versions"]["v1"] and "description" not in spec
    assert spec["properties"]["description"] == {"type": "string"}  # the property of that name is kept
    assert spec["properties"]["size"] == {"type": "integer", "minimum": 1}
    assert spec["properties"]["tags"]["items"] == {"type": "string"}
    assert spec["required"] == ["size"]


def test_the_compact_form_validates_exactly_as_the_upstream_file(tmp_path: Path) -> None:
    (tmp_path / "yaml").mkdir()
    (tmp_path / "yaml" / "toy.yaml").write_text(TOY_CRD)
    (tmp_path / "json").mkdir()
    name, data = compact_crd(TOY_CRD, {"repository": "example/toys", "path": "toy.yaml"})
    (tmp_path / "json" / name).write_bytes(data)
    from_yaml, from_json = load_crd_schemas(tmp_path / "yaml"), load_crd_schemas(tmp_path / "json")
    objects = [
        {"apiVersion": "example.io/v1", "kind": "Toy", "metadata": {"name": "ok"}, "spec": {"size": 2}},
        {"apiVersion": "example.io/v1", "kind": "Toy", "metadata": {"name": "a"}, "spec": {"size": 0}},
        {"apiVersion": "example.io/v1", "kind": "Toy", "metadata": {"name": "b"}, "spec": {"sise": 2}},
        {"apiVersion": "example.io/v1", "kind": "Toy", "metadata": {"name": "c"}, "spec": {"size": 1,
         "description": 3, "tags": ["x", 4]}},
    ]  # fmt: skip
    verdicts = [validate_object(o, from_yaml) for o in objects]
    assert verdicts == [validate_object(o, from_json) for o in objects]
    assert verdicts[0] == [] and all(verdicts[1:])
    assert any("sise" in p for p in verdicts[2])  # strict: unknown fields are errors


def _toy_upstream(tmp_path: Path, digest: str) -> Path:
    upstream = tmp_path / "upstream.json"
    upstream.write_text(json.dumps({"sources": [{
        "repository": "example/toys", "license": "Apache-2.0", "commit": "0" * 40,
        "files": {"crds/toy.yaml": digest},
    }]}))  # fmt: skip
    return upstream


def test_refresh_checks_digests_and_writes_all_or_nothing(tmp_path: Path) -> None:
    source = tmp_path / "upstream-files" / "crds"
    source.mkdir(parents=True)
    (source / "toy.yaml").write_text(TOY_CRD)
    good = hashlib.sha256(TOY_CRD.encode()).hexdigest()
    out = tmp_path / "argo"
    out.mkdir()
    (out / "Old.json").write_text("{}")  # a kind no longer listed is removed

    written = refresh_crds(
        from_dir=tmp_path / "upstream-files", out_dir=out, upstream=_toy_upstream(tmp_path, good),
        say=lambda _: None,
    )  # fmt: skip
    assert [p.name for p in written] == ["Toy.json"] and not (out / "Old.json").exists()
    assert json.loads((out / "Toy.json").read_text())["source"]["sha256"] == good
    kept = (out / "Toy.json").read_bytes()

    (source / "toy.yaml").write_text(TOY_CRD.replace("minimum: 1", "minimum: 2"))
    with pytest.raises(EdgeopsError, match=r"sha256 [0-9a-f]{64}, upstream.json pins .*--update-digests"):
        refresh_crds(from_dir=tmp_path / "upstream-files", out_dir=out,
                     upstream=_toy_upstream(tmp_path, good), say=lambda _: None)  # fmt: skip
    assert (out / "Toy.json").read_bytes() == kept  # nothing written

    upstream = _toy_upstream(tmp_path, good)
    refresh_crds(from_dir=tmp_path / "upstream-files", out_dir=out, upstream=upstream,
                 update_digests=True, say=lambda _: None)  # fmt: skip
    assert (
        json.loads((out / "Toy.json").read_text())["versions"]["v1"]["properties"]["spec"]["properties"][
            "size"
        ]["minimum"]
        == 2
    )
    new = json.loads(upstream.read_text())["sources"][0]["files"]["crds/toy.yaml"]
    assert new == hashlib.sha256((source / "toy.yaml").read_bytes()).hexdigest() != good

    with pytest.raises(EdgeopsError, match=r"no toy.yaml \(example/toys crds/toy.yaml\)"):
        refresh_crds(from_dir=tmp_path / "empty", out_dir=out, upstream=upstream, say=lambda _: None)


def test_edgeops_crd_schemas_overrides_the_vendored_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGEOPS_CRD_SCHEMAS", raising=False)
    assert crd_folder() == VENDORED_CRDS
    monkeypatch.setenv("EDGEOPS_CRD_SCHEMAS", str(tmp_path))
    assert crd_folder() == tmp_path
    monkeypatch.setenv("EDGEOPS_CRD_SCHEMAS", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"no such folder .*unset it to use the vendored schemas"):
        crd_folder()


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_pins_refresh_resolves_tags_upstream_and_shows_a_moved_one(tmp_path: Path) -> None:
    # Two action repositories as git would serve them: one annotated tag, one lightweight tag.
    remotes = tmp_path / "remotes"
    commits = {}
    for action, annotated in (("acme/checkout", True), ("acme/cache", False)):
        work = tmp_path / "work" / action
        work.mkdir(parents=True)
        _git("init", "-q", cwd=work)
        (work / "action.yml").write_text(f"name: {action}\n")
        _git("add", ".", cwd=work)
        _git("commit", "-q", "-m", "v1", cwd=work)
        _git("tag", *(["-a", "-m", "v1.0.0"] if annotated else []), "v1.0.0", cwd=work)
        commits[action] = _git("rev-parse", "HEAD", cwd=work)
        _git("clone", "-q", "--bare", str(work), str(remotes / f"{action}.git"), cwd=tmp_path)

    table = tmp_path / "pins.md"
    old = "f" * 40
    table.write_text(
        "# pins\n\n| action | tag | commit | tagged |\n|---|---|---|---|\n"
        f"| acme/checkout | v1.0.0 | {old} | 2026-01-01 |\n"
        f"| acme/cache | v1.0.0 | {commits['acme/cache']} | 2026-01-01 |\n"
    )
    said: list[str] = []
    got = refresh_pins(pins=table, remote_base=str(remotes), say=said.append)
    assert got == {action: ("v1.0.0", sha) for action, sha in commits.items()}
    assert parse_pins(table.read_text()) == got
    assert any("acme/checkout v1.0.0" in line and "the tag moved" in line for line in said)
    assert not any("acme/cache" in line and "moved" in line for line in said)

    table.write_text(table.read_text().replace("| acme/cache | v1.0.0 |", "| acme/cache | v9.9.9 |"))
    before = table.read_text()
    with pytest.raises(EdgeopsError, match=r"has no tag v9\.9\.9"):
        refresh_pins(pins=table, remote_base=str(remotes), say=said.append)
    assert table.read_text() == before


def test_pins_from_a_reviewed_table_keep_our_header(tmp_path: Path) -> None:
    ours = tmp_path / "pins.md"
    ours.write_text(PINS.read_text())
    theirs = tmp_path / "theirs.md"
    theirs.write_text(
        "# Their header\n\n| action | tag | commit | tagged |\n|---|---|---|---|\n"
        f"| actions/checkout | v8.0.0 | {'a' * 40} | 2026-11-01 |\n"
    )
    got = refresh_pins(from_file=theirs, pins=ours, say=lambda _: None)
    assert got == {"actions/checkout": ("v8.0.0", "a" * 40)}
    text = ours.read_text()
    assert text.startswith("# Action pins") and "Their header" not in text
    (tmp_path / "empty.md").write_text("nothing here\n")
    with pytest.raises(EdgeopsError, match=r"no `\| owner/name"):
        refresh_pins(from_file=tmp_path / "empty.md", pins=ours, say=lambda _: None)
