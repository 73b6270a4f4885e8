"""Ed25519 release signing: key pairs, loading keys, signing and verifying bytes.

A model bundle's ``SHA256SUMS`` and a release file are signed by the publishing pipeline and verified by
``edgeops verify`` and by the model-updater on every node, so a bundle or a pin changed by anyone without
the private key is refused. Ed25519 (via ``cryptography``): small keys, deterministic signatures, no
parameters to get wrong.

The private key comes from the environment only (DESIGN.md, "Configuration": secrets never come from
files in the repository): ``EDGEOPS_SIGNING_KEY`` holds the PEM text itself (a CI secret), or
``EDGEOPS_SIGNING_KEY_FILE`` names a file holding it (a mounted secret). The public key is a PEM file in
the repository (``signing.public_key`` in edgeops.yaml). No error message or log line ever contains key
material: they name the variable or the file instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
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
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "private_key_from_pem",
    "public_key_from_pem",
    "sign",
    "verify",
]

KEY_ENV = "EDGEOPS_SIGNING_KEY"
KEY_FILE_ENV = "EDGEOPS_SIGNING_KEY_FILE"
SIGNATURE_PREFIX = "ed25519:"
_SIGNATURE_BYTES = 64
_HOW_TO_GET_ONE = "`edgeops keygen` makes a key pair"


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
    """Parse an Ed25519 public key (SubjectPublicKeyInfo PEM); ``source`` names it in messages."""
    if b"PRIVATE KEY-----" in pem:
        raise SignatureError(
            f"{source} holds a private key where the public key belongs; keep the private key secret and "
            "point this at the .pub file `edgeops keygen` wrote"
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


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in the PEM file ``path``."""
    try:
        pem = Path(path).read_bytes()
    except FileNotFoundError:
        raise SignatureError(
            f"{path}: no such public key file; check signing.public_key in edgeops.yaml ({_HOW_TO_GET_ONE})"
        ) from None
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read the public key ({exc.strerror})") from None
    return public_key_from_pem(pem, source=str(path))


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """A short fingerprint for messages and logs: the first 16 hex digits of sha256(raw public key)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """``"ed25519:" + base64(signature of data)``."""
    return SIGNATURE_PREFIX + base64.b64encode(key.sign(data)).decode("ascii")


def verify(pub: Ed25519PublicKey, data: bytes, signature: str) -> None:
    """Return when ``signature`` (as written by :func:`sign`) signs ``data`` under ``pub``; else raise."""
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
    try:
        pub.verify(raw, data)
    except InvalidSignature:
        raise SignatureError(
            f"signature does not match: signed by another key, or the data changed (checked with key "
            f"{key_id(pub)})"
        ) from None
