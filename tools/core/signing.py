"""Ed25519 release signing: key pairs, loading keys, signing and verifying bytes.

A model bundle's ``SHA256SUMS`` and a release file are signed by the publishing pipeline and verified by
``edgeops verify`` and by the model-updater on every node, so a bundle or a pin changed by anyone without
the private key is refused. Ed25519 (via ``cryptography``): small keys, deterministic signatures, no
parameters to get wrong.

What verifies trusts a *set* of public keys, so the signing key can rotate without a fleet-wide outage
(docs/runbooks.md, "Rotate the release-signing key"): the public key file may hold several PEM blocks,
concatenated, and a signature verifies when any of them made it. :func:`load_public_keys` reads that file
into ``{key id: key}``. A signature (``ed25519:<base64>``, the format nodes already parse) records no key
id, and an Ed25519 public key cannot be recovered from a signature, so :func:`verify` tries each trusted
key (a set of one or two during a rotation; one check costs tens of microseconds) and names the trusted
ids when none matches.

The private key comes from the environment only (DESIGN.md, "Configuration": secrets never come from
files in the repository): ``EDGEOPS_SIGNING_KEY`` holds the PEM text itself (a CI secret), or
``EDGEOPS_SIGNING_KEY_FILE`` names a file holding it (a mounted secret). The public keys are a PEM file in
the repository (``signing.public_key`` in edgeops.yaml). No error message or log line ever contains key
material: they name the variable or the file instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tools.core.errors import EdgeopsError

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "SIGNATURE_PREFIX",
    "SignatureError",
    "TrustedKeys",
    "describe_keys",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_public_keys",
    "private_key_from_pem",
    "public_key_from_pem",
    "public_keys_from_pem",
    "sign",
    "trusted_keys",
    "verify",
]

# The keys a signature may come from, by key id (:func:`key_id`); what verifiers take.
TrustedKeys = Mapping[str, Ed25519PublicKey]

KEY_ENV = "EDGEOPS_SIGNING_KEY"
KEY_FILE_ENV = "EDGEOPS_SIGNING_KEY_FILE"
SIGNATURE_PREFIX = "ed25519:"
_SIGNATURE_BYTES = 64
_HOW_TO_GET_ONE = "`edgeops keygen` makes a key pair"
# One PEM block (RFC 7468): BEGIN and END lines with the same label, the base64 body between them.
_PEM_BLOCK = re.compile(rb"-----BEGIN ([^\r\n-]+)-----.*?-----END \1-----", re.DOTALL)


class SignatureError(EdgeopsError):
    """A signing key is missing or unusable, or a signature is malformed or does not match."""


def generate_keypair() -> tuple[bytes, bytes]:
    """A new key pair: (private key as unencrypted PKCS8 PEM, public key as SubjectPublicKeyInfo PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def private_key_from_pem(pem: bytes, *, source: str) -> Ed25519PrivateKey:
    """Parse an unencrypted Ed25519 private key; ``source`` names where it came from (for messages only)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        raise SignatureError(
            f"{source}: the private key is encrypted; edgeops needs an unencrypted PKCS8 PEM key (protect it "
            f"with your secret store instead). {_HOW_TO_GET_ONE}"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The parser's own message is not repeated: nothing derived from the key material goes out.
        raise SignatureError(
            f"{source} does not hold a readable PEM private key (expected '-----BEGIN PRIVATE KEY-----' "
            f"…). {_HOW_TO_GET_ONE}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(
            f"{source} holds a {type(key).__name__.lstrip('_')} private key, not Ed25519; release signing "
            f"uses Ed25519 only. {_HOW_TO_GET_ONE}"
        )
    return key


def public_key_from_pem(pem: bytes, *, source: str) -> Ed25519PublicKey:
    """Parse one Ed25519 public key (SubjectPublicKeyInfo PEM); ``source`` names it in messages.

    Text holding several keys is refused (``cryptography`` would silently take the first one): a trusted
    set is read with :func:`public_keys_from_pem`.
    """
    if b"PRIVATE KEY-----" in pem:
        raise SignatureError(
            f"{source} holds a private key where the public key belongs; keep the private key secret and "
            "point this at the .pub file `edgeops keygen` wrote"
        )
    blocks = len(_PEM_BLOCK.findall(pem))
    if blocks > 1:
        raise SignatureError(
            f"{source} holds {blocks} PEM blocks where one public key is expected; a file of trusted keys "
            "is read as a set (load_public_keys)"
        )
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureError(
            f"{source} is not a PEM public key (expected '-----BEGIN PUBLIC KEY-----' …); {_HOW_TO_GET_ONE}"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(
            f"{source} holds a {type(key).__name__.lstrip('_')} public key, not Ed25519; release signing "
            f"uses Ed25519 only. {_HOW_TO_GET_ONE}"
        )
    return key


def public_keys_from_pem(pem: bytes, *, source: str) -> dict[str, Ed25519PublicKey]:
    """Every Ed25519 public key in ``pem``, by key id: one PEM block, or several concatenated.

    Between blocks only blank lines and ``#`` comment lines may stand (say whose key it is, and until
    when). Errors name ``source`` and the block (counted from 1) or line at fault, never key material.
    A key listed twice counts once.
    """
    if b"PRIVATE KEY-----" in pem:
        raise SignatureError(
            f"{source} holds a private key where the public key belongs; keep the private key secret and "
            "point this at the .pub file `edgeops keygen` wrote"
        )
    blocks = list(_PEM_BLOCK.finditer(pem))
    if not blocks:
        raise SignatureError(
            f"{source} is not a PEM public key (expected '-----BEGIN PUBLIC KEY-----' …); {_HOW_TO_GET_ONE}"
        )
    start = 0
    for number, block in enumerate([*blocks, None], start=1):
        end = block.start() if block is not None else len(pem)
        for offset, line in enumerate(pem[start:end].splitlines()):
            text = line.strip()
            if text and not text.startswith(b"#"):
                line_no = pem[:start].count(b"\n") + offset + 1
                if text.startswith(b"-----BEGIN"):
                    problem = f"key block {number} (line {line_no}) has no matching -----END line"
                else:
                    problem = (
                        f"line {line_no} is outside any PEM block (before key block {number})"
                        if block is not None
                        else f"line {line_no} is outside any PEM block (after key block {number - 1})"
                    )
                raise SignatureError(
                    f"{source}: {problem}; a trusted-keys file holds PEM public keys, with only blank lines "
                    "and # comments between them"
                )
        if block is not None:
            start = block.end()
    keys: dict[str, Ed25519PublicKey] = {}
    for number, block in enumerate(blocks, start=1):
        key = public_key_from_pem(block.group(0), source=f"{source}, key block {number}")
        keys.setdefault(key_id(key), key)
    return keys


def trusted_keys(keys: Ed25519PublicKey | TrustedKeys) -> dict[str, Ed25519PublicKey]:
    """``keys`` as ``{key id: key}``: one key, or a set already by id (checked: each id is its key's)."""
    if isinstance(keys, Ed25519PublicKey):
        return {key_id(keys): keys}
    out: dict[str, Ed25519PublicKey] = {}
    for kid, key in keys.items():
        if key_id(key) != kid:
            raise SignatureError(f"trusted key listed as {kid} is key {key_id(key)}; list keys by key_id()")
        out[kid] = key
    return out


def describe_keys(keys: Ed25519PublicKey | TrustedKeys) -> str:
    """``"key 1a2b…"`` or ``"keys 1a2b…, 3c4d…"``: the trusted ids, for messages (ids, never key material)."""
    ids = sorted(trusted_keys(keys))
    return f"key {ids[0]}" if len(ids) == 1 else f"keys {', '.join(ids)}" if ids else "no keys"


def load_private_key(env: Mapping[str, str] | None = None) -> Ed25519PrivateKey:
    """The signing key from ``EDGEOPS_SIGNING_KEY`` (PEM text) or ``EDGEOPS_SIGNING_KEY_FILE`` (a path).

    Exactly one must be set (empty counts as unset). A PEM pasted into a CI secret with literal ``\\n``
    instead of line breaks is accepted.
    """
    env = os.environ if env is None else env
    text = env.get(KEY_ENV, "").strip()
    path = env.get(KEY_FILE_ENV, "").strip()
    if text and path:
        raise SignatureError(
            f"both {KEY_ENV} and {KEY_FILE_ENV} are set; set only one (the PEM text, or the path of a file "
            "holding it)"
        )
    if text:
        if "\n" not in text and "\\n" in text:
            text = text.replace("\\n", "\n")
        return private_key_from_pem(text.encode("utf-8", errors="replace"), source=KEY_ENV)
    if path:
        source = f"{KEY_FILE_ENV}={path}"
        try:
            pem = Path(path).read_bytes()
        except FileNotFoundError:
            raise SignatureError(f"{source}: no such file; point it at the private key PEM file") from None
        except OSError as exc:
            raise SignatureError(
                f"{source}: cannot read it ({exc.strerror}); check the path and permissions"
            ) from None
        return private_key_from_pem(pem, source=source)
    raise SignatureError(
        f"no signing key: set {KEY_ENV} to the private key's PEM text (e.g. from a CI secret) or "
        f"{KEY_FILE_ENV} to the path of a file holding it; {_HOW_TO_GET_ONE}"
    )


def load_public_keys(path: Path | str) -> dict[str, Ed25519PublicKey]:
    """The trusted Ed25519 public keys in the PEM file ``path`` (one or several blocks), by key id.

    The one loader for ``signing.public_key`` and the node's ``--public-key``: while a key rotates the file
    holds the old and the new key, and everything that verifies accepts a signature by either.
    """
    try:
        pem = Path(path).read_bytes()
    except FileNotFoundError:
        raise SignatureError(
            f"{path}: no such public key file; check signing.public_key in edgeops.yaml ({_HOW_TO_GET_ONE})"
        ) from None
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read the public key ({exc.strerror})") from None
    return public_keys_from_pem(pem, source=str(path))


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """The one Ed25519 public key in the PEM file ``path``; a file of several keys is refused by name.

    For what verifies releases or bundles use :func:`load_public_keys`: during a rotation the file holds two.
    """
    keys = load_public_keys(path)
    if len(keys) != 1:
        raise SignatureError(
            f"{path} holds {len(keys)} public keys ({', '.join(sorted(keys))}: a trusted set while a key "
            "rotates) where one is expected; read it with load_public_keys"
        )
    return next(iter(keys.values()))


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """A short fingerprint for messages and logs: the first 16 hex digits of sha256(raw public key)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """``"ed25519:" + base64(signature of data)``."""
    return SIGNATURE_PREFIX + base64.b64encode(key.sign(data)).decode("ascii")


def verify(pub: Ed25519PublicKey | TrustedKeys, data: bytes, signature: str) -> str:
    """Return the id of the key that made ``signature`` (as written by :func:`sign`) over ``data``.

    ``pub`` is one key or the trusted set (:data:`TrustedKeys`); raise :class:`SignatureError` when the
    signature is malformed or no trusted key made it.
    """
    keys = trusted_keys(pub)
    expected = f"expected {SIGNATURE_PREFIX}<base64 of {_SIGNATURE_BYTES} bytes>"
    if not isinstance(signature, str):
        raise SignatureError(f"malformed signature: a {type(signature).__name__}, not text; {expected}")
    shown = repr(signature[:24] + "…") if len(signature) > 24 else repr(signature)
    if not signature.startswith(SIGNATURE_PREFIX):
        raise SignatureError(f"malformed signature {shown}: {expected}")
    try:
        raw = base64.b64decode(signature[len(SIGNATURE_PREFIX) :].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"malformed signature {shown}: not valid base64; {expected}") from None
    if len(raw) != _SIGNATURE_BYTES:
        raise SignatureError(f"malformed signature {shown}: {len(raw)} bytes; {expected}")
    for kid, key in keys.items():
        try:
            key.verify(raw, data)
        except InvalidSignature:
            continue
        return kid
    raise SignatureError(
        f"signature does not match: signed by another key, or the data changed (checked with "
        f"{describe_keys(keys)})"
    )
