"""``edgeops keygen`` and ``edgeops verify``: the release-signing key pair; a bundle checked against it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tools.cli._common import log, project
from tools.core.errors import EdgeopsError


def cmd_keygen(args: argparse.Namespace) -> int:
    from tools.core.signing import generate_keypair

    private_pem, public_pem = generate_keypair()
    priv, pub = Path(args.private_key), Path(args.public_key)
    for path in (priv, pub):
        if path.exists() and not args.force:
            raise EdgeopsError(
                f"{path} exists; pass --force to replace it (old signatures stay valid for the old key)"
            )
    priv.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only from the first byte
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    pub.parent.mkdir(parents=True, exist_ok=True)
    pub.write_bytes(public_pem)
    log.info(
        f"wrote the private key to {priv} (keep it out of git: store it as the EDGEOPS_SIGNING_KEY secret) "
        f"and the public key to {pub} (commit it)"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from tools.artifacts.bundle import verify_bundle_uri
    from tools.core.signing import key_id, load_public_key

    public = load_public_key(Path(args.public_key) if args.public_key else project(args).public_key_path)
    report = verify_bundle_uri(args.bundle, public)
    print(f"OK {report.version}: {len(report.files)} files match SHA256SUMS, signed by key {key_id(public)}")
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
    kg.set_defaults(handler=cmd_keygen)

    ver = sub.add_parser("verify", help="verify a published bundle's digests and signature")
    ver.add_argument("bundle", metavar="BUNDLE_URI", help="e.g. s3://bucket/prefix/models/v1.2/")
    ver.add_argument("--public-key", metavar="FILE", help="default: signing.public_key of edgeops.yaml")
    ver.set_defaults(handler=cmd_verify)
