"""``edgeops image pin|promote``: agent upgrades, the model-updater image each ring runs pinned by digest in
its overlay and moved pilot → fleet like a model (``tools.gitops.images``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from tools.cli._common import Formatter, log, project

if TYPE_CHECKING:
    from tools.gitops.images import PinOutcome


def _print(outcome: PinOutcome) -> int:
    if outcome.pr is None:
        print(outcome.note)
        return 0
    for number in outcome.superseded:
        log.info(f"closed PR #{number}: superseded by #{outcome.pr.number}")
    state = "pushed" if outcome.pushed else "already up to date"
    pr = outcome.pr
    print(f"PR #{pr.number} {pr.url}\n  {pr.title}\n  {outcome.ring}: {outcome.pin.ref}")
    print(f"  branch {outcome.branch} ({state})")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    from tools.gitops.images import pin
    from tools.gitops.promotion import Workspace

    ws = Workspace.open(project(args))
    return _print(
        pin(ws, ring=args.ring, image=args.image, digest=args.digest, source_commit=args.source_commit)
    )


def cmd_promote(args: argparse.Namespace) -> int:
    from tools.gitops.images import promote_image
    from tools.gitops.promotion import Workspace

    ws = Workspace.open(project(args))
    return _print(promote_image(ws, from_ring=args.from_ring, to_ring=args.to_ring))


def register(sub: Any) -> None:
    image = sub.add_parser(
        "image", help="agent upgrades: pin the model-updater image by digest per ring, pilot → fleet"
    )
    image_sub = image.add_subparsers(dest="image_command", metavar="WHAT", required=True)
    pin = image_sub.add_parser(
        "pin",
        help="open (or update) the PR that pins a model-updater image digest in the first ring",
        description=(
            "Rewrite the updater's images: entry of the first ring's kustomization.yaml to IMAGE@DIGEST\n"
            "(comments survive; a later pin changes the digest line only), commit it on\n"
            "agent/<ring>/<12 hex of the digest> in a scratch worktree, push, and open the PR. Run twice:\n"
            "one PR; a newer digest closes the ring's older agent PR. Exit 0 also when the ring already\n"
            "pins it."
        ),
        formatter_class=Formatter,
    )
    pin.add_argument("--ring", default="pilot", help="the first ring (default pilot)")
    pin.add_argument(
        "--image", required=True, metavar="NAME",
        help="the pushed repository, without tag or digest, e.g. ghcr.io/acme/model-updater",
    )  # fmt: skip
    pin.add_argument("--digest", required=True, metavar="sha256:HEX", help="the image (index) digest")
    pin.add_argument(
        "--source-commit", metavar="SHA", help="the commit the image was built from (commit trailer, PR body)"
    )
    pin.set_defaults(handler=cmd_pin)

    prom = image_sub.add_parser(
        "promote",
        help="open (or update) the PR that copies a ring's model-updater pin into the next ring",
        description=(
            "Copy --from's pinned model-updater image and digest, as merged on the base branch, into the\n"
            "next ring's kustomization.yaml (`edgeops validate pr` accepts nothing else there), on\n"
            "agent/<ring>/<12 hex of the digest>. The PR says how long --from has run it. Exit 0 also when\n"
            "the ring already pins it; 1 when --from pins no digest."
        ),
        formatter_class=Formatter,
    )
    prom.add_argument("--from", dest="from_ring", default="pilot", help="ring to copy from (default pilot)")
    prom.add_argument("--to", dest="to_ring", help="ring to copy to (default: the ring after --from)")
    prom.set_defaults(handler=cmd_promote)
