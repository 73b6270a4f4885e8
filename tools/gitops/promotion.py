"""The human moments of a release, each a small pull request: propose, promote, roll back, guard, status.

    edgeops propose  --ring pilot --bundle s3://models/models/v2.1/   # the training pipeline, monthly
    edgeops promote  --from pilot [--to fleet] [--dry-run]             # soak + pilot telemetry gates
    edgeops rollback --ring fleet [--to v2.0]                          # `git revert` of the release commit
    edgeops guard    --ring pilot                                      # opens the rollback PR itself
    edgeops status   [--json]

Every command works from the repository's git checkout (the folder of ``edgeops.yaml``) but never touches
its branch or files: it fetches the remote, makes its one commit in a temporary worktree at the remote base
branch, pushes a bot-owned branch (``release/<ring>/<version>``, ``promote/<ring>/<version>``,
``rollback/<ring>/<version>``) and opens or updates the PR for it through the forge. Running a command
twice updates the same PR; a branch whose content is already right is not pushed again.

History comes from git alone (:mod:`tools.gitops.gitrepo`): when a ring's release changed is the
committer time of the first-parent commit on the base branch that changed its release file. The clock is a
parameter (``now``), so tests and the demo inject one instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tools.artifacts.bundle import BundleError, FileEntry, parse_version, verify_bundle_uri
from tools.artifacts.release import Release, edit_release_text, make_release
from tools.core.config import EdgeopsConfig
from tools.core.errors import ConfigError, EdgeopsError
from tools.core.log import fields
from tools.core.project import Project
from tools.core.signing import key_id, load_public_key
from tools.core.store import open_store
from tools.gitops.forge import Forge, LocalForge, PullRequest
from tools.gitops.gitrepo import (
    GitError,
    Repo,
    RingHistory,
    commit_message,
    must_be_repo,
    ring_history,
    scratch_worktree,
)

if TYPE_CHECKING:
    from tools.gitops.telemetry import GateResult, RingTelemetry

__all__ = [
    "PromoteDecision",
    "PromotionError",
    "Workspace",
    "guard",
    "open_forge",
    "promote",
    "propose",
    "rollback",
    "status",
]

log = logging.getLogger("edgeops.release")

_TEMPLATES = Path(__file__).parent / "templates"
ROLLBACK_LABEL = "rollback"
AUTO_LABEL = "auto"
PROMOTION_LABEL = "promotion"


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
            repo.fetch()
        ws.repo.rev(ws.base_ref)  # a clear error now when the base branch is not on the remote
        return ws

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


def _push_change(ws: Workspace, branch: str, path: str, change: Callable[[Repo], str]) -> tuple[str, bool]:
    """Make one commit on the base tip in a scratch worktree and push it as ``branch``.

    ``change`` edits the worktree and returns the commit message. When the remote branch already holds one
    commit on the current base with the same release file, nothing is pushed (a re-run). Returns the commit
    and whether it was pushed.
    """
    base = ws.repo.rev(ws.base_ref)
    existing = ws.repo.remote_branch(branch)
    with scratch_worktree(ws.repo, base) as wt:
        message = change(wt)
        wt.git("add", "--", path)
        if not _staged(wt):
            raise PromotionError(
                f"{path} already holds this release on {ws.cfg.forge.base_branch}: nothing to do"
            )
        wt.git("commit", "--quiet", "-F", "-", input=message)
        text = wt.show("HEAD", path)
        if (
            existing
            and ws.repo.ok("rev-parse", "--verify", f"{existing}^")
            and ws.repo.rev(f"{existing}^") == base
            and ws.repo.show(existing, path) == text
        ):
            log.info("branch already up to date", extra=fields(branch=branch, commit=existing[:12]))
            return existing, False
        wt.git("push", "--quiet", "--force", ws.repo.remote, f"HEAD:refs/heads/{branch}")
        commit = wt.rev("HEAD")
    ws.repo.fetch()
    log.info("pushed", extra=fields(branch=branch, commit=commit[:12]))
    return commit, True


def _staged(wt: Repo) -> bool:
    return not wt.ok("diff", "--cached", "--quiet")


def _supersede(ws: Workspace, prefix: str, keep: PullRequest, version: str) -> list[int]:
    """Close every other open PR whose head starts with ``prefix``, pointing to ``keep``."""
    closed = []
    for pr in ws.forge.list_prs(state="open"):
        if pr.head.startswith(prefix) and pr.number != keep.number:
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
    public_key = load_public_key(ws.root / ws.cfg.signing.public_key)
    if key_id(private_key) != key_id(public_key):
        raise PromotionError(
            f"the signing key ({key_id(private_key)}) is not the one nodes trust ({key_id(public_key)}, "
            f"{ws.cfg.signing.public_key}): nodes would refuse this release. Use the release signing key"
        )
    bundle_uri = bundle_uri if bundle_uri.endswith("/") else bundle_uri + "/"
    try:
        report = verify_bundle_uri(bundle_uri, public_key)
    except BundleError as exc:
        raise PromotionError(f"not proposing {bundle_uri}: {exc}") from None
    card = read_card(bundle_uri)
    if not card.get("gates_passed", False):
        raise PromotionError(f"{card['version']} failed its evaluation gates (model card): not proposing it")
    version = report.version
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

    def change(wt: Repo) -> str:
        target = wt.root / path
        target.write_text(edit_release_text(target.read_text(), release, ring=ring, source=path))
        return commit_message(
            subject,
            f"Pins {bundle_uri} in ring {ring}. Proposed by `edgeops propose`; approving the PR is the "
            "release approval.",
            [
                ("Model-Version", version),
                ("Dataset", card["dataset"]["fingerprint"]),
                ("Run", card["source"]["run"]),
            ],
        )

    _, pushed = _push_change(ws, branch, path, change)
    body = _render(
        "release_pr.md.j2", card=card, release=release, ring=ring, ring_path=ws.cfg.rings[ring].path,
        current=current, chart=training_chart(card),
    )  # fmt: skip
    pr = ws.forge.open_or_update_pr(
        head=branch, base=ws.cfg.forge.base_branch, title=subject, body=body,
        labels=[*ws.cfg.review.labels, f"ring:{ring}"], reviewers=ws.reviewers(path),
    )  # fmt: skip
    superseded = _supersede(ws, f"release/{ring}/", pr, version)
    return ProposeOutcome(version, branch, pr, pushed, superseded)


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

    @property
    def allowed(self) -> bool:
        return bool(self.gates) and all(g.passed for g in self.gates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_ring, "to": self.to_ring, "version": self.version, "allowed": self.allowed,
            "note": self.note, "gates": [g.__dict__ for g in self.gates],
            "telemetry": self.telemetry.to_dict() if self.telemetry else None,
            "pr": self.pr.number if self.pr else None,
        }  # fmt: skip


def _soak_gate(hours: float, required: float, ring: str, version: str) -> GateResult:
    from tools.gitops.telemetry import GateResult

    ok = hours >= required
    detail = f"{ring} has run {version} for {hours:.1f} h; soak requires {required:g} h" + (
        "" if ok else f" ({required - hours:.1f} h to go)"
    )
    return GateResult("soak_hours", round(hours, 2), required, ok, detail)


# (ring, version, since, until) -> telemetry; the default reads the runtime backend's PostgreSQL.
TelemetryReader = Callable[[str, str, datetime, datetime], "RingTelemetry"]


def _telemetry(dsn: str | None, ring: str, version: str, since: datetime, until: datetime) -> RingTelemetry:
    from tools.core.pg import connect
    from tools.gitops.telemetry import read_ring_telemetry

    conn = connect(dsn)
    try:
        return read_ring_telemetry(conn, ring=ring, version=version, since=since, until=until)
    finally:
        conn.close()


def promote(
    ws: Workspace,
    *,
    from_ring: str,
    to_ring: str | None = None,
    dsn: str | None = None,
    dry_run: bool = False,
    telemetry_reader: TelemetryReader | None = None,
) -> PromoteDecision:
    """Copy ``from_ring``'s release into the next ring by PR, when soak and telemetry gates pass."""
    from tools.gitops.telemetry import check_gates, render_gate_table

    to_ring = to_ring or ws.next_ring(from_ring)
    if to_ring is None:
        raise PromotionError(f"{from_ring} is the last ring: there is nothing to promote it to")
    if ws.cfg.rings[ws.ring(to_ring)].after != from_ring:
        raise PromotionError(
            f"{to_ring} is promoted from {ws.cfg.rings[to_ring].after or 'nothing (the first ring)'}, not "
            f"{from_ring} (rings.{to_ring}.after in edgeops.yaml): a ring cannot be skipped"
        )
    source = ws.history(from_ring)
    segment = source.current_segment()
    if segment is None or segment.version is None or source.current is None or source.current.release is None:
        raise PromotionError(f"{from_ring} has no release to promote")
    release = source.current.release
    version = release.version
    decision = PromoteDecision(from_ring, to_ring, version, [])
    target = ws.history(to_ring)
    if target.current and target.current.version == version:
        decision.note = f"{to_ring} already runs {version}: nothing to promote"
        return decision
    soak = ws.cfg.rings[from_ring].soak_hours
    decision.gates.append(_soak_gate(segment.ran_for(ws.now), soak, from_ring, version))
    read = telemetry_reader or (lambda ring, v, since, until: _telemetry(dsn, ring, v, since, until))
    telemetry = read(from_ring, version, segment.start.time, ws.now)
    decision.telemetry = telemetry
    decision.gates.extend(check_gates(telemetry, ws.cfg.gates.telemetry, purpose="promote"))
    if dry_run:
        decision.note = "dry run: nothing pushed"
        return decision
    if not decision.allowed:
        decision.note = "refused: a gate failed"
        _report_promotion(ws, decision, render_gate_table(decision.gates))
        return decision

    path = ws.release_path(to_ring)
    branch = f"promote/{to_ring}/{version}"
    accuracy = telemetry.accuracy
    subject = (
        f"{to_ring}: promote model {version} from {from_ring} (soaked {segment.ran_for(ws.now):.0f} h, "
        f"pilot accuracy {_pct(accuracy)} on {telemetry.validated} validated)"
    )

    def change(wt: Repo) -> str:
        file = wt.root / path
        file.write_text(edit_release_text(file.read_text(), release, ring=to_ring, source=path))
        return commit_message(
            subject,
            f"Copies {from_ring}'s release block of {version} unchanged. Proposed by `edgeops promote`.",
            [("Model-Version", version), ("Promoted-From", from_ring),
             ("Dataset", str(release.source.get("dataset", "unknown"))),
             ("Run", str(release.source.get("run", "unknown")))],
        )  # fmt: skip

    _push_change(ws, branch, path, change)
    body = _render(
        "promote_pr.md.j2", release=release, from_ring=from_ring, to_ring=to_ring,
        to_path=ws.cfg.rings[to_ring].path, current=target.current.version if target.current else None,
        soaked_hours=segment.ran_for(ws.now), soak_hours=soak, since=_iso(segment.start.time),
        since_commit=segment.start.commit, telemetry={**telemetry.to_dict(), "since": _iso(telemetry.since),
        "until": _iso(telemetry.until)}, gate_table=render_gate_table(decision.gates),
    )  # fmt: skip
    decision.pr = ws.forge.open_or_update_pr(
        head=branch, base=ws.cfg.forge.base_branch, title=subject, body=body,
        labels=[*ws.cfg.review.labels, f"ring:{to_ring}", PROMOTION_LABEL], reviewers=ws.reviewers(path),
    )  # fmt: skip
    _supersede(ws, f"promote/{to_ring}/", decision.pr, version)
    _report_promotion(ws, decision, render_gate_table(decision.gates))
    decision.note = f"promotion PR #{decision.pr.number} is open"
    return decision


def _report_promotion(ws: Workspace, decision: PromoteDecision, table: str) -> None:
    """Keep one bot comment on the PR that released the version in the source ring, updated every run.

    Reviewers of the pilot release see why it is (not yet) promoted without opening a CI log; the daily
    promote workflow edits the same comment instead of adding one per day.
    """
    head = f"release/{decision.from_ring}/{decision.version}"
    source = next((pr for pr in ws.forge.list_prs(state="merged") if pr.head == head), None)
    if source is None:
        return  # released some other way (a hand-made PR): nothing to annotate
    if decision.pr is not None:
        verdict = f"**Promoted**: #{decision.pr.number} copies {decision.version} into {decision.to_ring}."
    else:
        verdict = f"**Not promoted to {decision.to_ring} yet** (checked {_iso(ws.now)}):"
    ws.forge.upsert_comment(source.number, f"promotion-{decision.to_ring}", f"{verdict}\n\n{table}")


# --- rollback -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackOutcome:
    ring: str
    current: str | None
    target: str | None
    reverted: str | None  # the commit `git revert`ed; None when the release of --to was written instead
    pr: PullRequest
    pushed: bool


def rollback(
    ws: Workspace, *, ring: str, to: str | None = None, reason: str | None = None,
    labels: Sequence[str] = (), gate_table: str | None = None,
) -> RollbackOutcome:  # fmt: skip
    """Open the PR that returns ``ring`` to its previous release (``git revert``) or to ``to``."""
    path = ws.release_path(ring)
    history = ws.history(ring)
    current_event = history.current
    segments = history.segments()
    if current_event is None or not segments:
        raise PromotionError(f"{path} has no history on {ws.cfg.forge.base_branch}: nothing to roll back")
    current = current_event.version
    target_release: Release | None
    reverted: str | None = None
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
        target: str | None = to
    else:
        if current is None:
            raise PromotionError(
                f"{ring} runs no release: nothing to roll back (--to VERSION restores one it ran before)"
            )
        if len(segments) < 2:
            raise PromotionError(f"{ring} has run only {current}: there is no earlier release to return to")
        previous = segments[-2]
        target = previous.version
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
        return commit_message(subject, text_body, trailers)

    _, pushed = _push_change(ws, branch, path, change)
    body = _render(
        "rollback_pr.md.j2", ring=ring, current=current, target=target, reverted=reverted,
        reverted_is_merge=is_merge, path=path, reason=reason, gate_table=gate_table,
    )  # fmt: skip
    pr = ws.forge.open_or_update_pr(
        head=branch, base=ws.cfg.forge.base_branch, title=subject, body=body,
        labels=[ROLLBACK_LABEL, f"ring:{ring}", *labels], reviewers=ws.reviewers(path),
    )  # fmt: skip
    return RollbackOutcome(ring, current, target, reverted, pr, pushed)


# --- guard ----------------------------------------------------------------------------------------------


@dataclass
class GuardOutcome:
    ring: str
    version: str | None
    gates: list[GateResult]
    telemetry: RingTelemetry | None
    rollback: RollbackOutcome | None = None
    note: str = ""

    @property
    def breached(self) -> bool:
        return any(not g.passed for g in self.gates)


def guard(ws: Workspace, *, ring: str, dsn: str | None = None, dry_run: bool = False) -> GuardOutcome:
    """Check a running release against the telemetry gates; open the rollback PR when it breaches them."""
    from tools.gitops.telemetry import check_gates, render_gate_table

    history = ws.history(ring)
    segment = history.current_segment()
    if segment is None or segment.version is None:
        return GuardOutcome(ring, None, [], None, note=f"{ring} runs no release: nothing to guard")
    telemetry = _telemetry(dsn, ring, segment.version, segment.start.time, ws.now)
    gates = check_gates(telemetry, ws.cfg.gates.telemetry, purpose="guard")
    outcome = GuardOutcome(ring, segment.version, gates, telemetry)
    if not outcome.breached:
        outcome.note = f"{ring} {segment.version} is within its gates"
        return outcome
    if dry_run:
        outcome.note = "dry run: a rollback PR would be opened"
        return outcome
    failing = [g for g in gates if not g.passed]
    reason = (
        f"`edgeops guard` found {ring} {segment.version} breaching its telemetry gates since "
        f"{_iso(segment.start.time)}: " + "; ".join(g.detail for g in failing) + "."
    )
    outcome.rollback = rollback(
        ws, ring=ring, reason=reason, labels=[AUTO_LABEL], gate_table=render_gate_table(gates)
    )
    outcome.note = f"rollback PR #{outcome.rollback.pr.number} is open"
    return outcome


# --- status ---------------------------------------------------------------------------------------------


def status(ws: Workspace, *, dsn: str | None = None) -> dict[str, Any]:
    """Per ring: version, since when, soak clock, open release PRs, and (with a DSN) telemetry."""
    open_prs = ws.forge.list_prs(state="open")
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
                if pr.head.split("/")[1:2] == [name]
                and pr.head.split("/")[0] in ("release", "promote", "rollback")
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
        if dsn and version and segment:
            entry["telemetry"] = _telemetry(dsn, name, version, segment.start.time, ws.now).to_dict()
        rings.append(entry)
    return {"now": ws.now.isoformat(), "base": ws.cfg.forge.base_branch, "rings": rings}


def render_status(report: dict[str, Any]) -> str:
    lines = [f"release status on {report['base']} at {report['now']}"]
    for r in report["rings"]:
        version = r["version"] or "no release"
        since = f" since {r['since']} ({r['hours']:.1f} h, commit {r['commit'][:12]})" if r["since"] else ""
        lines.append(f"{r['ring']}: {version}{since}")
        if r.get("error"):
            lines.append(f"  ! {r['error']}")
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
