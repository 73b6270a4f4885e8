"""``edgeops release resign``: re-sign a ring's release with the current signing key, for a key rotation.

    EDGEOPS_SIGNING_KEY_FILE=~/release-2027.key edgeops release resign --ring pilot

Step 2 of docs/runbooks.md, "Rotate the release-signing key": once every node trusts the new key beside the
old one, each ring's ``release.yaml`` gets signatures by the new key, one PR per ring (``edgeops validate pr``
allows one ring per PR and reports the PR as "re-signed"). Only the ``signature`` values change, of the
release and of its ``previous``: every other byte of the file stays as it was, so the diff is those lines and
the reviewer sees nothing else moved. The signed content (version, interface, bundle, files) is the same, so
a node that runs the release keeps running it: the new signature verifies under its trust set and nothing is
downloaded.

It refuses, naming the key ids:

- a signing key that is not trusted yet (``signing.public_key``): nodes would refuse the re-signed release.
  Add its public key first (step 1);
- a release whose present signature verifies under no trusted key: re-signing would bless whatever the
  file says now (a hand edit). After the old key was removed already, ``old_keys`` (``--old-public-key``)
  names it, so its signatures still count as proof of what was reviewed.

Bundles are not re-signed: a bundle's ``SHA256SUMS.sig`` is part of an immutable version (publishing other
bytes under it is refused). Nodes never check it (they verify the release signature and the digests the
release pins), so the rotation does not need it; ``edgeops verify`` of an older bundle takes the retired
public key with ``--public-key``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tools.artifacts.release import (
    Release,
    ReleaseSignatureError,
    parse_release,
    sign_release,
    verify_release,
)
from tools.core.errors import EdgeopsError
from tools.core.fsutil import write_atomic
from tools.core.project import Project
from tools.core.signing import TrustedKeys, describe_keys, key_id, load_public_keys

__all__ = ["ResignError", "ResignOutcome", "Resigned", "resign_ring", "resign_text"]


class ResignError(EdgeopsError):
    """A release cannot be re-signed: the signing key is not trusted, or its present signature is not."""


@dataclass(frozen=True)
class Resigned:
    """One signed block of a release file: the release itself, or its ``previous``."""

    what: str  # "release v2.1" or "previous v2.0"
    old_key: str  # id of the key whose signature it had
    new_key: str  # id of the key whose signature it has now

    @property
    def changed(self) -> bool:
        return self.old_key != self.new_key


@dataclass(frozen=True)
class ResignOutcome:
    ring: str
    path: Path
    version: str | None  # None: the ring has no release yet, nothing to sign
    blocks: tuple[Resigned, ...]

    @property
    def changed(self) -> bool:
        return any(block.changed for block in self.blocks)


def _resign(
    release: Release, private_key: Ed25519PrivateKey, proof: TrustedKeys, what: str
) -> tuple[Release, Resigned]:
    try:
        old = verify_release(release, proof)
    except ReleaseSignatureError as exc:
        raise ResignError(
            f"{what}: its present signature verifies under none of {describe_keys(proof)}, so re-signing "
            f"would bless whatever the file says now ({exc}). Restore the release from git, or pass the "
            "retired public key with --old-public-key if its key was removed already"
        ) from None
    signature = sign_release(
        private_key, version=release.version, interface=release.interface, bundle=release.bundle,
        files=release.files,
    )  # fmt: skip
    return dataclasses.replace(release, signature=signature), Resigned(what, old, key_id(private_key))


def resign_text(
    text: str,
    private_key: Ed25519PrivateKey,
    trusted: TrustedKeys,
    *,
    source: str,
    old_keys: TrustedKeys | None = None,
) -> tuple[str, tuple[Resigned, ...]]:
    """``text`` (a release file) with its signatures made by ``private_key``; every other byte unchanged.

    ``trusted``: the keys nodes trust (the signing key must be one of them); ``old_keys``: retired keys
    whose present signatures still prove what was reviewed. Returns the new text and what was re-signed
    (nothing for the "no release yet" form).
    """
    kid = key_id(private_key)
    if kid not in trusted:
        raise ResignError(
            f"{source}: the signing key {kid} is not trusted ({describe_keys(trusted)}): nodes would refuse "
            "the re-signed release. Add its public key to signing.public_key beside the old one and let "
            'every ring sync first (docs/runbooks.md, "Rotate the release-signing key", step 1)'
        )
    release = parse_release(text, source=source)
    if release is None:
        return text, ()
    proof = {**trusted, **(old_keys or {})}
    new, block = _resign(release, private_key, proof, f"{source}: release {release.version}")
    blocks = [block]
    if release.previous is not None:
        previous, prev_block = _resign(
            release.previous, private_key, proof, f"{source}: previous {release.previous.version}"
        )
        new = dataclasses.replace(new, previous=previous)
        blocks.append(prev_block)
    out = text
    pairs = [(release.signature, new.signature)]
    if release.previous is not None and new.previous is not None:
        pairs.append((release.previous.signature, new.previous.signature))
    for old_sig, new_sig in pairs:
        if old_sig == new_sig:
            continue  # already by this key: Ed25519 signatures are deterministic
        if out.count(old_sig) != 1:
            raise ResignError(
                f"{source}: a signature appears {out.count(old_sig)} times in the file, so it cannot be "
                "replaced alone; rewrite the file with `edgeops propose`/`promote`, or fix it by hand"
            )
        out = out.replace(old_sig, new_sig)
    check = parse_release(out, source=source)
    if check != new:
        raise ResignError(
            f"{source}: replacing the signatures did not give the same release with new signatures "
            "(hand-edited layout?); fix the file by hand"
        )
    return out, tuple(blocks)


def resign_ring(
    project: Project,
    ring: str,
    private_key: Ed25519PrivateKey,
    *,
    old_public_keys: Path | None = None,
) -> ResignOutcome:
    """Re-sign ``ring``'s release file in this checkout with ``private_key`` (written when it changes)."""
    project.ring(ring)  # an unknown ring fails with the config's own message
    path = project.release_file(ring)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResignError(f"{path}: cannot read the release file ({exc.strerror})") from None
    trusted = load_public_keys(project.public_key_path)
    old_keys = load_public_keys(old_public_keys) if old_public_keys is not None else None
    source = project.release_path(ring)
    new_text, blocks = resign_text(text, private_key, trusted, source=source, old_keys=old_keys)
    if new_text != text:
        write_atomic(path, new_text)
    release = parse_release(new_text, source=source)
    return ResignOutcome(ring, path, release.version if release else None, blocks)
