"""Revoked versions: ``revocations/<version>.yaml``, one small file per version a rollback took out.

    # v2.1 was rolled back and is revoked: `edgeops propose`, `edgeops promote` and `edgeops validate pr`
    # refuse to ship it again. To lift this, open a PR that deletes this file and changes nothing else;
    # its review is the decision.
    version: v2.1
    ring: fleet
    reason: "`edgeops guard` found fleet v2.1 breaching its telemetry gates since …"
    revoked_at: "2026-11-03T08:00:00+00:00"
    by: guard

``edgeops rollback`` and ``edgeops guard`` add the file in the rollback's own commit (``--no-revoke``
skips it), so merging the rollback PR is what revokes. The folder is at the top level, not under
``environments/``: Argo CD's ApplicationSet makes an Application of every ``environments/*`` folder.
Everything reads the files from the base branch (:func:`revoked`), never from a PR's head.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from ruamel.yaml.error import YAMLError

from tools.artifacts.bundle import BundleError, parse_version
from tools.core.safeyaml import SafeYAML
from tools.gitops.gitrepo import Repo

__all__ = [
    "REVOCATIONS_DIR",
    "render_revocation",
    "revocation_path",
    "revocation_version",
    "revoked",
]

REVOCATIONS_DIR = "revocations"
_FILE = re.compile(rf"^{REVOCATIONS_DIR}/(?P<version>[^/]+)\.yaml$")


def revocation_path(version: str) -> str:
    """The file that revokes ``version``, relative to the repository root."""
    return f"{REVOCATIONS_DIR}/{version}.yaml"


def revocation_version(path: str) -> str | None:
    """The version a path revokes (``revocations/v2.1.yaml`` → ``v2.1``); None for any other path."""
    match = _FILE.match(path)
    if match is None:
        return None
    try:
        parse_version(match["version"])
    except BundleError:
        return None
    return match["version"]


def render_revocation(
    *, version: str, ring: str, reason: str, revoked_at: datetime, by: Literal["guard", "rollback"]
) -> str:
    """The text of ``revocations/<version>.yaml``: the comment saying how to lift it, then the record."""

    def scalar(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar

    return (
        f"# {version} was rolled back and is revoked: `edgeops propose`, `edgeops promote` and `edgeops "
        "validate pr`\n"
        "# refuse to ship it again. To lift this, open a PR that deletes this file and changes nothing "
        "else;\n"
        "# its review is the decision.\n"
        f"version: {scalar(version)}\n"
        f"ring: {scalar(ring)}\n"
        f"reason: {scalar(' '.join(reason.split()))}\n"
        f"revoked_at: {scalar(revoked_at.astimezone(UTC).isoformat())}\n"
        f"by: {by}\n"
    )


def revoked(repo: Repo, ref: str) -> dict[str, dict[str, Any]]:
    """Every version revoked at ``ref``: version → its record (``version``, ``ring``, ``reason``,
    ``revoked_at``, ``by``, and ``path``).

    The file name decides the version, so a record that does not parse still revokes (with an ``error``
    saying why): a damaged file must not quietly let a version back in.
    """
    listing = repo.git("ls-tree", "-r", "--name-only", ref, "--", f"{REVOCATIONS_DIR}/")
    out: dict[str, dict[str, Any]] = {}
    for path in listing.splitlines():
        version = revocation_version(path)
        if version is None:
            continue  # the folder's README, or a file that names no version
        record: dict[str, Any] = {"version": version, "path": path}
        text = repo.show(ref, path) or ""
        try:
            doc = SafeYAML(typ="safe", pure=True).load(text)  # from a PR: no aliases, bounded
        except YAMLError as exc:
            doc = None
            record["error"] = f"not valid YAML ({' '.join(str(exc).split())})"
        if isinstance(doc, dict):
            record.update({str(k): v for k, v in doc.items() if k != "version"})
            if doc.get("version") not in (None, version):
                record["error"] = f"names version {doc.get('version')!r}, but its file name {version}"
        elif "error" not in record:
            record["error"] = "expected a mapping (version, ring, reason, revoked_at, by)"
        out[version] = record
    return out
