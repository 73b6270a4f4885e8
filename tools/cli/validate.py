"""``edgeops render`` and ``edgeops validate manifests|pr``: what CI checks before anything merges."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from tools.cli._common import Formatter, project
from tools.core.errors import EdgeopsError


def cmd_render(args: argparse.Namespace) -> int:
    from tools.gitops.manifests import kustomize_build

    proj = project(args)
    sys.stdout.write(kustomize_build(proj.root / proj.ring(args.ring).path, repo_root=proj.root))
    return 0


def cmd_manifests(args: argparse.Namespace) -> int:
    from tools.gitops.manifests import KUBERNETES_VERSION, validate_manifests

    proj = project(args)
    rings = {ring: proj.cfg.rings[ring].path for ring in proj.cfg.ring_order()}
    report = validate_manifests(proj.root, rings, ["manifests/argocd"])
    for problem in report.problems:
        print(f"INVALID {problem}")
    built = ", ".join(f"{label} ({n} objects)" for label, n in report.built.items())
    print(f"built {built}; checked against Kubernetes {KUBERNETES_VERSION} and the Argo CRDs (strict)")
    if not report.ok:
        raise EdgeopsError(f"{len(report.problems)} problem(s) in the manifests (listed above)")
    print("all manifests valid")
    return 0


def cmd_pr(args: argparse.Namespace) -> int:
    from tools.gitops.gitrepo import must_be_repo
    from tools.gitops.policy import config_at, validate_pr

    proj = project(args)
    repo = must_be_repo(proj.root)
    # The PR is judged by the base's config (ring paths, order, soak, waves), never by its own: the
    # checkout is the PR's head, and its edgeops.yaml is part of what is being reviewed.
    config_file = proj.config_path.relative_to(proj.root).as_posix()
    base_cfg = config_at(repo, repo.rev(args.base), config_file)
    report = validate_pr(
        repo, base_cfg, base=args.base, head=args.head, now=datetime.now(UTC), config_file=config_file
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(f"### edgeops validate pr\n\n```\n{report.render()}\n```\n")
    return 0 if report.ok else 1


def register(sub: Any) -> None:
    render = sub.add_parser("render", help="build a ring's manifests with the pinned kustomize (to stdout)")
    render.add_argument("ring", help="a ring of edgeops.yaml, e.g. pilot")
    render.set_defaults(handler=cmd_render)

    validate = sub.add_parser("validate", help="validate manifests and pull requests before they merge")
    validate_sub = validate.add_subparsers(dest="validate_command", metavar="WHAT", required=True)
    vm = validate_sub.add_parser("manifests", help="every ring builds; every object passes strict validation")
    vm.set_defaults(handler=cmd_manifests)
    vpr = validate_sub.add_parser(
        "pr",
        help="the required CI check of a PR: release rules (signature, one ring, soak, waves, revocations)",
        description=(
            "Check the PR from --head into --base: changed release files parse and verify under the key on\n"
            "base; at most one ring changes; a release PR changes nothing else (a rollback may add the\n"
            "revocation of what it rolls back); a ring promoted from another gets only versions that\n"
            "soaked there, unless it returns to a version it ran before (a rollback is never blocked);\n"
            "versions never go backwards otherwise. A new version enters at the ring's first wave, over\n"
            "what the ring runs (`previous`); a wave widens to the next one only (skip_waves: any later\n"
            "one) after wave_soak_hours; narrowing is a rollback. A revoked version (revocations/ on base)\n"
            "neither enters nor widens; a PR lifting a revocation deletes that file and nothing else.\n"
            "Judged from base, never from the PR: edgeops.yaml (ring paths, order, soak, waves), the key,\n"
            "history, revocations. Each ring is built with kustomize at head: its model-updater must read\n"
            "exactly the ring's release file; a PR that changes the rings or Argo CD's ApplicationSet\n"
            "changes nothing else, and one that changes rings' manifests changes one ring.\n"
            "Soak, promotion and rollback compare signed content (bundle, file digests), not names.\n"
            "Exit 0 accepted, 1 rejected."
        ),
        formatter_class=Formatter,
    )
    vpr.add_argument("--base", required=True, help="the PR's base (e.g. origin/main)")
    vpr.add_argument("--head", required=True, help="the PR's head (e.g. HEAD)")
    vpr.add_argument("--json", action="store_true", help="print the report as JSON")
    vpr.set_defaults(handler=cmd_pr)
