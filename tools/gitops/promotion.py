"""The human moments of a release, each a small pull request: propose, promote, roll back, guard, status.

    edgeops propose  --ring pilot --bundle s3://models/models/v2.1/   # the training pipeline, monthly
    edgeops promote  --from pilot [--to fleet] [--dry-run]             # the next ring's next wave, gated
    edgeops rollback --ring fleet [--to v2.0] [--no-revoke]            # back to `previous` / `git revert`
    edgeops guard    --ring fleet                                      # opens the rollback PR itself
    edgeops status   [--json]

Every command works from the repository's git checkout (the folder of ``edgeops.yaml``) but never touches
its branch or files: it fetches the remote, makes its one commit in a temporary worktree at the remote base
branch, pushes a bot-owned branch (``release/<ring>/<version>``, ``promote/<ring>/<version>``,
``wave/<ring>/<version>/<percent>``, ``rollback/<ring>/<version>``) and opens or updates the PR for it
through the forge. Running a command twice updates the same PR; a branch whose content is already right is
not pushed again.

Rollouts go in waves (DESIGN.md, "Rings and waves"; ``rings.<ring>.waves`` in edgeops.yaml): a new version
enters a ring with ``previous`` (what the ring ran) and ``rollout.percent`` = its first wave; each next
wave is a one-line PR once the current one has soaked and its nodes' telemetry passes the gates; ``guard``
rolls back at any wave, and a rolled-back version is revoked (``revocations/``) until a reviewed PR
lifts it.

History comes from git alone (:mod:`tools.gitops.gitrepo`): when a ring's release changed is the
committer time of the first-parent commit on the base branch that changed its release file. The clock is a
parameter (``now``), so tests and the demo inject one instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tools.artifacts.bundle import BundleError, FileEntry, parse_version, verify_bundle_uri
from tools.artifacts.release import Release, edit_release_text, make_release, signed_payload
from tools.core.config import EdgeopsConfig
from tools.core.errors import ConfigError, EdgeopsError
from tools.core.log import fields
from tools.core.project import Project
from tools.core.signing import key_id, load_public_keys
from tools.core.store import open_store
from tools.core.windows import parse_windows
from tools.gitops.forge import Forge, LocalForge, PullRequest
from tools.gitops.gitrepo import (
    GitError,
    Repo,
    RingEvent,
    RingHistory,
    commit_message,
    must_be_repo,
    ring_history,
    scratch_worktree,
    wave_percent,
)
from tools.gitops.revocations import render_revocation, revocation_path, revoked

if TYPE_CHECKING:
    from tools.gitops.telemetry import GateResult, RingTelemetry

__all__ = [
    "DeviceLister",
    "GuardOutcome",
    "PromoteDecision",
    "PromotionError",
    "RollbackOutcome",
    "TelemetryReader",
    "WaveState",
    "Workspace",
    "guard",
    "open_forge",
    "promote",
    "propose",
    "render_status",
    "rollback",
    "status",
    "wave_state",
]

log = logging.getLogger("edgeops.release")

_TEMPLATES = Path(__file__).parent / "templates"
ROLLBACK_LABEL = "rollback"
AUTO_LABEL = "auto"
PROMOTION_LABEL = "promotion"
WAVE_LABEL = "wave"


class PromotionError(EdgeopsError):
    """A propose, promote or rollback was refused: wrong ring, nothing to do that way, a bundle that does not
    verify."""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- the workspace --------------------------------------------------------------------------------------


def open_forge(cfg: EdgeopsConfig, repo: Repo) -> Forge:
    """The forge of ``edgeops.yaml``: a LocalForge on the checkout's bare remote, or GitHub."""
    if cfg.forge.kind == "github":
        import os

        from tools.gitops.github import GitHubForge

        assert cfg.forge.repository is not None  # the config model requires it for kind github
        return GitHubForge.from_env(cfg.forge.repository, base_url=os.environ.get("GITHUB_API_URL"))
    url = repo.remote_url()
    path = Path(url[len("file://") :] if url.startswith("file://") else url)
    if "://" in url or not path.is_dir():
        raise ConfigError(
            f"forge.kind is 'local' but the remote {repo.remote!r} is {url!r}, not a bare repository on this "
            "machine; set forge.kind: github (and forge.repository) in edgeops.yaml for a GitHub remote"
        )
    return LocalForge(path if path.is_absolute() else (repo.root / path))


@dataclass
class Workspace:
    """The project (checkout + parsed edgeops.yaml), its git repository, its forge and the clock every
    decision is made at."""

    project: Project
    repo: Repo
    forge: Forge
    now: datetime = field(default_factory=_now)

    @classmethod
    def open(
        cls, project: Project | str | Path | None = None, *, forge: Forge | None = None,
        now: datetime | None = None, fetch: bool = True,
    ) -> Workspace:  # fmt: skip
        """``project``, or the one whose edgeops.yaml is at that path (found upwards from . when None)."""
        proj = project if isinstance(project, Project) else Project.load(project)
        repo = must_be_repo(proj.root)
        ws = cls(proj, repo, forge or open_forge(proj.cfg, repo), now or _now())
        if fetch:
            repo.fetch(env=ws.git_env())
        ws.repo.rev(ws.base_ref)  # a clear error now when the base branch is not on the remote
        return ws

    def git_env(self) -> dict[str, str]:
        """Credentials for one git process talking to the remote (the forge's, minted now if it mints)."""
        return self.forge.git_env(self.repo.remote_url())

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def cfg(self) -> EdgeopsConfig:
        return self.project.cfg

    @property
    def base_ref(self) -> str:
        return f"refs/remotes/{self.repo.remote}/{self.cfg.forge.base_branch}"

    def ring(self, name: str) -> str:
        self.cfg.ring(name)  # a ConfigError naming the rings when there is none such
        return name

    def release_path(self, ring: str) -> str:
        return self.project.release_path(ring)

    def history(self, ring: str, ref: str | None = None) -> RingHistory:
        return ring_history(self.repo, ref or self.base_ref, ring, self.release_path(ring))

    def next_ring(self, ring: str) -> str | None:
        return self.cfg.next_ring(ring)

    def revoked(self) -> dict[str, dict[str, Any]]:
        """The versions revoked on the base branch (``revocations/``): version → its record."""
        return revoked(self.repo, self.base_ref)

    def reviewers(self, path: str) -> list[str]:
        """edgeops.yaml's review.reviewers and team_reviewers, plus the CODEOWNERS of ``path`` at base."""
        people = list(self.cfg.review.reviewers) + list(self.cfg.review.team_reviewers)
        for name in (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"):
            text = self.repo.show(self.base_ref, name)
            if text is not None:
                people += [o.lstrip("@") for o in codeowners(text, path) if o.startswith("@")]
                break
        return sorted(set(people))


# --- CODEOWNERS -----------------------------------------------------------------------------------------


def _codeowners_pattern(pattern: str) -> re.Pattern[str]:
    anchored = pattern.startswith("/") or "/" in pattern.rstrip("/")
    body, regex, i = pattern.strip("/"), "", 0
    while i < len(body):
        if body.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif body.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif body[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif body[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(body[i]), i + 1
    suffix = "/.*" if pattern.endswith("/") else "(?:/.*)?"
    return re.compile(("^" if anchored else "^(?:.*/)?") + regex + suffix + "$")


def codeowners(text: str, path: str) -> list[str]:
    """The owners of ``path`` under GitHub's CODEOWNERS rules: the last matching pattern wins."""
    owners: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        pattern, *names = line.split()
        if _codeowners_pattern(pattern).match(path):
            owners = names
    return owners


# --- bodies ---------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _pts(delta: float) -> str:
    return f"{100 * delta:+.1f} pts"


def _render(template: str, **context: Any) -> str:
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES), undefined=StrictUndefined, autoescape=False,  # noqa: S701
        keep_trailing_newline=True, trim_blocks=True,
    )  # fmt: skip
    env.globals.update(pct=_pct, pts=_pts)
    return env.get_template(template).render(**context)


def training_chart(card: dict[str, Any], *, max_points: int = 40) -> str | None:
    """A Mermaid ``xychart-beta`` of the training and validation loss per epoch (GitHub renders it)."""
    history = [h for h in card.get("history") or [] if "train_loss" in h and "val_loss" in h]
    if len(history) < 2:
        return None
    step = max(1, -(-len(history) // max_points))
    picked = history[::step]
    if picked[-1] is not history[-1]:
        picked.append(history[-1])
    top = max(max(h["train_loss"], h["val_loss"]) for h in picked)

    def series(key: str) -> str:
        return ", ".join(f"{h[key]:.4f}" for h in picked)

    return "\n".join(
        [
            "xychart-beta",
            f'    title "Training curves, {card["version"]}: training loss, then validation loss"',
            f'    x-axis "epoch" [{", ".join(str(int(h["epoch"])) for h in picked)}]',
            f'    y-axis "loss" 0 --> {top * 1.05:.3f}',
            f"    line [{series('train_loss')}]",
            f"    line [{series('val_loss')}]",
        ]
    )


# --- pushing one commit ---------------------------------------------------------------------------------


def _push_change(
    ws: Workspace, branch: str, paths: Sequence[str], change: Callable[[Repo], str]
) -> tuple[str, bool]:
    """Make one commit on the base tip in a scratch worktree and push it as ``branch``.

    ``change`` edits the worktree (``paths``, the first being the release file) and returns the commit
    message. When the remote branch already holds one commit on the current base with the same content
    of ``paths``, nothing is pushed (a re-run). Returns the commit and whether it was pushed.
    """
    base = ws.repo.rev(ws.base_ref)
    existing = ws.repo.remote_branch(branch)
    with scratch_worktree(ws.repo, base) as wt:
        message = change(wt)
        wt.git("add", "--", *paths)
        if not _staged(wt):
            raise PromotionError(
                f"{paths[0]} already holds this release on {ws.cfg.forge.base_branch}: nothing to do"
            )
        wt.git("commit", "--quiet", "-F", "-", input=message)
        texts = [wt.show("HEAD", p) for p in paths]
        if (
            existing
            and ws.repo.ok("rev-parse", "--verify", f"{existing}^")
            and ws.repo.rev(f"{existing}^") == base
            and [ws.repo.show(existing, p) for p in paths] == texts
        ):
            log.info("branch already up to date", extra=fields(branch=branch, commit=existing[:12]))
            return existing, False
        wt.git("push", "--quiet", "--force", ws.repo.remote, f"HEAD:refs/heads/{branch}", env=ws.git_env())
        commit = wt.rev("HEAD")
    ws.repo.fetch(env=ws.git_env())
    log.info("pushed", extra=fields(branch=branch, commit=commit[:12]))
    return commit, True


def _writes_release(path: str, release: Release, ring: str, message: str) -> Callable[[Repo], str]:
    """The change of a release PR: the ring's release file edited in place to ``release`` (ruamel round
    trip, so the diff is the changed lines), committed with ``message``."""

    def change(wt: Repo) -> str:
        file = wt.root / path
        file.write_text(edit_release_text(file.read_text(), release, ring=ring, source=path))
        return message

    return change


def _staged(wt: Repo) -> bool:
    return not wt.ok("diff", "--cached", "--quiet")


def _supersede(ws: Workspace, prefixes: Sequence[str], keep: PullRequest, version: str) -> list[int]:
    """Close every other open PR whose head starts with one of ``prefixes``, pointing to ``keep``."""
    closed = []
    for pr in ws.forge.list_prs(state="open"):
        if pr.head.startswith(tuple(prefixes)) and pr.number != keep.number:
            ws.forge.close_pr(
                pr.number,
                comment=f"Superseded by #{keep.number} ({version}): only the newest proposal for a ring "
                "stays open. Review that one instead.",
            )
            log.info("closed superseded PR", extra=fields(pr=pr.number, successor=keep.number))
            closed.append(pr.number)
    return closed


# --- propose --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposeOutcome:
    version: str
    branch: str
    pr: PullRequest
    pushed: bool
    superseded: list[int]


def read_card(bundle_uri: str) -> dict[str, Any]:
    root, version = bundle_uri.rstrip("/").rsplit("/models/", 1)
    try:
        data = open_store(root).get(f"models/{version}/model.json")
    except EdgeopsError as exc:
        raise PromotionError(f"{bundle_uri}: cannot read the model card model.json ({exc})") from None
    try:
        card = json.loads(data)
    except ValueError:
        raise PromotionError(f"{bundle_uri}model.json is not JSON: the bundle is damaged") from None
    if not isinstance(card, dict) or card.get("version") != version:
        raise PromotionError(f"{bundle_uri}model.json does not describe version {version}")
    return card


def _release_files(files: dict[str, FileEntry]) -> dict[str, FileEntry]:
    """What a node downloads: the model, its health check input, and any TensorRT engines."""
    keep = {"model.onnx", "golden.json"}
    return {
        n: e
        for n, e in sorted(files.items())
        if n in keep or (n.startswith("engine-") and n.endswith(".plan"))
    }


def _commit_subject(ring: str, card: dict[str, Any]) -> str:
    accuracy = card["metrics"]["subset_accuracy"]
    fleet = card.get("fleet")
    if fleet:
        versus = f"{_pts(accuracy - fleet['metrics']['subset_accuracy'])} vs fleet {fleet['version']}"
    else:
        versus = "first release"
    return f"{ring}: model {card['version']} (accuracy {_pct(accuracy)}, {versus})"


def propose(ws: Workspace, *, ring: str, bundle_uri: str, private_key: Ed25519PrivateKey) -> ProposeOutcome:
    """Open (or update) the PR that pins the bundle at ``bundle_uri`` in the first ring."""
    first = ws.cfg.ring_order()[0]
    if ws.ring(ring) != first:
        raise PromotionError(
            f"a new model is proposed to the first ring ({first}) only; {ring} gets it by "
            f"`edgeops promote --from {ws.cfg.rings[ring].after} --to {ring}` once it has soaked"
        )
    trusted = load_public_keys(ws.root / ws.cfg.signing.public_key)
    if key_id(private_key) not in trusted:
        which = "the one nodes trust" if len(trusted) == 1 else "one of the keys nodes trust"
        raise PromotionError(
            f"the signing key ({key_id(private_key)}) is not {which} ({', '.join(sorted(trusted))}, "
            f"{ws.cfg.signing.public_key}): nodes would refuse this release. Use the release signing key"
        )
    bundle_uri = bundle_uri if bundle_uri.endswith("/") else bundle_uri + "/"
    try:
        report = verify_bundle_uri(bundle_uri, trusted)
    except BundleError as exc:
        raise PromotionError(f"not proposing {bundle_uri}: {exc}") from None
    card = read_card(bundle_uri)
    if not card.get("gates_passed", False):
        raise PromotionError(f"{card['version']} failed its evaluation gates (model card): not proposing it")
    version = report.version
    _refuse_revoked(ws, version, f"proposing {version} to {ring}")
    path = ws.release_path(ring)
    history = ws.history(ring)
    current = history.current.version if history.current else None
    if current == version:
        raise PromotionError(
            f"{ring} already runs {version} (merged on {ws.cfg.forge.base_branch}): nothing to propose"
        )
    if current is not None and parse_version(version) < parse_version(current):
        raise PromotionError(
            f"{ring} runs {current}; proposing {version} would go backwards. Use `edgeops rollback --ring "
            f"{ring} --to {version}` to return to a version it ran before"
        )
    release = make_release(
        private_key,
        version=version,
        interface=card["interface"],
        bundle=bundle_uri,
        files=_release_files(report.files),
        metrics={
            "accuracy": card["metrics"]["subset_accuracy"],
            "fp_rate": card["metrics"]["fp_rate"],
            "fn_rate": card["metrics"]["fn_rate"],
        },
        source={
            "commit": card["source"]["commit"],
            "dataset": card["dataset"]["fingerprint"],
            "run": card["source"]["run"],
        },
    )
    branch = f"release/{ring}/{version}"
    subject = _commit_subject(ring, card)

    message = commit_message(
        subject,
        f"Pins {bundle_uri} in ring {ring}. Proposed by `edgeops propose`; approving the PR is the "
        "release approval.",
        [
            ("Model-Version", version),
            ("Dataset", card["dataset"]["fingerprint"]),
            ("Run", card["source"]["run"]),
        ],
    )
    _, pushed = _push_change(ws, branch, [path], _writes_release(path, release, ring, message))
    body = _render(
        "release_pr.md.j2", card=card, release=release, ring=ring, ring_path=ws.cfg.rings[ring].path,
        current=current, chart=training_chart(card),
    )  # fmt: skip
    pr = ws.forge.open_or_update_pr(
        head=branch, base=ws.cfg.forge.base_branch, title=subject, body=body,
        labels=[*ws.cfg.review.labels, f"ring:{ring}"], reviewers=ws.reviewers(path),
    )  # fmt: skip
    superseded = _supersede(ws, [f"release/{ring}/"], pr, version)
    return ProposeOutcome(version, branch, pr, pushed, superseded)


# --- waves ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveState:
    """Where a ring's rollout stands (DESIGN.md, "Rings and waves"), read from its git history."""

    version: str
    release: Release
    percent: float  # the share of the ring's nodes that run `release`; 100: the whole ring
    entered: RingEvent  # the commit that brought the version into the ring (its first wave)
    started: RingEvent  # the commit that set the current percent (the current wave's soak clock)

    def hours(self, now: datetime) -> float:
        """How long the current wave has run."""
        return max(0.0, (now - self.started.time).total_seconds() / 3600.0)


def wave_state(history: RingHistory) -> WaveState | None:
    """The ring's current version and wave; None when it runs no release (or an unreadable file)."""
    current, segment, started = history.current, history.current_segment(), history.wave_start()
    if current is None or current.release is None or segment is None or started is None:
        return None
    return WaveState(current.release.version, current.release, wave_percent(current.release),
                     segment.start, started)  # fmt: skip


def _whole(release: Release) -> Release:
    """``release`` alone: no previous, no wave, no swap windows (what ``previous`` holds)."""
    return replace(release, previous=None, rollout_percent=None, swap_windows=())


def _same_signed(a: Release, b: Release) -> bool:
    return signed_payload(a.version, a.interface, a.bundle, a.files) == signed_payload(
        b.version, b.interface, b.bundle, b.files
    )


def _p(percent: float) -> str:
    return f"{percent:g}"


def _closed_hours(windows: Sequence[str]) -> float:
    """The longest time, in hours, that none of ``windows`` is open (0 without windows): how long a node
    may wait for its swap, in whatever time zone it keeps."""
    parsed = parse_windows(windows)
    if not parsed:
        return 0.0
    monday = datetime(2024, 1, 1)  # a Monday; windows are read as wall-clock time
    minutes = [any(w.contains(monday + timedelta(minutes=m)) for w in parsed) for m in range(7 * 24 * 60)]
    if not any(minutes):
        return 7 * 24.0
    longest = run = 0
    for is_open in minutes + minutes:  # twice round the week: a closed stretch may wrap past Sunday
        run = 0 if is_open else run + 1
        longest = max(longest, run)
    return min(longest, 7 * 24 * 60) / 60.0


def _grace_end(ws: Workspace, state: WaveState) -> datetime:
    """When the current wave's nodes should all run the release: the install grace after the wave began,
    plus the longest wait for a swap window where the release names some."""
    hours = ws.cfg.gates.telemetry.install_grace_hours + _closed_hours(state.release.swap_windows)
    return state.started.time + timedelta(hours=hours)


# (ring, version, since, until, members) -> telemetry; members None: the whole ring. The default reads the
# runtime backend's PostgreSQL; the fleet simulator and the demo pass their own.
TelemetryReader = Callable[[str, str, datetime, datetime, "frozenset[str] | None"], "RingTelemetry"]
# ring -> the device ids registered in it; the default reads the backend's `edge_devices`.
DeviceLister = Callable[[str], list[str]]


def _telemetry(
    dsn: str | None, ring: str, version: str, since: datetime, until: datetime, *,
    members: frozenset[str] | None = None,
) -> RingTelemetry:  # fmt: skip
    from tools.core.pg import connect
    from tools.gitops.telemetry import read_ring_telemetry

    conn = connect(dsn)
    try:
        return read_ring_telemetry(
            conn, ring=ring, version=version, since=since, until=until, members=members
        )
    finally:
        conn.close()


def _registered(dsn: str | None, ring: str) -> list[str]:
    from tools.core.pg import connect
    from tools.gitops.telemetry import ring_devices

    conn = connect(dsn)
    try:
        return ring_devices(conn, ring)
    finally:
        conn.close()


@dataclass(frozen=True)
class _Sources:
    """Where telemetry and the rings' registered nodes come from (PostgreSQL unless given)."""

    read: TelemetryReader
    devices: DeviceLister

    @classmethod
    def of(cls, dsn: str | None, read: TelemetryReader | None, devices: DeviceLister | None) -> _Sources:
        def from_pg(
            ring: str, version: str, since: datetime, until: datetime, members: frozenset[str] | None
        ) -> RingTelemetry:
            return _telemetry(dsn, ring, version, since, until, members=members)

        return cls(read or from_pg, devices or (lambda ring: _registered(dsn, ring)))

    def members(self, ring: str, percent: float) -> frozenset[str] | None:
        """The wave's nodes (None: the whole ring, nothing to list)."""
        from tools.gitops.telemetry import wave_members

        return None if percent >= 100 else frozenset(wave_members(self.devices(ring), percent))


def _on_target_gate(
    ws: Workspace, sources: _Sources, ring: str, state: WaveState, *, members: frozenset[str] | None,
    purpose: Literal["promote", "guard"],
) -> GateResult:  # fmt: skip
    """Stuck installs: after the grace, of the wave's nodes that report anything, the share on the release."""
    from tools.gitops.telemetry import GateResult, check_on_target

    gates = ws.cfg.gates.telemetry
    grace_end = _grace_end(ws, state)
    if ws.now <= grace_end:
        why = f"the {_p(state.percent)}% wave's nodes have until {_iso(grace_end)} to swap"
        judged = "not judged" if purpose == "guard" else "on_target_fraction"
        return GateResult("on_target_fraction", None, gates.min_on_target_fraction, purpose == "guard",
                          f"{judged}: {why}")  # fmt: skip
    telemetry = sources.read(ring, state.version, grace_end, ws.now, members)
    return check_on_target(telemetry, gates, purpose=purpose)


# --- revocations ----------------------------------------------------------------------------------------


def _refuse_revoked(ws: Workspace, version: str, doing: str) -> None:
    record = ws.revoked().get(version)
    if record is not None:
        raise PromotionError(
            f"not {doing}: {version} is revoked ({record['path']} on {ws.cfg.forge.base_branch}: "
            f"{record.get('reason') or 'no reason given'}). A reviewed PR that deletes that file, and "
            "changes nothing else, lifts the revocation"
        )


# --- promote --------------------------------------------------------------------------------------------


@dataclass
class PromoteDecision:
    from_ring: str
    to_ring: str
    version: str | None
    gates: list[GateResult]
    telemetry: RingTelemetry | None = None
    pr: PullRequest | None = None
    note: str = ""
    # "enter": the version enters to_ring (at its first wave); "wave": to_ring's next wave of the version
    # it is rolling out; "none": nothing to promote.
    kind: Literal["enter", "wave", "none"] = "none"
    percent: float | None = None  # the share of to_ring's nodes the PR puts on the version (100: all)

    @property
    def allowed(self) -> bool:
        return bool(self.gates) and all(g.passed for g in self.gates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_ring, "to": self.to_ring, "version": self.version, "kind": self.kind,
            "percent": self.percent, "allowed": self.allowed, "note": self.note,
            "gates": [g.__dict__ for g in self.gates],
            "telemetry": self.telemetry.to_dict() if self.telemetry else None,
            "pr": self.pr.number if self.pr else None,
        }  # fmt: skip


def _soak_gate(
    hours: float, required: float, ring: str, version: str, *, name: str = "soak_hours", what: str = ""
) -> GateResult:
    from tools.gitops.telemetry import GateResult

    ok = hours >= required
    detail = f"{ring} has run {version}{what} for {hours:.1f} h; soak requires {required:g} h" + (
        "" if ok else f" ({required - hours:.1f} h to go)"
    )
    return GateResult(name, round(hours, 2), required, ok, detail)


def promote(
    ws: Workspace,
    *,
    from_ring: str,
    to_ring: str | None = None,
    dsn: str | None = None,
    dry_run: bool = False,
    telemetry_reader: TelemetryReader | None = None,
    devices: DeviceLister | None = None,
) -> PromoteDecision:
    """Open the next PR of ``from_ring``'s release on its way through the next ring, when its gates pass.

    The next ring runs another version (or none): the release **enters** it, at its first wave, gated on
    ``from_ring``'s soak and telemetry. The next ring is rolling out ``from_ring``'s version in a partial
    wave: the PR widens it to the **next wave**, gated on the current wave's soak and on the telemetry of
    the nodes in it (gates, and stuck installs). It runs it whole already: nothing to do.
    """
    to_ring = to_ring or ws.next_ring(from_ring)
    if to_ring is None:
        raise PromotionError(f"{from_ring} is the last ring: there is nothing to promote it to")
    if ws.cfg.rings[ws.ring(to_ring)].after != from_ring:
        raise PromotionError(
            f"{to_ring} is promoted from {ws.cfg.rings[to_ring].after or 'nothing (the first ring)'}, not "
            f"{from_ring} (rings.{to_ring}.after in edgeops.yaml): a ring cannot be skipped"
        )
    source = ws.history(from_ring)
    source_state = wave_state(source)
    if source_state is None:
        raise PromotionError(f"{from_ring} has no release to promote")
    sources = _Sources.of(dsn, telemetry_reader, devices)
    target = wave_state(ws.history(to_ring))
    if target is not None and target.version == source_state.version:
        if target.percent < 100:
            return _promote_wave(ws, from_ring, to_ring, target, sources, dry_run=dry_run)
        decision = PromoteDecision(from_ring, to_ring, target.version, [])
        decision.note = f"{to_ring} already runs {target.version}: nothing to promote"
        return decision
    return _promote_enter(
        ws, from_ring, to_ring, source=source_state, target=target, sources=sources, dry_run=dry_run
    )


def _promote_enter(
    ws: Workspace, from_ring: str, to_ring: str, *, source: WaveState, target: WaveState | None,
    sources: _Sources, dry_run: bool,
) -> PromoteDecision:  # fmt: skip
    from tools.gitops.telemetry import GateResult, check_gates, render_gate_table, wave_members

    release, version = source.release, source.version
    _refuse_revoked(ws, version, f"promoting {version} to {to_ring}")
    ring = ws.cfg.rings[to_ring]
    # Nodes outside the first wave keep what the ring's settled nodes run now: its release, or, while it
    # is itself in the middle of a rollout, that rollout's `previous` (never a version its waves did not
    # finish). No release yet: there is nothing to fall back to, so the whole ring at once; a ring whose
    # waves are [100] takes it whole as well, exactly as before waves existed (a rollback is a revert).
    settled: Release | None = None
    if target is not None and ring.waves != [100]:
        settled = target.release.previous if target.percent < 100 else target.release
    previous = _whole(settled) if settled is not None and settled.version != version else None
    percent = ring.waves[0] if previous is not None else None
    if percent is None and ring.swap_windows:
        percent = 100.0  # windows live in the rollout block: the whole ring, swapping in its windows
    new = replace(_whole(release), previous=previous, rollout_percent=percent,
                  swap_windows=tuple(ring.swap_windows))  # fmt: skip
    decision = PromoteDecision(
        from_ring, to_ring, version, [], kind="enter", percent=100.0 if percent is None else percent
    )
    if source.percent < 100:
        decision.gates.append(GateResult(
            "source_wave", source.percent, 100.0, False,
            f"{from_ring} runs {version} on {_p(source.percent)}% of its nodes: finish its waves first",
        ))  # fmt: skip
    soaked = source.entered
    ran = max(0.0, (ws.now - soaked.time).total_seconds() / 3600.0)
    soak = ws.cfg.rings[from_ring].soak_hours
    decision.gates.append(_soak_gate(ran, soak, from_ring, version))
    telemetry = sources.read(from_ring, version, soaked.time, ws.now, None)
    decision.telemetry = telemetry
    decision.gates.extend(check_gates(telemetry, ws.cfg.gates.telemetry, purpose="promote"))
    if _stops_here(ws, decision, dry_run=dry_run):
        return decision

    path = ws.release_path(to_ring)
    branch = f"promote/{to_ring}/{version}"
    share = 100.0 if percent is None else percent
    partial = previous is not None and share < 100
    subject = (
        f"{to_ring}: promote model {version} from {from_ring} (soaked {ran:.0f} h, "
        f"{from_ring} accuracy {_pct(telemetry.accuracy)} on {telemetry.validated} validated"
        + (f"; first wave {_p(share)}%)" if partial else ")")
    )
    if partial:
        how = (
            f"Copies {from_ring}'s release block of {version} unchanged, as the first wave "
            f"({_p(share)}% of {to_ring}'s nodes); the others keep "
            f"{previous.version if previous else 'theirs'} (`previous`)."
        )
    else:
        how = f"Copies {from_ring}'s release block of {version} unchanged, for every {to_ring} node at once."

    message = commit_message(
        subject, f"{how} Proposed by `edgeops promote`.",
        [("Model-Version", version), ("Promoted-From", from_ring),
         *([("Wave", f"{_p(percent)}%")] if percent is not None else []),
         ("Dataset", str(release.source.get("dataset", "unknown"))),
         ("Run", str(release.source.get("run", "unknown")))],
    )  # fmt: skip
    _push_change(ws, branch, [path], _writes_release(path, new, to_ring, message))
    reach = None
    if partial:
        try:
            registered = sources.devices(to_ring)
            reach = {"nodes": len(wave_members(registered, share)), "of": len(registered)}
        except EdgeopsError as exc:  # the node count is information for the reviewer, not a gate
            log.info("ring nodes unknown", extra=fields(ring=to_ring, reason=str(exc)))
    body = _render(
        "promote_pr.md.j2", release=release, from_ring=from_ring, to_ring=to_ring,
        to_path=ws.cfg.rings[to_ring].path, current=target.version if target else None,
        soaked_hours=ran, soak_hours=soak, since=_iso(soaked.time), since_commit=soaked.commit,
        telemetry={**telemetry.to_dict(), "since": _iso(telemetry.since), "until": _iso(telemetry.until)},
        gate_table=render_gate_table(decision.gates), percent=percent, previous=previous,
        waves=ring.waves, reach=reach, windows=list(ring.swap_windows),
    )  # fmt: skip
    decision.pr = ws.forge.open_or_update_pr(
        head=branch, base=ws.cfg.forge.base_branch, title=subject, body=body,
        labels=[*ws.cfg.review.labels, f"ring:{to_ring}", PROMOTION_LABEL], reviewers=ws.reviewers(path),
    )  # fmt: skip
    _supersede(ws, [f"promote/{to_ring}/", f"wave/{to_ring}/"], decision.pr, version)
    _report_promotion(ws, decision, render_gate_table(decision.gates))
    decision.note = f"promotion PR #{decision.pr.number} is open"
    return decision


def _promote_wave(
    ws: Workspace, from_ring: str, to_ring: str, state: WaveState, sources: _Sources, *, dry_run: bool
) -> PromoteDecision:
    from tools.gitops.telemetry import GateResult, check_gates, render_gate_table, wave_members

    version = state.version
    _refuse_revoked(ws, version, f"widening {version} in {to_ring}")
    ring = ws.cfg.rings[to_ring]
    nxt = ring.next_wave(state.percent)
    assert nxt is not None  # the last wave is 100 and this one is below it
    decision = PromoteDecision(from_ring, to_ring, version, [], kind="wave", percent=nxt)
    ran = state.hours(ws.now)
    decision.gates.append(_soak_gate(
        ran, ring.wave_soak_hours, to_ring, version, name="wave_soak_hours",
        what=f" on its {_p(state.percent)}% wave",
    ))  # fmt: skip
    registered = sources.devices(to_ring)
    members = frozenset(wave_members(registered, state.percent))
    # The wave's nodes since the version's first wave: the 5% wave's nodes keep counting at 25%.
    telemetry = sources.read(to_ring, version, state.entered.time, ws.now, members)
    decision.telemetry = telemetry
    if members:
        decision.gates.extend(check_gates(telemetry, ws.cfg.gates.telemetry, purpose="promote"))
        on_target = _on_target_gate(ws, sources, to_ring, state, members=members, purpose="promote")
        decision.gates.append(on_target)
    else:
        # A small ring's first wave can hold no node at all (5% of 20 nodes, by the hash of their names):
        # there is nothing to judge, and waiting for evidence that cannot come would stop the rollout.
        decision.gates.append(GateResult(
            "wave_nodes", 0, 1, True,
            f"the {_p(state.percent)}% wave reaches none of {to_ring}'s {len(registered)} registered nodes: "
            "nothing to judge, so only its soak counts",
        ))  # fmt: skip
    if _stops_here(ws, decision, dry_run=dry_run):
        return decision

    path = ws.release_path(to_ring)
    branch = f"wave/{to_ring}/{version}/{_p(nxt)}"
    index = ring.waves.index(nxt) + 1
    reach = len(wave_members(registered, nxt))
    subject = (
        f"{to_ring}: model {version} to {_p(nxt)}% of nodes (wave {index} of {len(ring.waves)}; "
        f"{_p(state.percent)}% ran {ran:.0f} h, accuracy {_pct(telemetry.accuracy)})"
    )
    new = replace(state.release, rollout_percent=nxt)

    message = commit_message(
        subject,
        f"Widens {to_ring}'s rollout of {version} from {_p(state.percent)}% to {_p(nxt)}% of its nodes "
        "(rollout.percent, one line). Proposed by `edgeops promote`.",
        [("Model-Version", version), ("Wave", f"{_p(nxt)}%")],
    )
    _push_change(ws, branch, [path], _writes_release(path, new, to_ring, message))
    body = _render(
        "wave_pr.md.j2", ring=to_ring, version=version, path=path, current=state.percent, next=nxt,
        index=index, waves=ring.waves, reach=reach, registered=len(registered),
        previous=state.release.previous.version if state.release.previous else None,
        ran_hours=ran, soak_hours=ring.wave_soak_hours, since=_iso(state.started.time),
        since_commit=state.started.commit, entered=_iso(state.entered.time),
        telemetry={**telemetry.to_dict(), "since": _iso(telemetry.since), "until": _iso(telemetry.until)},
        gate_table=render_gate_table(decision.gates), windows=list(state.release.swap_windows),
    )  # fmt: skip
    decision.pr = ws.forge.open_or_update_pr(
        head=branch, base=ws.cfg.forge.base_branch, title=subject, body=body,
        labels=[*ws.cfg.review.labels, f"ring:{to_ring}", PROMOTION_LABEL, WAVE_LABEL],
        reviewers=ws.reviewers(path),
    )  # fmt: skip
    _supersede(ws, [f"promote/{to_ring}/", f"wave/{to_ring}/"], decision.pr, version)
    _report_promotion(ws, decision, render_gate_table(decision.gates))
    decision.note = f"wave PR #{decision.pr.number} is open"
    return decision


def _stops_here(ws: Workspace, decision: PromoteDecision, *, dry_run: bool) -> bool:
    """A dry run, or a gate failed (said on the source release's PR too): nothing is pushed."""
    from tools.gitops.telemetry import render_gate_table

    if dry_run:
        decision.note = "dry run: nothing pushed"
        return True
    if not decision.allowed:
        decision.note = "refused: a gate failed"
        _report_promotion(ws, decision, render_gate_table(decision.gates))
        return True
    return False


def _report_promotion(ws: Workspace, decision: PromoteDecision, table: str) -> None:
    """Keep one bot comment on the PR that released the version in the source ring, updated every run.

    Reviewers of the pilot release see why it is (not yet) promoted without opening a CI log; the daily
    promote workflow edits the same comment instead of adding one per day.
    """
    head = f"release/{decision.from_ring}/{decision.version}"
    source = next((pr for pr in ws.forge.list_prs(state="merged") if pr.head == head), None)
    if source is None:
        return  # released some other way (a hand-made PR): nothing to annotate
    to, version = decision.to_ring, decision.version
    wave = f"{_p(decision.percent)}%" if decision.percent is not None else ""
    if decision.pr is not None and decision.kind == "wave":
        verdict = f"**Next wave**: #{decision.pr.number} widens {version} in {to} to {wave} of its nodes."
    elif decision.pr is not None:
        verdict = f"**Promoted**: #{decision.pr.number} copies {version} into {to}" + (
            f" (first wave: {wave} of its nodes)." if decision.percent not in (None, 100) else "."
        )
    elif decision.kind == "wave":
        verdict = f"**{to} not widened to {wave} yet** (checked {_iso(ws.now)}):"
    else:
        verdict = f"**Not promoted to {to} yet** (checked {_iso(ws.now)}):"
    ws.forge.upsert_comment(source.number, f"promotion-{to}", f"{verdict}\n\n{table}")


# --- rollback -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackOutcome:
    ring: str
    current: str | None
    target: str | None
    reverted: str | None  # the commit `git revert`ed; None when a release block was written instead
    pr: PullRequest
    pushed: bool
    revocation: str | None = None  # the revocations/<version>.yaml the rollback adds, if any


def rollback(
    ws: Workspace, *, ring: str, to: str | None = None, reason: str | None = None,
    labels: Sequence[str] = (), gate_table: str | None = None, revoke: bool = True,
) -> RollbackOutcome:  # fmt: skip
    """Open the PR that returns ``ring`` to its previous release, or to ``to``.

    A release with a ``previous`` (a rollout in waves) returns to it: ``previous`` becomes the ring's whole
    release (the nodes outside the wave run it already; those in the wave swap back from their cache) —
    by ``git revert`` when one commit brought the version in over exactly that release. Without one, the
    commit that set the release is reverted. ``revoke`` (the default) adds ``revocations/<version>.yaml``
    to the same commit, so the version is refused until a reviewed PR deletes that file.
    """
    path = ws.release_path(ring)
    history = ws.history(ring)
    current_event = history.current
    segments = history.segments()
    if current_event is None or not segments:
        raise PromotionError(f"{path} has no history on {ws.cfg.forge.base_branch}: nothing to roll back")
    current = current_event.version
    current_release = current_event.release
    target_release: Release | None
    reverted: str | None = None
    from_previous = False
    if to is not None:
        if to == current:
            raise PromotionError(f"{ring} already runs {to}")
        target_release = history.last_release_of(to)
        if target_release is None:
            ran = sorted({s.version for s in segments if s.version}, key=parse_version)
            raise PromotionError(
                f"{ring} never ran {to}, so it is not a rollback target "
                f"(it ran: {', '.join(ran) or 'none'}). "
                f"A version that never ran in {ring} goes through `edgeops propose`/`promote`"
            )
        if wave_percent(target_release) < 100:
            target_release = _whole(target_release)  # the whole ring returns to it, not one wave
        target: str | None = to
    elif current_release is not None and current_release.previous is not None:
        previous = current_release.previous
        target, target_release, from_previous = previous.version, previous, True
        before = history.events[-2] if len(history.events) > 1 else None
        if (
            segments[-1].start.commit == current_event.commit
            and before is not None
            and before.release is not None
            and before.percent == 100
            and _same_signed(before.release, previous)
        ):
            # One commit brought the version in over exactly `previous`: its revert restores that file.
            reverted, target_release = current_event.commit, before.release
    else:
        if current is None:
            raise PromotionError(
                f"{ring} runs no release: nothing to roll back (--to VERSION restores one it ran before)"
            )
        if len(segments) < 2:
            raise PromotionError(f"{ring} has run only {current}: there is no earlier release to return to")
        earlier = segments[-2]
        target = earlier.version
        if target is not None and parse_version(target) > parse_version(current):
            raise PromotionError(
                f"the last change to {ring} was itself a rollback ({target} → {current}); reverting it would "
                f"release {target} again. Name the version to return to with --to VERSION"
            )
        target_release = history.last_release_of(target) if target else None
        if segments[-1].start.commit == current_event.commit:
            reverted = current_event.commit  # the usual case: one commit set the current release
    branch = f"rollback/{ring}/{current or 'none'}"
    subject = f"{ring}: roll back {current or 'no release'} → {target or 'no release'}"
    if reason:
        subject += " (guard: telemetry gates breached)" if AUTO_LABEL in labels else ""
    trailers = [("Model-Version", target or "none"), ("Rollback-Of", current or "none")]
    is_merge = bool(reverted) and len(ws.repo.git("show", "-s", "--format=%P", reverted or "").split()) > 1

    revocation: str | None = None
    revocation_text = ""
    if revoke and current is not None and current not in ws.revoked():
        revocation = revocation_path(current)
        existing = ws.repo.remote_branch(branch)
        # A re-run (guard, hourly) keeps the record it wrote first: same branch, nothing to push.
        revocation_text = (existing and ws.repo.show(existing, revocation)) or render_revocation(
            version=current, ring=ring, revoked_at=ws.now, by="guard" if AUTO_LABEL in labels else "rollback",
            reason=reason or f"rolled back with `edgeops rollback` ({current} → {target or 'no release'})",
        )  # fmt: skip
        trailers.append(("Revokes", current))

    def change(wt: Repo) -> str:
        text_body = reason or ""
        if reverted:
            args = ["revert", "--no-commit", *(["-m", "1"] if is_merge else []), reverted]
            try:
                wt.git(*args)
            except GitError as exc:
                raise PromotionError(
                    f"cannot revert {reverted[:12]} cleanly ({exc}); roll back with --to {target} instead"
                ) from None
            text_body = f"This reverts commit {reverted}.\n\n{text_body}".strip()
        else:
            file = wt.root / path
            file.write_text(edit_release_text(file.read_text(), target_release, ring=ring, source=path))
        if revocation is not None:
            file = wt.root / revocation
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(revocation_text)
        return commit_message(subject, text_body, trailers)

    _, pushed = _push_change(ws, branch, [path, *([revocation] if revocation else [])], change)
    body = _render(
        "rollback_pr.md.j2", ring=ring, current=current, target=target, reverted=reverted,
        reverted_is_merge=is_merge, path=path, reason=reason, gate_table=gate_table,
        from_previous=from_previous, revocation=revocation,
        percent=wave_percent(current_release) if current_release else None,
    )  # fmt: skip
    pr = ws.forge.open_or_update_pr(
        head=branch, base=ws.cfg.forge.base_branch, title=subject, body=body,
        labels=[ROLLBACK_LABEL, f"ring:{ring}", *labels], reviewers=ws.reviewers(path),
    )  # fmt: skip
    return RollbackOutcome(ring, current, target, reverted, pr, pushed, revocation)


# --- guard ----------------------------------------------------------------------------------------------


@dataclass
class GuardOutcome:
    ring: str
    version: str | None
    gates: list[GateResult]
    telemetry: RingTelemetry | None
    rollback: RollbackOutcome | None = None
    note: str = ""
    percent: float | None = None  # the share of the ring's nodes on `version` (its current wave)

    @property
    def breached(self) -> bool:
        return any(not g.passed for g in self.gates)


def guard(
    ws: Workspace, *, ring: str, dsn: str | None = None, dry_run: bool = False,
    telemetry_reader: TelemetryReader | None = None, devices: DeviceLister | None = None,
) -> GuardOutcome:  # fmt: skip
    """Check a ring's running release, over its current wave's nodes, against the telemetry gates and
    stuck installs; open the rollback PR (which revokes the version) when it breaches them."""
    from tools.gitops.telemetry import check_gates, render_gate_table

    state = wave_state(ws.history(ring))
    if state is None:
        return GuardOutcome(ring, None, [], None, note=f"{ring} runs no release: nothing to guard")
    sources = _Sources.of(dsn, telemetry_reader, devices)
    members = sources.members(ring, state.percent)
    telemetry = sources.read(ring, state.version, state.entered.time, ws.now, members)
    gates = check_gates(telemetry, ws.cfg.gates.telemetry, purpose="guard")
    gates.append(_on_target_gate(ws, sources, ring, state, members=members, purpose="guard"))
    outcome = GuardOutcome(ring, state.version, gates, telemetry, percent=state.percent)
    wave = f" (wave {_p(state.percent)}%)" if state.percent < 100 else ""
    if not outcome.breached:
        outcome.note = f"{ring} {state.version}{wave} is within its gates"
        return outcome
    if dry_run:
        outcome.note = "dry run: a rollback PR would be opened"
        return outcome
    failing = [g for g in gates if not g.passed]
    reason = (
        f"`edgeops guard` found {ring} {state.version}{wave} breaching its telemetry gates since "
        f"{_iso(state.entered.time)}: " + "; ".join(g.detail for g in failing) + "."
    )
    outcome.rollback = rollback(
        ws, ring=ring, reason=reason, labels=[AUTO_LABEL], gate_table=render_gate_table(gates)
    )
    outcome.note = f"rollback PR #{outcome.rollback.pr.number} is open"
    return outcome


# --- status ---------------------------------------------------------------------------------------------

_PR_KINDS = ("release", "promote", "wave", "rollback")


def status(
    ws: Workspace, *, dsn: str | None = None, telemetry_reader: TelemetryReader | None = None,
    devices: DeviceLister | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Per ring: version, since when, soak clock, its wave (share of nodes, the wave's soak clock, the next
    wave), open release PRs and, with a DSN or a reader, telemetry and the wave's nodes: targeted,
    reporting, on the release, stuck after the install grace, silent."""
    open_prs = ws.forge.list_prs(state="open")
    revoked = ws.revoked()
    sources = _Sources.of(dsn, telemetry_reader, devices) if (dsn or telemetry_reader) else None
    rings: list[dict[str, Any]] = []
    for name in ws.cfg.ring_order():
        history = ws.history(name)
        segment = history.current_segment()
        version = segment.version if segment else None
        entry: dict[str, Any] = {
            "ring": name,
            "version": version,
            "since": segment.start.time.isoformat() if segment else None,
            "commit": segment.start.commit if segment else None,
            "hours": round(segment.ran_for(ws.now), 2) if segment else None,
            "error": history.current.error if history.current else None,
            "prs": [
                {"number": pr.number, "title": pr.title, "head": pr.head, "url": pr.url, "labels": pr.labels}
                for pr in open_prs
                if pr.head.split("/")[1:2] == [name] and pr.head.split("/")[0] in _PR_KINDS
            ],
        }
        nxt = ws.next_ring(name)
        if nxt and segment and version:
            soak = ws.cfg.rings[name].soak_hours
            ran = segment.ran_for(ws.now)
            entry["soak"] = {
                "required_hours": soak,
                "done": ran >= soak,
                "hours_left": round(max(0.0, soak - ran), 2),
                "promotes_to": nxt,
            }
        state = wave_state(history)
        if state is not None:
            entry["wave"] = _wave_entry(ws, name, state)
            if version in revoked:
                entry["revoked"] = revoked[version].get("path")
        if sources is not None and state is not None:
            members = sources.members(name, state.percent)
            telemetry = sources.read(name, state.version, state.entered.time, ws.now, members)
            entry["telemetry"] = telemetry.to_dict()
            entry["wave"].update(_wave_nodes(ws, sources, name, state, members=members, telemetry=telemetry))
        rings.append(entry)
    return {"now": ws.now.isoformat(), "base": ws.cfg.forge.base_branch, "rings": rings}


def _wave_entry(ws: Workspace, ring: str, state: WaveState) -> dict[str, Any]:
    cfg = ws.cfg.rings[ring]
    nxt = cfg.next_wave(state.percent)
    hours = state.hours(ws.now)
    return {
        "percent": state.percent,
        "index": cfg.waves.index(state.percent) + 1 if state.percent in cfg.waves else None,
        "of": len(cfg.waves),
        "since": state.started.time.isoformat(),
        "commit": state.started.commit,
        "hours": round(hours, 2),
        "soak_required": cfg.wave_soak_hours if nxt is not None else None,
        "soak_done": hours >= cfg.wave_soak_hours if nxt is not None else None,
        "next": nxt,
        "previous": state.release.previous.version
        if state.release.previous and state.percent < 100
        else None,
    }


def _wave_nodes(
    ws: Workspace, sources: _Sources, ring: str, state: WaveState, *, members: frozenset[str] | None,
    telemetry: RingTelemetry,
) -> dict[str, Any]:  # fmt: skip
    """The wave's nodes: targeted, reporting anything, on the release, stuck (reporting, but not the
    release, after the install grace; None before it ends) and silent (not reporting at all)."""
    grace_end = _grace_end(ws, state)
    after_grace = ws.now > grace_end
    since = grace_end if after_grace else state.started.time
    seen = sources.read(ring, state.version, since, ws.now, members) if ws.now > since else telemetry
    reporting = seen.reporting_any or 0
    return {
        "targeted": telemetry.ring_nodes,
        "reporting": reporting,
        "on_target": seen.reporting_nodes,
        "stuck": reporting - seen.reporting_nodes if after_grace else None,
        "silent": telemetry.ring_nodes - reporting,
        "grace_until": grace_end.isoformat(),
    }


def render_status(report: dict[str, Any]) -> str:
    lines = [f"release status on {report['base']} at {report['now']}"]
    for r in report["rings"]:
        version = r["version"] or "no release"
        since = f" since {r['since']} ({r['hours']:.1f} h, commit {r['commit'][:12]})" if r["since"] else ""
        lines.append(f"{r['ring']}: {version}{since}")
        if r.get("error"):
            lines.append(f"  ! {r['error']}")
        if r.get("revoked"):
            lines.append(f"  ! {version} is revoked ({r['revoked']}): it rolls back, nothing ships it again")
        wave = r.get("wave")
        if wave and (wave["percent"] < 100 or wave["of"] > 1):
            where = f" (wave {wave['index']} of {wave['of']})" if wave["index"] else ""
            outside = f", the others run {wave['previous']}" if wave["previous"] else ""
            text = f"  wave: {wave['percent']:g}% of nodes{where}{outside}, {wave['hours']:.1f} h"
            if wave["next"] is not None:
                left = max(0.0, wave["soak_required"] - wave["hours"])
                text += (
                    f"; soaked ({wave['soak_required']:g} h), next wave {wave['next']:g}%"
                    if wave["soak_done"]
                    else f"; {left:.1f} h of {wave['soak_required']:g} h soak left before {wave['next']:g}%"
                )
            lines.append(text)
        if wave and "targeted" in wave:
            stuck = "? stuck (install grace)" if wave["stuck"] is None else f"{wave['stuck']} stuck"
            lines.append(
                f"  nodes: {wave['targeted']} targeted, {wave['reporting']} reporting, {wave['on_target']} "
                f"on {version}, {stuck}, {wave['silent']} silent"
            )
        soak = r.get("soak")
        if soak:
            lines.append(
                f"  soak: done ({soak['required_hours']:g} h), promotable to {soak['promotes_to']}"
                if soak["done"]
                else f"  soak: {soak['hours_left']:.1f} h left of {soak['required_hours']:g} h before "
                f"{soak['promotes_to']}"
            )
        t = r.get("telemetry")
        if t:
            lines.append(
                f"  telemetry: {t['reporting_nodes']}/{t['ring_nodes']} nodes report, {t['predictions']} "
                f"predictions, {t['validated']} validated, accuracy {_pct(t['accuracy'])}, "
                f"FN {_pct(t['fn_rate'])}, errors {t['errors']}, p95 {t['p95_latency_ms']} ms"
            )
        for pr in r["prs"]:
            lines.append(f"  PR #{pr['number']} open: {pr['title']}")
    return "\n".join(lines)
