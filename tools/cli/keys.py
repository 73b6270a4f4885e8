"""``edgeops keygen``, ``edgeops verify`` and ``edgeops release resign``: the release-signing key pair; a
bundle checked against the trusted keys; a ring's release re-signed with a new key (key rotation,
docs/runbooks.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tools.cli._common import Formatter, log, project
from tools.core.errors import EdgeopsError


def cmd_keygen(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from tools.core.signing import generate_keypair, key_id, load_public_keys, public_key_from_pem

    private_pem, public_pem = generate_keypair()
    priv, pub = Path(args.private_key), Path(args.public_key)
    existing, trusted = b"", {}
    if args.add:  # a key rotation: the new key joins the trusted set, the old one stays (docs/runbooks.md)
        if not pub.is_file():
            raise EdgeopsError(f"{pub}: no trusted-keys file to add to; without --add, keygen writes one")
        trusted = load_public_keys(pub)  # a malformed file is refused before anything is written
        existing = pub.read_bytes()
    for path in (priv,) if args.add else (priv, pub):
        if path.exists() and not args.force:
            raise EdgeopsError(
                f"{path} exists; pass --force to replace it (old signatures stay valid for the old key; to "
                "rotate keys without an outage, add the new one with --add)"
            )
    kid = key_id(public_key_from_pem(public_pem, source="the new key"))
    priv.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only from the first byte
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    pub.parent.mkdir(parents=True, exist_ok=True)
    if args.add:
        # After the keys there already: agents older than trust sets read only the first block.
        note = f"# key {kid}, added {datetime.now(UTC):%Y-%m-%d} by `edgeops keygen --add`\n".encode()
        pub.write_bytes(existing.rstrip(b"\n") + b"\n" + note + public_pem)
        old = ", ".join(sorted(trusted))
        what = f"added public key {kid} to {pub}, after {old} (commit it: step 1 of a key rotation)"
    else:
        pub.write_bytes(public_pem)
        what = f"the public key {kid} to {pub} (commit it)"
    log.info(
        f"wrote the private key to {priv} (keep it out of git: store it as the EDGEOPS_SIGNING_KEY secret) "
        f"and {what}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from tools.artifacts.bundle import verify_bundle_uri
    from tools.core.signing import load_public_keys

    paths = [Path(p) for p in args.public_key] if args.public_key else [project(args).public_key_path]
    trusted = {kid: key for path in paths for kid, key in load_public_keys(path).items()}
    report = verify_bundle_uri(args.bundle, trusted)
    print(f"OK {report.version}: {len(report.files)} files match SHA256SUMS, signed by key {report.key_id}")
    return 0


def cmd_release_resign(args: argparse.Namespace) -> int:
    from tools.core.signing import load_private_key
    from tools.gitops.resign import resign_ring

    proj = project(args)
    old = Path(args.old_public_key) if args.old_public_key else None
    outcome = resign_ring(proj, args.ring, load_private_key(), old_public_keys=old)
    if outcome.version is None:
        print(f"{args.ring}: no release yet (version: null): nothing to sign")
        return 0
    for block in outcome.blocks:
        how = f"key {block.old_key} → {block.new_key}" if block.changed else f"already key {block.new_key}"
        print(f"{args.ring}: {block.what}: {how}")
    rel = proj.release_path(args.ring)
    if outcome.changed:
        print(
            f"rewrote the signatures in {rel} (nothing else). Commit it on a branch and open one PR for this "
            "ring: `edgeops validate pr` reports it as re-signed"
        )
    else:
        print(f"{rel} is already signed by this key: nothing to change")
    return 0


def register(sub: Any) -> None:
    kg = sub.add_parser("keygen", help="make an Ed25519 release-signing key pair")
    kg.add_argument(
        "--private-key", metavar="PATH", required=True, help="where to write the private key (0600)"
    )
    kg.add_argument(
        "--public-key",
        metavar="PATH",
        default="environments/release-signing/release-signing.pub",
        help="public key",
    )
    kg.add_argument("--force", action="store_true", help="replace existing key files")
    kg.add_argument(
        "--add",
        action="store_true",
        help="append the new public key to the existing --public-key file instead of replacing it: both "
        "keys are trusted (step 1 of a key rotation, docs/runbooks.md)",
    )
    kg.set_defaults(handler=cmd_keygen)

    ver = sub.add_parser("verify", help="verify a published bundle's digests and signature")
    ver.add_argument("bundle", metavar="BUNDLE_URI", help="e.g. s3://bucket/prefix/models/v1.2/")
    ver.add_argument(
        "--public-key",
        metavar="FILE",
        action="append",
        help="trusted public keys (PEM, one or several; repeatable). Default: signing.public_key of "
        "edgeops.yaml. A bundle published before a key rotation keeps its old signature (bundles are "
        "immutable): verify it with the retired public key",
    )
    ver.set_defaults(handler=cmd_verify)

    rel = sub.add_parser("release", help="maintain a ring's release file (re-sign after a key rotation)")
    rel_sub = rel.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    resign = rel_sub.add_parser(
        "resign",
        help="re-sign a ring's release (and its previous) with the current signing key",
        description="Rewrite only the signature lines of environments/<ring>/release.yaml with the key in\n"
        "EDGEOPS_SIGNING_KEY (or EDGEOPS_SIGNING_KEY_FILE), which must already be in signing.public_key.\n"
        "The present signatures must verify under a trusted key (or --old-public-key). One PR per ring.",
        formatter_class=Formatter,
    )
    resign.add_argument("--ring", required=True, metavar="RING", help="the ring whose release to re-sign")
    resign.add_argument(
        "--old-public-key",
        metavar="FILE",
        help="a retired public key (PEM) whose present signatures still count once it left "
        "signing.public_key",
    )
    resign.set_defaults(handler=cmd_release_resign)
