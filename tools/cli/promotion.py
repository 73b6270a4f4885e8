"""``edgeops propose|promote|rollback|guard|status``: release pull requests, from the first ring to the fleet
and back (``tools.gitops.promotion``)."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from tools.cli._common import PG_HELP, Formatter, log, print_gates, project

if TYPE_CHECKING:
    from tools.gitops.promotion import Workspace


def _workspace(args: argparse.Namespace) -> Workspace:
    from tools.gitops.promotion import Workspace

    return Workspace.open(project(args))


def cmd_propose(args: argparse.Namespace) -> int:
    from tools.core.signing import load_private_key
    from tools.gitops.promotion import propose

    key = load_private_key()
    outcome = propose(_workspace(args), ring=args.ring, bundle_uri=args.bundle, private_key=key)
    for number in outcome.superseded:
        log.info(f"closed PR #{number}: superseded by #{outcome.pr.number}")
    state = "pushed" if outcome.pushed else "already up to date"
    print(
        f"PR #{outcome.pr.number} {outcome.pr.url}\n  {outcome.pr.title}\n  branch {outcome.branch} ({state})"
    )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from tools.gitops.promotion import promote

    decision = promote(
        _workspace(args), from_ring=args.from_ring, to_ring=args.to_ring, dsn=args.pg, dry_run=args.dry_run
    )
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2, default=str))
    else:
        verdict = "ALLOWED" if decision.allowed else "REFUSED"
        if not decision.gates:
            verdict = "NOTHING TO DO"
        what = {"enter": " (first wave:", "wave": " (next wave:"}.get(decision.kind)
        partial = (
            what is not None
            and decision.percent is not None
            and (decision.kind == "wave" or decision.percent < 100)
        )
        wave = f"{what} {decision.percent:g}% of nodes)" if partial else ""
        print(f"promote {decision.version} {decision.from_ring} → {decision.to_ring}{wave}: {verdict}")
        print_gates(decision.gates)
        if decision.pr:
            print(f"PR #{decision.pr.number} {decision.pr.url}\n  {decision.pr.title}")
        if decision.note:
            print(decision.note)
    return 0 if decision.allowed or not decision.gates else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    from tools.gitops.promotion import rollback

    outcome = rollback(
        _workspace(args), ring=args.ring, to=args.to, reason=args.reason, revoke=not args.no_revoke
    )
    how = (
        f"git revert of {outcome.reverted[:12]}"
        if outcome.reverted
        else f"release of {outcome.target} restored"
    )
    print(f"PR #{outcome.pr.number} {outcome.pr.url}\n  {outcome.pr.title}\n  {how}")
    if outcome.revocation:
        print(f"  revokes {outcome.current} ({outcome.revocation}) once merged")
    return 0


def cmd_guard(args: argparse.Namespace) -> int:
    from tools.gitops.promotion import guard

    outcome = guard(_workspace(args), ring=args.ring, dsn=args.pg, dry_run=args.dry_run)
    verdict = "BREACHED" if outcome.breached else "ok"
    wave = f" (wave {outcome.percent:g}%)" if outcome.percent is not None and outcome.percent < 100 else ""
    print(f"guard {outcome.ring} {outcome.version or '(no release)'}{wave}: {verdict}")
    print_gates(outcome.gates)
    if outcome.rollback:
        print(f"PR #{outcome.rollback.pr.number} {outcome.rollback.pr.url}\n  {outcome.rollback.pr.title}")
    if outcome.note:
        print(outcome.note)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from tools.gitops.promotion import render_status, status

    dsn = args.pg or os.environ.get("EDGEOPS_PG_DSN")
    report = status(_workspace(args), dsn=dsn)
    print(json.dumps(report, indent=2) if args.json else render_status(report))
    return 0


def register(sub: Any) -> None:
    prop = sub.add_parser(
        "propose",
        help="open (or update) the PR that pins a published bundle in the first ring",
        description=(
            "Verify the bundle (digests + signature), sign its release block with\n"
            "$EDGEOPS_SIGNING_KEY(_FILE), edit environments/<ring>/release.yaml in place (comments\n"
            "survive), "
            "commit on release/<ring>/<version> in a scratch worktree, push, and open the PR with the model\n"
            "card as its body. Run twice: one PR.\n"
            "A newer proposal closes the older open one, pointing to its successor."
        ),
        formatter_class=Formatter,
    )
    prop.add_argument("--ring", default="pilot", help="the first ring (default pilot)")
    prop.add_argument(
        "--bundle", required=True, metavar="URI", help="the bundle, e.g. s3://bucket/models/v2.1/"
    )
    prop.set_defaults(handler=cmd_propose)

    prom = sub.add_parser(
        "promote",
        help="open the next PR of a soaked release into the next ring: its first wave, or the next wave",
        description=(
            "When the next ring runs another version: the PR copies the source ring's release into it at\n"
            "its first wave (rings.<ring>.waves; `previous` = what the ring runs now), gated on the source\n"
            "ring's soak_hours (git history of its release file) and its telemetry (the backend's\n"
            "`predictions` table) against gates.telemetry. When the next ring is rolling that version out\n"
            "in a partial wave: the PR widens rollout.percent to the next wave (one line), gated on the\n"
            "wave's wave_soak_hours, the telemetry of the wave's nodes and stuck installs.\n"
            "A revoked version (revocations/) is refused. Exit 0 when promoted (or nothing to do), 1 when\n"
            "refused. --dry-run prints every gate and pushes nothing."
        ),
        formatter_class=Formatter,
    )
    prom.add_argument(
        "--from", dest="from_ring", default="pilot", help="ring to promote from (default pilot)"
    )
    prom.add_argument("--to", dest="to_ring", help="ring to promote to (default: the ring after --from)")
    prom.add_argument("--pg", metavar="DSN", help=PG_HELP)
    prom.add_argument(
        "--dry-run", action="store_true", help="print the decision and every gate; push nothing"
    )
    prom.add_argument("--json", action="store_true", help="print the decision as JSON")
    prom.set_defaults(handler=cmd_promote)

    rb = sub.add_parser(
        "rollback",
        help="open the PR that returns a ring to its previous release and revokes the current version",
        description=(
            "A release with `previous` (a rollout in waves) returns to it: `previous` becomes the ring's\n"
            "whole release (by `git revert` when one commit brought the version in). Otherwise find the\n"
            "commit on the base branch that set the ring's current release and `git revert` it (-m 1 for a\n"
            "merge commit). On rollback/<ring>/<version>, with a PR labelled `rollback`. With --to VERSION,\n"
            "write the release block the ring last ran for VERSION instead. The same commit adds\n"
            "revocations/<version>.yaml: the version is refused until a reviewed PR deletes that file\n"
            "(--no-revoke: leave it out)."
        ),
        formatter_class=Formatter,
    )
    rb.add_argument("--ring", required=True, help="ring to roll back (pilot, fleet)")
    rb.add_argument(
        "--to", metavar="VERSION", help="a version this ring ran before (default: the previous one)"
    )
    rb.add_argument("--reason", help="why, for the PR body and the revocation record")
    rb.add_argument(
        "--no-revoke",
        action="store_true",
        help="do not revoke the rolled-back version (no revocations/ file)",
    )
    rb.set_defaults(handler=cmd_rollback)

    gd = sub.add_parser(
        "guard",
        help="check a running release (its current wave) against the gates; open the rollback PR on a breach",
        description=(
            "Judge the ring's current version over the nodes of its current wave (the whole ring without\n"
            "one) against gates.telemetry, and stuck installs: once install_grace_hours have passed since\n"
            "the wave began, with at least min_sample_nodes of the wave reporting, fewer than\n"
            "min_on_target_fraction of them on the version is a breach. On a breach, open the rollback PR\n"
            "(labels rollback, auto), which also revokes the version."
        ),
        formatter_class=Formatter,
    )
    gd.add_argument("--ring", required=True, help="ring to guard (pilot, fleet)")
    gd.add_argument("--pg", metavar="DSN", help=PG_HELP)
    gd.add_argument("--dry-run", action="store_true", help="report; open no PR")
    gd.set_defaults(handler=cmd_guard)

    st = sub.add_parser(
        "status", help="per ring: version, since when, wave and soak clocks, open PRs, telemetry and nodes"
    )
    st.add_argument("--pg", metavar="DSN", help=PG_HELP + "; without one, no telemetry")
    st.add_argument("--json", action="store_true", help="JSON for scripts")
    st.set_defaults(handler=cmd_status)
