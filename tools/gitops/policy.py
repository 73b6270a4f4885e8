"""``edgeops validate pr``: the required CI check that makes skipping the pilot impossible by accident.

    edgeops validate pr --base origin/main --head HEAD

A pull request from ``head`` into ``base`` is checked against these rules (the diff is taken from their
merge base, as GitHub shows it; history and the trusted key come from ``base``, never from the PR):

1. ``release-file``  every release file the PR changes parses, and its signature verifies under the public
   key committed on ``base`` (a PR cannot bring its own key);
2. ``one-ring``      a PR changes at most one ring's release;
3. ``release-only``  a PR that changes a release changes nothing else;
4. ``soak``          a ring promoted from another (``after:`` in edgeops.yaml) may only be set to a version
   that ring has run for at least its ``soak_hours`` — **unless** it restores a version this ring ran before:
   rollbacks are never blocked;
5. ``forward``       versions never go backwards, except to a version the ring ran before (a rollback), and
   a version is never re-pinned with different signed content.

Exit 0 when every rule holds (PRs that change no release pass trivially), 1 with one line per violation
saying what to do otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tools.artifacts.bundle import parse_version
from tools.artifacts.release import Release, ReleaseError, parse_release, signed_payload, verify_release
from tools.core.config import EdgeopsConfig
from tools.core.signing import SignatureError, public_key_from_pem
from tools.gitops.gitrepo import Repo, ring_history

__all__ = ["Finding", "PolicyReport", "validate_pr"]


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str


@dataclass
class PolicyReport:
    base: str
    head: str
    changed: list[str]
    rings: dict[str, str] = field(default_factory=dict)  # ring -> what the PR does to it, in words
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "head": self.head, "ok": self.ok, "changed": self.changed,
                "rings": self.rings, "findings": [f.__dict__ for f in self.findings]}  # fmt: skip

    def render(self) -> str:
        lines = []
        for ring, what in self.rings.items():
            lines.append(f"{ring}: {what}")
        if self.ok:
            lines.append("✅ accepted" + ("" if self.rings else ": this PR changes no release"))
        else:
            lines.append(
                f"❌ rejected ({len(self.findings)} problem{'s' if len(self.findings) > 1 else ''}):"
            )
            lines.extend(f"  [{f.rule}] {f.message}" for f in self.findings)
        return "\n".join(lines)


def _version(release: Release | None) -> str:
    return release.version if release else "no release"


def validate_pr(repo: Repo, cfg: EdgeopsConfig, *, base: str, head: str, now: datetime) -> PolicyReport:
    base_sha, head_sha = repo.rev(base), repo.rev(head)
    changed = repo.changed_files(base_sha, head_sha)
    report = PolicyReport(base, head, changed)
    paths = {cfg.release_path(name): name for name in cfg.rings}
    touched = {paths[p]: p for p in changed if p in paths}
    if not touched:
        return report

    if len(touched) > 1:
        report.findings.append(Finding(
            "one-ring",
            f"this PR changes the releases of {' and '.join(sorted(touched))}; change one ring per PR "
            "(promotion order: " + " → ".join(cfg.ring_order()) + ")",
        ))  # fmt: skip
    others = [p for p in changed if p not in paths]
    if others:
        report.findings.append(Finding(
            "release-only",
            f"a release PR changes only release files, but this one also changes {', '.join(others)}; move "
            "those changes to their own PR",
        ))  # fmt: skip

    key_text = repo.show(base_sha, cfg.signing.public_key)
    public_key = None
    if key_text is None:
        report.findings.append(Finding(
            "release-file",
            f"{cfg.signing.public_key} (signing.public_key) is missing on {base}: nothing can verify",
        ))  # fmt: skip
    else:
        try:
            public_key = public_key_from_pem(key_text.encode(), source=f"{cfg.signing.public_key} on {base}")
        except SignatureError as exc:
            report.findings.append(Finding("release-file", str(exc)))

    for ring, path in sorted(touched.items()):
        text = repo.show(head_sha, path)
        if text is None:
            report.findings.append(Finding(
                "release-file",
                f"{path} is deleted; a ring without a release is `version: null`, not a missing file",
            ))  # fmt: skip
            continue
        try:
            new = parse_release(text, source=f"{path} at {head}")
        except ReleaseError as exc:
            report.findings.append(Finding("release-file", str(exc)))
            continue
        if new is not None and public_key is not None:
            try:
                verify_release(new, public_key)
            except ReleaseError as exc:
                report.findings.append(Finding("release-file", str(exc)))
        _check_ring(repo, cfg, base_sha, ring, path, new, now, report)
    return report


def _check_ring(  # noqa: PLR0917 (one private helper, called once)
    repo: Repo, cfg: EdgeopsConfig, base: str, ring: str, path: str, new: Release | None, now: datetime,
    report: PolicyReport,
) -> None:  # fmt: skip
    history = ring_history(repo, base, ring, path)
    current = history.current.release if history.current else None
    segments = history.segments()
    version = new.version if new else None
    ran_before = [s for s in segments if s.version == version and s is not segments[-1]]
    move = f"{_version(current)} → {_version(new)}"

    if current is not None and new is not None and new.version == current.version:
        same = signed_payload(new.version, new.interface, new.bundle, new.files) == signed_payload(
            current.version, current.interface, current.bundle, current.files
        )
        if not same:
            report.findings.append(Finding(
                "forward",
                f"{path}: {new.version} is already pinned with a different bundle/files; versions are never "
                "reused: publish and propose a new version",
            ))  # fmt: skip
        report.rings[ring] = f"{new.version} re-annotated (metrics/source only)"
        return
    if version is None or ran_before:
        when = f" (ran from {ran_before[-1].start.time:%Y-%m-%d %H:%M})" if ran_before else ""
        report.rings[ring] = f"rollback {move}{when}: rollbacks are never blocked"
        return
    assert new is not None
    if current is not None and parse_version(new.version) < parse_version(current.version):
        report.findings.append(Finding(
            "forward",
            f"{path}: {move} goes backwards to a version {ring} never ran; a rollback returns to a "
            f"version the ring ran before (`edgeops rollback --ring {ring} --to VERSION`)",
        ))  # fmt: skip
        report.rings[ring] = f"backwards {move}"
        return
    after = cfg.rings[ring].after
    if after is None:
        report.rings[ring] = f"new release {move}"
        return
    after_path = cfg.release_path(after)
    upstream = ring_history(repo, base, after, after_path).ran(new.version)
    soak = cfg.rings[after].soak_hours
    if not upstream:
        report.findings.append(Finding(
            "soak",
            f"{path}: {move} skips {after}: {after} never ran {new.version} on {base[:12]}. Propose it "
            f"to {after} first; once it has soaked {soak:g} h there, "
            f"`edgeops promote --from {after} --to {ring}`",
        ))  # fmt: skip
        report.rings[ring] = f"promotion {move} (refused)"
        return
    hours = max(s.ran_for(now) for s in upstream)
    if hours < soak:
        report.findings.append(Finding(
            "soak",
            f"{path}: {after} has run {new.version} for {hours:.1f} h of the {soak:g} h soak; wait "
            f"{soak - hours:.1f} h more, then re-run this check",
        ))  # fmt: skip
        report.rings[ring] = f"promotion {move} (soaking)"
        return
    report.rings[ring] = f"promotion {move}: {after} ran it for {hours:.1f} h (soak {soak:g} h)"
