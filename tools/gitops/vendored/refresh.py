"""Refresh what edgeops vendors from upstream, so a plain clone validates and tests with nothing beside it.

    python -m tools.gitops.vendored.refresh crds                   # download the pinned CRDs, check, compact
    python -m tools.gitops.vendored.refresh crds --from DIR        # the same from a folder of upstream files
    python -m tools.gitops.vendored.refresh crds --update-digests  # after bumping a commit in upstream.json
    python -m tools.gitops.vendored.refresh pins                   # re-resolve each pinned tag (ls-remote)
    python -m tools.gitops.vendored.refresh pins --from FILE       # take a reviewed pin table (Markdown)

**CRDs.** ``upstream.json`` names, per upstream repository, the commit, the license and each CRD file with
its sha256. A refresh fetches those exact files (``raw.githubusercontent.com`` at the commit, or ``--from``),
refuses any whose digest differs, and writes one compact JSON per kind into ``argo/``: the
``openAPIV3Schema`` of every served version with the ``description`` texts removed (the API server does not
validate with them; they are 80% of the bytes), keys sorted, no white space. Property *names* are kept, a
property called ``description`` included. Each file records where it came from.

**Action pins.** ``actions-pins.md`` is the reviewed table of actions the workflows may use, each tag with
the commit it pointed to when reviewed. ``pins`` asks the action's repository (``git ls-remote``, no token)
where each tag points now, peeling annotated tags, and rewrites the commit column; a tag that moved shows
up as a diff to review, never silently. Bumping to a newer tag is Dependabot's job
(``.github/dependabot.yml``).

Both write whole files or nothing (:func:`tools.core.fsutil.write_atomic`), and nothing when a source fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tools.core.errors import EdgeopsError
from tools.core.fsutil import write_atomic
from tools.core.git import run_git

__all__ = ["HERE", "compact_crd", "main", "parse_pins", "read_upstream", "refresh_crds", "refresh_pins"]

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "upstream.json"
ARGO = HERE / "argo"
PINS = HERE / "actions-pins.md"
RAW = "https://raw.githubusercontent.com"
GITHUB = "https://github.com"

# `| owner/name | vX.Y.Z | <40 hex> |` rows of actions-pins.md (the shared form: action, tag, commit, tagged).
PIN_ROW = re.compile(r"^\| ([\w.-]+/[\w.-]+) \| (v[\w.-]+) \| ([0-9a-f]{40}) \|", re.MULTILINE)
# Keywords whose value maps property names to schemas: their keys are names, not keywords.
_NAME_MAPS = ("properties", "patternProperties", "definitions")


def read_upstream(path: Path = UPSTREAM) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = json.loads(path.read_text())["sources"]
    return sources


def _strip_descriptions(node: Any, *, names: bool = False) -> Any:
    if isinstance(node, dict):
        if names:  # {property name: schema}
            return {k: _strip_descriptions(v) for k, v in node.items()}
        return {
            k: _strip_descriptions(v, names=k in _NAME_MAPS) for k, v in node.items() if k != "description"
        }
    if isinstance(node, list):
        return [_strip_descriptions(v) for v in node]
    return node


def compact_crd(text: str, source: Mapping[str, str]) -> tuple[str, bytes]:
    """``(file name, bytes)`` of the compact form of one upstream CRD document."""
    doc = YAML(typ="safe").load(text)
    if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
        raise EdgeopsError(f"{source.get('path')}: not a CustomResourceDefinition")
    spec = doc["spec"]
    versions = {
        v["name"]: _strip_descriptions(v["schema"]["openAPIV3Schema"])
        for v in spec["versions"]
        if v.get("served", True) and "schema" in v
    }
    kind = spec["names"]["kind"]
    out = {
        "source": dict(source),
        "group": spec["group"],
        "kind": kind,
        "versions": versions,
    }
    data = json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    return f"{kind}.json", data.encode()


def _download(url: str) -> bytes:
    if not url.startswith("https://"):
        raise EdgeopsError(f"refusing to fetch {url}: https only")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https only, checked above)
            body: bytes = response.read()
            return body
    except OSError as exc:
        raise EdgeopsError(
            f"could not download {url}: {exc}; use --from DIR with the files instead"
        ) from None


def _source_reader(from_dir: Path | None) -> Callable[[str, str, str], bytes]:
    def read(repository: str, commit: str, path: str) -> bytes:
        if from_dir is None:
            return _download(f"{RAW}/{repository}/{commit}/{path}")
        # Either the repository's own layout below DIR, or the files side by side (any depth).
        for candidate in (from_dir / path, *sorted(from_dir.rglob(Path(path).name))):
            if candidate.is_file():
                return candidate.read_bytes()
        raise EdgeopsError(f"{from_dir}: no {Path(path).name} ({repository} {path}) below it")

    return read


def refresh_crds(
    *,
    from_dir: Path | None = None,
    out_dir: Path = ARGO,
    upstream: Path = UPSTREAM,
    update_digests: bool = False,
    say: Callable[[str], None] = print,
) -> list[Path]:
    """Fetch, check and compact every CRD of ``upstream``; returns the files written (all or none)."""
    read = _source_reader(from_dir)
    sources = read_upstream(upstream)
    outputs: dict[str, bytes] = {}
    for src in sources:
        for path, want in src["files"].items():
            raw = read(src["repository"], src["commit"], path)
            got = hashlib.sha256(raw).hexdigest()
            if got != want:
                if not update_digests:
                    raise EdgeopsError(
                        f"{src['repository']}@{src['commit'][:12]} {path}: sha256 {got}, upstream.json "
                        f"pins {want}. Nothing was written. If the commit in upstream.json was bumped on "
                        "purpose, rerun with --update-digests and review the diff."
                    )
                src["files"][path] = got
            provenance = {
                "repository": src["repository"],
                "path": path,
                "commit": src["commit"],
                "sha256": got,
                "license": src["license"],
            }
            name, data = compact_crd(raw.decode(), provenance)
            outputs[name] = data
            say(f"{src['repository']} {path}: {len(raw):,} bytes -> argo/{name} {len(data):,} bytes")
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = [p for p in out_dir.glob("*.json") if p.name not in outputs]
    written = []
    for name, data in sorted(outputs.items()):
        target = out_dir / name
        if not target.is_file() or target.read_bytes() != data:
            write_atomic(target, data)
        written.append(target)
    for path in stale:
        path.unlink()
        say(f"removed {path.name}: no longer in upstream.json")
    if update_digests:
        doc = json.loads(upstream.read_text())
        doc["sources"] = sources
        write_atomic(upstream, json.dumps(doc, indent=2) + "\n")
    return written


def parse_pins(text: str) -> dict[str, tuple[str, str]]:
    """``{action: (tag, commit)}`` from a pin table."""
    return {action: (tag, sha) for action, tag, sha in PIN_ROW.findall(text)}


def _ls_remote(url: str, tag: str) -> str:
    out = run_git(["ls-remote", "--tags", url, f"refs/tags/{tag}", f"refs/tags/{tag}^{{}}"], timeout=120)
    refs = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        refs[ref] = sha
    commit = refs.get(f"refs/tags/{tag}^{{}}") or refs.get(f"refs/tags/{tag}")  # peeled, else lightweight
    if not commit:
        raise EdgeopsError(f"{url} has no tag {tag}")
    return commit


def refresh_pins(
    *,
    from_file: Path | None = None,
    pins: Path = PINS,
    remote_base: str = GITHUB,
    say: Callable[[str], None] = print,
) -> dict[str, tuple[str, str]]:
    """Rewrite the commit column of ``pins``: from ``from_file``'s table, or from each tag's upstream."""
    text = pins.read_text()
    current = parse_pins(text)
    if from_file is not None:
        theirs = parse_pins(from_file.read_text())
        if not theirs:
            raise EdgeopsError(f"{from_file}: no `| owner/name | vX | <40-hex commit> |` rows")
        updated = dict(theirs)
        # Take their whole table: the same rows in the same form, plus our header.
        head = text.split("\n| action |", 1)[0]
        body = "\n| action |" + from_file.read_text().split("\n| action |", 1)[1]
        new_text = head + body
    else:
        updated = {}
        new_text = text
        for action, (tag, old) in current.items():
            commit = _ls_remote(f"{remote_base}/{action}.git", tag)
            updated[action] = (tag, commit)
            if commit != old:
                say(f"{action} {tag}: {old} -> {commit} (the tag moved: review before merging)")
                row = f"| {action} | {tag} |"
                new_text = new_text.replace(f"{row} {old} |", f"{row} {commit} |")
    if parse_pins(new_text) != updated:
        raise EdgeopsError(f"{pins}: the rewritten table does not parse back; nothing was written")
    if new_text != text:
        write_atomic(pins, new_text)
    say(f"{pins.name}: {len(updated)} actions pinned")
    return updated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.gitops.vendored.refresh", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="what", required=True)
    crds = sub.add_parser("crds", help="the Argo CRD schemas in tools/gitops/vendored/argo/")
    crds.add_argument("--from", dest="source", type=Path, help="a folder with the upstream CRD files")
    crds.add_argument(
        "--update-digests", action="store_true", help="record new sha256s (after bumping a commit)"
    )
    pins = sub.add_parser("pins", help="the action pins in tools/gitops/vendored/actions-pins.md")
    pins.add_argument("--from", dest="source", type=Path, help="a reviewed pin table to copy")
    pins.add_argument("--remote-base", default=GITHUB, help="where action repositories live (default GitHub)")
    args = parser.parse_args(argv)
    try:
        if args.what == "crds":
            refresh_crds(from_dir=args.source, update_digests=args.update_digests)
        else:
            refresh_pins(from_file=args.source, remote_base=args.remote_base)
    except EdgeopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
