"""``edgeops validate pr``: the required CI check that makes skipping the pilot impossible by accident.

    edgeops validate pr --base origin/main --head HEAD

A pull request from ``head`` into ``base`` is checked against these rules (the diff is taken from their
merge base, as GitHub shows it; history, revocations and the trusted key come from ``base``, never from the
PR):

1. ``release-file``  every release file the PR changes parses, and its signature (and that of its
   ``previous`` release) verifies under a public key committed on ``base`` (the file may hold several
   while a key rotates; a PR cannot bring its own key);
2. ``one-ring``      a PR changes at most one ring's release;
3. ``release-only``  a PR that changes a release changes nothing else, except that a rollback adds the
   revocation of the version it rolls back (``revocations/<version>.yaml``);
4. ``soak``          a ring promoted from another (``after:`` in edgeops.yaml) may only be set to a version
   that ring has run for at least its ``soak_hours`` — **unless** it restores a version this ring ran before:
   rollbacks are never blocked; and a next wave only once the current wave has run the ring's
   ``wave_soak_hours`` (from the commit that set its percent);
5. ``forward``       versions never go backwards, except to a version the ring ran before (a rollback), and
   a version is never re-pinned with different signed content;
6. ``wave``          a rollout widens to the next of the ring's ``waves`` (any later one with
   ``skip_waves: true``); a new version enters at the first wave (the whole ring only when it has no
   release yet, or its waves are ``[100]``). Narrowing a wave is a rollback: never blocked;
7. ``previous``      ``previous`` (what the nodes outside the wave run) is what the ring's settled nodes run
   now, and changes only with a new version;
8. ``revoked``       a version revoked on ``base`` (``revocations/``) does not enter a ring or widen its wave;
9. ``lift-alone``    a PR that lifts a revocation (deletes ``revocations/<version>.yaml``) changes nothing
   else, so lifting is its own reviewed decision.

Agent upgrades (:mod:`tools.gitops.images`): a PR that changes the model-updater image a ring runs (the
updater's ``images:`` entry of ``<ring>/kustomization.yaml``) is an agent upgrade, and it moves pilot →
fleet like a model:

10. ``agent-only``   it changes that entry of one ring and nothing else (the rest of the overlay included);
11. ``agent-image``  the first ring takes a pin by digest (``sha256:`` + 64 hex) of a ``…/model-updater``
    image;
12. ``agent-order``  a later ring takes exactly the image and digest its ``after`` ring pins on ``base``;
    a ring never gets a digest its ``after`` ring does not run (and two rings at once is ``one-ring``),
    and only once the ``after`` ring has run it for its ``soak_hours`` (rule ``soak``, as for a model).
Returning a ring to an image it ran before (a ``git revert``) is a rollback: never blocked.

What a ring renders (:mod:`tools.gitops.rendered`): the check judges the ring the nodes would get, not only
its release file. The config (ring paths, order, soak, waves) comes from ``base``, so a PR cannot move a
ring's release file or weaken a rule it is judged by; and

13. ``ring-config``  a PR that changes the rings of ``edgeops.yaml``, or Argo CD's ApplicationSet (which
    turns folders of ``environments/`` into rings), changes nothing else: it takes effect for the PRs after
    it. A new folder Argo CD would deploy as a ring must be a ring of ``edgeops.yaml`` on ``base`` first;
14. ``render``       every ring, built with kustomize at ``head`` from the folder ``base`` names, hands its
    model-updater (the container started with ``--release=PATH``) exactly the ring's release file: a
    release reaches a ring only through that file, where rules 1-9 judge it (a generator pointed at
    another file, a patch of the ConfigMap, another volume at that path are refused). A PR that changes a
    ring's other objects (its manifests, rendered) changes one ring (``one-ring``), and a base shared by
    several rings changes through each ring's overlay first: folding the same patch into the base later
    renders the same and passes.

Exit 0 when every rule holds (PRs that change no release pass trivially), 1 with one line per violation
saying what to do otherwise.
"""

from __future__ import annotations

import fnmatch
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ruamel.yaml.error import YAMLError

from tools.artifacts.bundle import parse_version
from tools.artifacts.release import Release, ReleaseError, parse_release, verify_release
from tools.core.config import CONFIG_FILENAME, EdgeopsConfig
from tools.core.errors import ConfigError, EdgeopsError
from tools.core.safeyaml import SafeYAML
from tools.core.signing import SignatureError, public_keys_from_pem
from tools.core.typedyaml import parse_mapping, parse_model
from tools.gitops.gitrepo import Repo, RingHistory, content_of, ring_history, wave_percent
from tools.gitops.images import (
    DIGEST,
    KUSTOMIZATION,
    UPDATER,
    ImageError,
    ImagePin,
    base_image,
    check_image,
    effective_ref,
    kustomization_path,
    pin_history,
    read_pin,
    soaked,
)
from tools.gitops.rendered import RingRender, exported_tree, render_ring
from tools.gitops.revocations import revocation_version, revoked

_SAFE = SafeYAML(typ="safe", pure=True)  # PR input: no aliases, bounded (tools.core.safeyaml)

__all__ = ["Finding", "PolicyReport", "config_at", "validate_pr"]


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
    revocations: dict[str, str] = field(default_factory=dict)  # version -> what the PR does to it, in words
    agents: dict[str, str] = field(default_factory=dict)  # ring -> what the PR does to its agent image
    # ring (or "rings") -> what the PR does to what the ring renders besides its release and agent image
    structure: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "head": self.head, "ok": self.ok, "changed": self.changed,
                "rings": self.rings, "revocations": self.revocations, "agents": self.agents,
                "structure": self.structure, "findings": [f.__dict__ for f in self.findings]}  # fmt: skip

    def render(self) -> str:
        lines = []
        for ring, what in self.rings.items():
            lines.append(f"{ring}: {what}")
        for version, what in self.revocations.items():
            lines.append(f"{version}: {what}")
        for ring, what in self.agents.items():
            lines.append(f"{ring}: {what}")
        for ring, what in self.structure.items():
            lines.append(f"{ring}: {what}")
        if self.ok:
            quiet = not self.rings and not self.revocations and not self.agents and not self.structure
            lines.append("✅ accepted" + (": this PR changes no release" if quiet else ""))
        else:
            lines.append(
                f"❌ rejected ({len(self.findings)} problem{'s' if len(self.findings) > 1 else ''}):"
            )
            lines.extend(f"  [{f.rule}] {f.message}" for f in self.findings)
        return "\n".join(lines)


def _version(release: Release | None) -> str:
    return release.version if release else "no release"


def _same_signed(a: Release | None, b: Release | None) -> bool:
    return content_of(a) == content_of(b)  # both None (no release) is the same too


def _pc(percent: float | None) -> str:
    return "no" if percent is None else f"{percent:g}%"


def config_at(repo: Repo, ref: str, path: str = CONFIG_FILENAME) -> EdgeopsConfig:
    """``edgeops.yaml`` as it is at ``ref`` (what ``validate pr`` judges a PR by: the base's, never the
    PR's own); a ConfigError naming ``path`` at ``ref`` when it is missing or does not load."""
    text = repo.show(ref, path)
    if text is None:
        raise ConfigError(f"{path} does not exist at {ref}")
    source = f"{path} at {ref}"
    data, lines = parse_mapping(text, source=source)
    return parse_model(data, EdgeopsConfig, source=source, lines=lines)


def validate_pr(
    repo: Repo, cfg: EdgeopsConfig, *, base: str, head: str, now: datetime, config_file: str = CONFIG_FILENAME
) -> PolicyReport:
    """Check the PR ``base...head``. ``cfg`` is the config **on base** (:func:`config_at`); ``config_file``
    its path in the repository, to see whether the PR changes it."""
    base_sha, head_sha = repo.rev(base), repo.rev(head)
    changed = repo.changed_files(base_sha, head_sha)
    report = PolicyReport(base, head, changed)
    _check_structure(repo, cfg, base=base_sha, head=head_sha, config_file=config_file, report=report)
    paths = {cfg.release_path(name): name for name in cfg.rings}
    touched = {paths[p]: p for p in changed if p in paths}
    revoked_now = revoked(repo, base_sha)
    records = {p: v for p in changed if (v := revocation_version(p)) is not None}
    lifted = {p: v for p, v in records.items() if repo.show(head_sha, p) is None}
    recorded = {p: v for p, v in records.items() if p not in lifted}

    for version in lifted.values():
        report.revocations[version] = f"lifts the revocation of {version}"
    if lifted:
        rest = [p for p in changed if p not in lifted]
        if rest:
            report.findings.append(Finding(
                "lift-alone",
                f"this PR lifts the revocation of {', '.join(sorted(lifted.values()))} and also changes "
                f"{', '.join(rest)}; lifting is a decision of its own: a PR that deletes "
                f"{', '.join(sorted(lifted))} and nothing else",
            ))  # fmt: skip
    agents = _agent_changes(repo, cfg, base=base_sha, head=head_sha, report=report)
    if agents:
        _check_agents(repo, cfg, agents, base=base_sha, release_pr=bool(touched), now=now, report=report)
    if not touched:
        for version in recorded.values():
            report.revocations[version] = f"records the revocation of {version}"
        return report

    if len(touched) > 1:
        report.findings.append(Finding(
            "one-ring",
            f"this PR changes the releases of {' and '.join(sorted(touched))}; change one ring per PR "
            "(promotion order: " + " → ".join(cfg.ring_order()) + ")",
        ))  # fmt: skip
    others = [p for p in changed if p not in paths and p not in records]
    if others:
        report.findings.append(Finding(
            "release-only",
            f"a release PR changes only release files, but this one also changes {', '.join(others)}; move "
            "those changes to their own PR",
        ))  # fmt: skip

    key_text = repo.show(base_sha, cfg.signing.public_key)
    public_key = None  # the trusted set on base: while a key rotates, the old and the new key
    if key_text is None:
        report.findings.append(Finding(
            "release-file",
            f"{cfg.signing.public_key} (signing.public_key) is missing on {base}: nothing can verify",
        ))  # fmt: skip
    else:
        try:
            public_key = public_keys_from_pem(key_text.encode(), source=f"{cfg.signing.public_key} on {base}")
        except SignatureError as exc:
            report.findings.append(Finding("release-file", str(exc)))

    rolled_back: set[str] = set()
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
            for release in (new, new.previous):
                if release is None:
                    continue
                try:
                    verify_release(release, public_key)
                except ReleaseError as exc:
                    report.findings.append(Finding("release-file", str(exc)))
        history = ring_history(repo, base_sha, ring, path)
        check = _RingCheck(repo, base_sha, cfg, ring, path, history, now, revoked_now, report)
        away = check.run(new)
        if away is not None:
            rolled_back.add(away)

    for path, version in sorted(recorded.items()):
        if version in rolled_back:
            report.revocations[version] = f"revokes {version}, which this PR rolls back"
        else:
            report.findings.append(Finding(
                "release-only",
                f"{path}: a release PR adds a revocation only for the version it rolls back"
                + (f" ({', '.join(sorted(rolled_back))})" if rolled_back else " (this PR rolls none back)")
                + "; record other revocations in a PR of their own",
            ))  # fmt: skip
    return report


@dataclass
class _RingCheck:
    """The rules for one ring's release change; ``run`` says which version it rolls back, if any."""

    repo: Repo
    base: str
    cfg: EdgeopsConfig
    ring: str
    path: str
    history: RingHistory
    now: datetime
    revoked: dict[str, dict[str, Any]]
    report: PolicyReport

    def find(self, rule: str, message: str) -> None:
        self.report.findings.append(Finding(rule, f"{self.path}: {message}"))

    def say(self, what: str) -> None:
        self.report.rings[self.ring] = what

    def revocation(self, version: str) -> str:
        record = self.revoked[version]
        return (
            f"{version} is revoked ({record['path']}: {record.get('reason') or 'no reason given'}); a "
            "reviewed PR that deletes that file, and nothing else, lifts it first"
        )

    def run(self, new: Release | None) -> str | None:
        current = self.history.current.release if self.history.current else None
        if current is not None and new is not None and new.version == current.version:
            return self.same_version(current, new)
        segments = self.history.segments()
        version = new.version if new else None
        # A rollback restores what the ring ran: the same signed content (bundle, file digests), not only
        # the same name. A "v1.0" with other content is a new release that goes backwards.
        ran_before = [s for s in self.history.ran_content(new) if s is not segments[-1]]
        move = f"{_version(current)} → {_version(new)}"
        if new is not None and not ran_before and self.history.ran(version):
            self.find(
                "forward",
                f"{move}: {self.ring} ran {version} before, but not this content (bundle {new.bundle}); a "
                "rollback restores exactly the release the ring ran (`edgeops rollback --ring "
                f"{self.ring} --to {version}`), and a version name is never re-pinned with other content",
            )
            self.say(f"rollback {move} with content {self.ring} never ran (refused)")
            return None
        if version is None or ran_before:
            runs = current is not None and version in (
                current.version,
                current.previous.version if current.previous else None,
            )
            if version in self.revoked and not runs:
                self.find("revoked", f"{move} returns {self.ring} to a revoked version: " + self.revocation(
                    version or ""))  # fmt: skip
            if new is not None and new.previous is not None and wave_percent(new) < 100:
                p = new.previous
                if not self.history.ran_content(p):
                    self.find("previous", f"`previous` {p.version} is not a release {self.ring} ran")
            when = f" (ran from {ran_before[-1].start.time:%Y-%m-%d %H:%M})" if ran_before else ""
            self.say(f"rollback {move}{when}: rollbacks are never blocked")
            return current.version if current else None
        assert new is not None
        if new.version in self.revoked:
            self.find("revoked", self.revocation(new.version))
            self.say(f"new release {move} (revoked)")
            return None
        if current is not None and parse_version(new.version) < parse_version(current.version):
            self.find(
                "forward",
                f"{move} goes backwards to a version {self.ring} never ran; a rollback returns to a "
                f"version the ring ran before (`edgeops rollback --ring {self.ring} --to VERSION`)",
            )
            self.say(f"backwards {move}")
            return None
        entry = self.entry(current, new)
        after = self.cfg.rings[self.ring].after
        if after is None:
            self.say(f"new release {move}{entry}")
            return None
        self.upstream(after, new, move, entry)
        return None

    def same_version(self, current: Release, new: Release) -> str | None:
        version = new.version
        if not _same_signed(new, current):
            self.find(
                "forward",
                f"{version} is already pinned with a different bundle/files; versions are never "
                "reused: publish and propose a new version",
            )
            self.say(f"{version} re-annotated (metrics/source only)")
            return None
        if not _same_signed(new.previous, current.previous):
            self.find(
                "previous",
                f"`previous` changes from {_version(current.previous)} to {_version(new.previous)} while "
                f"{self.ring} keeps {version}; it is what the nodes outside the wave run, and changes only "
                "with a new version (`edgeops promote`)",
            )
            self.say(f"{version}: previous changed (refused)")
            return None
        old, pct = wave_percent(current), wave_percent(new)
        if pct == old:
            same = new.swap_windows == current.swap_windows
            resigned = new.signature != current.signature or (
                new.previous is not None
                and current.previous is not None
                and new.previous.signature != current.previous.signature
            )
            if resigned:  # `edgeops release resign` after a key rotation: the signed content is the same
                self.say(f"{version} re-signed (signed content unchanged)")
            elif same:
                self.say(f"{version} re-annotated (metrics/source only)")
            else:
                self.say(f"{version}: swap windows")
            return None
        if pct < old:
            self.say(
                f"rollback: {version} narrowed from {_pc(old)} to {_pc(pct)} of the nodes: never blocked"
            )
            return version
        ring = self.cfg.rings[self.ring]
        if version in self.revoked:
            self.find("revoked", f"widening {version}: " + self.revocation(version))
        nxt = ring.next_wave(old)
        allowed = [w for w in ring.waves if w > old] if ring.skip_waves else [nxt]
        if pct not in allowed:
            self.find(
                "wave",
                f"{version} goes from {_pc(old)} to {_pc(pct)} of {self.ring}'s nodes; the next wave is "
                f"{_pc(nxt)} (rings.{self.ring}.waves {[float(w) for w in ring.waves]}, skip_waves "
                f"{str(ring.skip_waves).lower()}). Widen to {_pc(nxt)} first (`edgeops promote`)",
            )
        started = self.history.wave_start()
        hours = (self.now - started.time).total_seconds() / 3600.0 if started else 0.0
        if hours < ring.wave_soak_hours:
            self.find(
                "soak",
                f"the {_pc(old)} wave of {version} has run {hours:.1f} h of its {ring.wave_soak_hours:g} h "
                f"soak (rings.{self.ring}.wave_soak_hours); wait {ring.wave_soak_hours - hours:.1f} h more, "
                "then re-run this check",
            )
        self.say(f"wave: {version} from {_pc(old)} to {_pc(pct)} of the nodes (the {_pc(old)} wave ran "
                 f"{hours:.1f} h)")  # fmt: skip
        return None

    def entry(self, current: Release | None, new: Release) -> str:
        """Check how a new version enters: at the first wave over what the ring runs. Words for the report."""
        ring = self.cfg.rings[self.ring]
        pct = wave_percent(new)
        allowed = list(ring.waves) if ring.skip_waves else [ring.waves[0]]
        settled = None if current is None else current.previous if wave_percent(current) < 100 else current
        if new.previous is None:
            if settled is not None and 100 not in allowed:
                self.find(
                    "wave",
                    f"{new.version} enters {self.ring} on every node at once; with waves "
                    f"{[float(w) for w in ring.waves]} it enters at {_pc(ring.waves[0])} with `previous` "
                    f"{settled.version} (what `edgeops promote` writes)",
                )
            return ""
        if settled is None or not _same_signed(new.previous, settled):
            self.find(
                "previous",
                f"`previous` is {new.previous.version}, but the nodes of {self.ring} outside a wave run "
                f"{_version(settled)}: `previous` must be that release, as {self.ring} runs it",
            )
        if pct not in allowed:
            self.find(
                "wave",
                f"{new.version} enters {self.ring} at {_pc(pct)} of its nodes; a new version enters at the "
                f"first wave, {_pc(ring.waves[0])} (rings.{self.ring}.waves)",
            )
        return f" at {_pc(pct)} of the nodes"

    def upstream(self, after: str, new: Release, move: str, entry: str) -> None:
        cfg = self.cfg
        soak = cfg.rings[after].soak_hours
        history = ring_history(self.repo, self.base, after, cfg.release_path(after))
        upstream = history.ran_content(new)  # what soaked there: the same signed content, not the name
        if not upstream and history.ran(new.version):
            self.find(
                "soak",
                f"{move}: {after} ran {new.version}, but not this content (this release's bundle is "
                f"{new.bundle}); only what soaked in {after} is promoted: `edgeops promote --from {after} "
                f"--to {self.ring}` copies it as {after} runs it",
            )
            self.say(f"promotion {move} of content {after} never ran (refused)")
            return None
        if not upstream:
            self.find(
                "soak",
                f"{move} skips {after}: {after} never ran {new.version} on {self.base[:12]}. Propose it to "
                f"{after} first; once "
                f"it has soaked {soak:g} h there, `edgeops promote --from {after} --to {self.ring}`",
            )
            self.say(f"promotion {move} (refused)")
            return None
        hours = max(s.ran_for(self.now) for s in upstream)
        if hours < soak:
            self.find(
                "soak",
                f"{after} has run {new.version} for {hours:.1f} h of the {soak:g} h soak; wait "
                f"{soak - hours:.1f} h more, then re-run this check",
            )
            self.say(f"promotion {move} (soaking)")
            return None
        self.say(f"promotion {move}{entry}: {after} ran it for {hours:.1f} h (soak {soak:g} h)")
        return None


# --- agent upgrades -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AgentChange:
    path: str
    new: ImagePin | None
    old_ref: str  # the image the ring's agent runs on base (effective_ref)
    new_ref: str  # and with this PR


def _strip_pin(doc: Any) -> Any:
    """A parsed overlay without the updater's ``images:`` entry: what an agent upgrade leaves alone."""
    if not isinstance(doc, dict):
        return doc
    rest = {k: v for k, v in doc.items() if k != "images"}
    others = [e for e in doc.get("images") or [] if not (isinstance(e, dict) and e.get("name") == UPDATER)]
    if others:
        rest["images"] = others
    return rest


def _agent_changes(
    repo: Repo, cfg: EdgeopsConfig, *, base: str, head: str, report: PolicyReport
) -> dict[str, _AgentChange]:
    """The rings whose agent image the PR changes (ring -> change). An overlay that does not parse, or
    whose other content changes with its pin, is a finding."""
    image = base_image(repo, base)
    out: dict[str, _AgentChange] = {}
    for ring in cfg.ring_order():
        path = kustomization_path(cfg, ring)
        if path not in report.changed:
            continue
        old_text, new_text = repo.show(base, path), repo.show(head, path)
        if old_text is None or new_text is None:
            continue  # an overlay added or deleted: a change of the rings themselves, not of their agent
        try:
            old = read_pin(old_text, source=f"{path} on {report.base}")
            new = read_pin(new_text, source=f"{path} at {report.head}")
        except ImageError as exc:
            report.findings.append(Finding("agent-image", str(exc)))
            continue
        change = _AgentChange(path, new, effective_ref(old, image), effective_ref(new, image))
        if change.old_ref == change.new_ref:
            continue  # e.g. the base's own tag written as a pin: the ring runs the same image
        out[ring] = change
        if _strip_pin(_SAFE.load(old_text)) != _strip_pin(_SAFE.load(new_text)):  # read_pin parsed both
            report.findings.append(Finding(
                "agent-only",
                f"{path}: this PR changes {ring}'s model-updater image and also the rest of the overlay; an "
                "agent upgrade changes only the updater's images: entry: move the other changes to their "
                "own PR",
            ))  # fmt: skip
    return out


def _check_agents(
    repo: Repo, cfg: EdgeopsConfig, agents: dict[str, _AgentChange], *, base: str, release_pr: bool,
    now: datetime, report: PolicyReport,
) -> None:  # fmt: skip
    order = cfg.ring_order()
    if len(agents) > 1:
        report.findings.append(Finding(
            "one-ring",
            f"this PR changes the model-updater image of {' and '.join(sorted(agents, key=order.index))}; an "
            "agent upgrade "
            f"changes one ring per PR and moves {' → '.join(order)} like a model: pin {order[0]} first "
            f"(`edgeops image pin --ring {order[0]}`), then `edgeops image promote --from {order[0]}`",
        ))  # fmt: skip
    others = [p for p in report.changed if p not in {c.path for c in agents.values()}]
    if others and not release_pr:  # in a release PR, release-only names the overlay already
        report.findings.append(Finding(
            "agent-only",
            f"an agent upgrade changes only the model-updater's images: entry of one ring's {KUSTOMIZATION}, "
            f"but this PR also changes {', '.join(others)}; move those changes to their own PR",
        ))  # fmt: skip
    image = base_image(repo, base)
    for ring in sorted(agents, key=order.index):
        change = agents[ring]
        verdict = _check_agent(repo, cfg, ring, change, image=image, base=base, now=now, report=report)
        report.agents[ring] = f"{verdict} {change.old_ref} → {change.new_ref}"


def _check_agent(
    repo: Repo, cfg: EdgeopsConfig, ring: str, change: _AgentChange, *, image: str, base: str, now: datetime,
    report: PolicyReport,
) -> str:  # fmt: skip
    """The rules for one ring's agent image; returns what the PR does to it, in words."""
    path, new = change.path, change.new
    ran = {effective_ref(e.pin, image) for e in pin_history(repo, base, path)}
    if change.new_ref in ran:
        return f"agent rollback: {ring} ran this image before (never blocked):"

    def find(rule: str, message: str) -> None:
        report.findings.append(Finding(rule, f"{path}: {message}"))

    if new is None or new.digest is None:
        find("agent-image", f"{change.new_ref} is not pinned by digest, and {ring} never ran it; an agent "
             "upgrade pins a digest (`edgeops image pin`): a tag can be moved to other bytes")  # fmt: skip
        return "agent upgrade (refused):"
    refused = False
    if not DIGEST.fullmatch(new.digest):
        find("agent-image", f"digest {new.digest!r} is not sha256: and 64 lowercase hex digits")
        refused = True
    try:
        check_image(new.image)
    except ImageError as exc:
        find("agent-image", str(exc))
        refused = True
    after = cfg.rings[ring].after
    if after is None:
        return f"agent upgrade ({ring}){' (refused)' if refused else ''}:"
    upstream_path = kustomization_path(cfg, after)
    history = pin_history(repo, base, upstream_path)
    upstream = history[-1].pin if history else None
    same = upstream is not None and (upstream.image, upstream.digest) == (new.image, new.digest)
    if same:
        hours, soak = soaked(cfg, after, history[-1], now)
        if hours < soak:
            find(
                "soak",
                f"{after} has run the model-updater {change.new_ref} for {hours:.1f} h of the {soak:g} h "
                f"soak (rings.{after}.soak_hours); wait {soak - hours:.1f} h more, then re-run this check",
            )
            return f"agent upgrade ({ring}) from {after} (soaking, refused):"
        return f"agent upgrade ({ring}) from {after}, which has run it for {hours:.1f} h:"
    pinned_there = effective_ref(upstream, image)
    if any(e.pin is not None and e.pin.digest == new.digest for e in history):
        why = f"{after} ran it before but has moved on"
    else:
        why = f"{after} never ran {new.digest}"
    find(
        "agent-order",
        f"{ring} skips {after}: it takes only the model-updater image {after} pins on {report.base} "
        f"({pinned_there}), and {why}; pin it in {after} first and, once it runs well there, "
        f"`edgeops image promote --from {after} --to {ring}`",
    )
    return f"agent upgrade ({ring}) (refused):"


# --- what rings render ----------------------------------------------------------------------------------

APPLICATIONSET = "manifests/argocd/applicationset.yaml"
_KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def _renders_input(path: str) -> bool:
    """Whether a changed file can change what a ring builds: anything under environments/ or manifests/
    (where every ring's overlay and base live) and any kustomization."""
    return path.startswith(("environments/", "manifests/")) or posixpath.basename(path) in _KUSTOMIZATIONS


def _argo_ring_folders(repo: Repo, base: str, head: str) -> list[str]:
    """Folders at ``head`` that base's ApplicationSet turns into Argo CD Applications (git directory
    generator: ``path`` globs, ``exclude: true`` removes; a glob's ``*`` does not cross ``/``)."""
    try:
        doc = _SAFE.load(repo.show(base, APPLICATIONSET) or "") or {}
        generators = doc["spec"]["generators"]
        dirs = [d for g in generators for d in g["git"]["directories"]]
        rules = [(str(d["path"]), bool(d.get("exclude"))) for d in dirs]
    except (KeyError, TypeError, YAMLError):
        return []

    def matches(folder: str, pattern: str) -> bool:
        parts, globs = folder.split("/"), pattern.split("/")
        if len(parts) != len(globs):
            return False
        return all(fnmatch.fnmatchcase(p, g) for p, g in zip(parts, globs, strict=True))

    folders = repo.git("ls-tree", "-d", "-r", "--name-only", head).splitlines()
    return [
        f for f in folders
        if any(matches(f, p) for p, ex in rules if not ex) and not any(matches(f, p) for p, ex in rules if ex)
    ]  # fmt: skip


def _same_release_text(a: str | None, b: str | None, source: str) -> bool:
    if a == b:
        return True
    if a is None or b is None:
        return False
    try:  # the same file as kustomize re-quoted it
        return parse_release(a, source=source) == parse_release(b, source=source)
    except ReleaseError:
        return False


def _describe_release(text: str | None, source: str) -> str:
    if text is None:
        return "no release text"
    try:
        release = parse_release(text, source=source)
    except ReleaseError:
        return "a release that does not parse"
    if release is None:
        return "no release (version: null)"
    return f"{release.version} (bundle {release.bundle}, {_pc(wave_percent(release))} of the nodes)"


def _check_structure(
    repo: Repo, cfg: EdgeopsConfig, *, base: str, head: str, config_file: str, report: PolicyReport
) -> None:
    """Rules ``ring-config`` and ``render``: a PR cannot change a ring through anything but its release
    file (or its agent pin), nor change the rules it is judged by."""
    changed = report.changed
    if config_file in changed:
        try:
            head_cfg = config_at(repo, head, config_file)
        except ConfigError as exc:
            report.findings.append(Finding("ring-config", f"{config_file} at {report.head}: {exc}"))
            head_cfg = None
        if head_cfg is not None:
            names = sorted(
                name for name in set(cfg.rings) | set(head_cfg.rings)
                if (cfg.rings.get(name) and cfg.rings[name].model_dump())
                != (head_cfg.rings.get(name) and head_cfg.rings[name].model_dump())
            )  # fmt: skip
            if names:
                report.structure["rings"] = (
                    f"changes rings.{', rings.'.join(names)} of {config_file}: read from the base branch, "
                    "so it applies to the PRs after this one"
                )
                others = [p for p in changed if p != config_file]
                if others:
                    report.findings.append(Finding(
                        "ring-config",
                        f"this PR changes rings.{', rings.'.join(names)} of {config_file} and also "
                        f"{', '.join(others)}; what rings exist, where they live and how they are promoted "
                        "is judged from the base branch: change it in a PR of its own",
                    ))  # fmt: skip
    argo = [p for p in changed if p.startswith("manifests/argocd/")]
    if argo and len(argo) < len(changed):
        report.findings.append(Finding(
            "ring-config",
            f"this PR changes {', '.join(argo)} (Argo CD: which folders are rings, where they sync) and "
            f"also {', '.join(p for p in changed if p not in argo)}: change Argo CD's definition in a PR of "
            "its own",
        ))  # fmt: skip
    known = {cfg.ring(name).path for name in cfg.rings}
    for folder in _argo_ring_folders(repo, base, head):
        if folder not in known and any(p.startswith(folder + "/") for p in changed):
            report.findings.append(Finding(
                "ring-config",
                f"{folder}/ is a folder Argo CD deploys as a ring ({APPLICATIONSET} on {report.base}), but "
                f"{config_file} on {report.base} has no ring there, so no rule would judge its releases: add "
                "the ring to edgeops.yaml in a PR of its own first",
            ))  # fmt: skip

    skip = {cfg.release_path(name) for name in cfg.rings}
    inputs = [p for p in changed if _renders_input(p) and p not in skip]
    if not [p for p in inputs if not _pin_only(repo, base, head, p)]:
        return  # nothing a ring builds from changed, beyond what the release and agent rules judge
    manifests_changed: list[str] = []
    with exported_tree(repo, base) as base_tree, exported_tree(repo, head) as head_tree:
        # Every ring at base and head, side by side: each build is a kustomize process (~1-2 s of CPU,
        # most of it kustomize loading its OpenAPI schema), so the check costs one build's time per core.
        renders = _render_all(
            repo, [(t, cfg.ring(r).path) for r in cfg.ring_order() for t in (base_tree, head_tree)]
        )
        for ring in cfg.ring_order():
            folder, path = cfg.ring(ring).path, cfg.release_path(ring)
            built_or_error = renders[(head_tree, folder)]
            if isinstance(built_or_error, EdgeopsError):
                first = str(built_or_error).strip().splitlines()[:3]
                report.findings.append(Finding(
                    "render", f"{folder} does not build at {report.head}: {' '.join(first)}"))  # fmt: skip
                continue
            built = built_or_error
            expected = repo.show(head, path)
            if not built.releases:
                report.findings.append(Finding(
                    "render",
                    f"{folder}: no container of ring {ring} is started with --release=PATH at "
                    f"{report.head}; the ring's model-updater reads its release file, {path}",
                ))  # fmt: skip
            for reader, text in sorted(built.releases.items()):
                if not _same_release_text(text, expected, f"{folder} rendered"):
                    report.findings.append(Finding(
                        "render",
                        f"{folder}: {reader} would read {_describe_release(text, reader)} from "
                        f"{built.sources[reader]}, not {path} ({_describe_release(expected, path)}); a "
                        "ring's release changes only through its release file, where the release rules judge "
                        "it",
                    ))  # fmt: skip
            before = renders[(base_tree, folder)]
            if isinstance(before, EdgeopsError):
                report.structure[ring] = f"{folder} does not build on {report.base}: judged at head only"
                continue
            if before.shape != built.shape:
                manifests_changed.append(ring)
                report.structure[ring] = "changes the ring's manifests (what it renders besides its release)"
    if len(manifests_changed) > 1:
        report.findings.append(Finding(
            "one-ring",
            f"this PR changes the manifests of {' and '.join(manifests_changed)} at once; a change reaches "
            "one ring per PR, in promotion order (" + " → ".join(cfg.ring_order()) + "): patch "
            f"{cfg.ring(manifests_changed[0]).path}/kustomization.yaml first; once every ring has it, "
            "moving the patch into the shared base renders the same and passes",
        ))  # fmt: skip


def _render_all(
    repo: Repo, jobs: list[tuple[Path, str]]
) -> dict[tuple[Path, str], RingRender | EdgeopsError]:
    """``render_ring`` of each (tree, ring folder), a few at a time; a ring that does not build is its
    error."""

    def one(job: tuple[Path, str]) -> RingRender | EdgeopsError:
        try:
            return render_ring(job[0], job[1], repo_root=repo.root)
        except EdgeopsError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=min(4, len(jobs))) as pool:
        return dict(zip(jobs, pool.map(one, jobs), strict=True))


def _pin_only(repo: Repo, base: str, head: str, path: str) -> bool:
    """Whether ``path`` is a kustomization whose only change is the updater's ``images:`` entry (the agent
    rules judge that)."""
    if posixpath.basename(path) not in _KUSTOMIZATIONS:
        return False
    old, new = repo.show(base, path), repo.show(head, path)
    if old is None or new is None:
        return False
    try:
        return bool(_strip_pin(_SAFE.load(old)) == _strip_pin(_SAFE.load(new)))
    except YAMLError:
        return False
