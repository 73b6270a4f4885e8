"""Ed25519 release signing: round trip, wrong keys and tampering fail, keys load from the environment only,
and no message ever repeats key material."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tools.core.errors import EdgeopsError
from tools.core.signing import (
    SignatureError,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    private_key_from_pem,
    sign,
    verify,
)


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[bytes, bytes, Path, Path]:
    private, public = generate_keypair()
    priv_path, pub_path = tmp_path / "release.key", tmp_path / "release.pub"
    priv_path.write_bytes(private)
    pub_path.write_bytes(public)
    return private, public, priv_path, pub_path


def _pem_body(pem: bytes) -> str:
    """The base64 body of a PEM: the part that must never appear in a message."""
    return "".join(line for line in pem.decode().splitlines() if not line.startswith("-----"))


def test_keypair_formats(keypair: tuple[bytes, bytes, Path, Path]) -> None:
    private, public, _, _ = keypair
    assert private.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS8, unencrypted
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----\n")  # SubjectPublicKeyInfo
    assert generate_keypair()[0] != private


def test_round_trip(keypair: tuple[bytes, bytes, Path, Path]) -> None:
    _, _, priv_path, pub_path = keypair
    key = load_private_key({"EDGEOPS_SIGNING_KEY_FILE": str(priv_path)})
    pub = load_public_key(pub_path)
    signature = sign(key, b"SHA256SUMS bytes")
    assert signature.startswith("ed25519:")
    assert len(base64.b64decode(signature[len("ed25519:") :], validate=True)) == 64
    assert sign(key, b"SHA256SUMS bytes") == signature  # Ed25519 is deterministic
    verify(pub, b"SHA256SUMS bytes", signature)
    assert key_id(pub) == key_id(key) and len(key_id(pub)) == 16
    int(key_id(pub), 16)


def test_wrong_key_fails(keypair: tuple[bytes, bytes, Path, Path]) -> None:
    _, _, priv_path, _ = keypair
    key = load_private_key({"EDGEOPS_SIGNING_KEY_FILE": str(priv_path)})
    other = Ed25519PrivateKey.generate().public_key()
    assert key_id(other) != key_id(key)
    with pytest.raises(SignatureError, match="signature does not match: signed by another key, or the data"):
        verify(other, b"data", sign(key, b"data"))


def test_tampered_data_fails() -> None:
    key = Ed25519PrivateKey.generate()
    signature = sign(key, b"abc  model.onnx\n")
    with pytest.raises(SignatureError, match="does not match"):
        verify(key.public_key(), b"abd  model.onnx\n", signature)
    with pytest.raises(SignatureError, match="does not match"):
        verify(key.public_key(), b"abc  model.onnx\n\n", signature)


def _flip_one_bit(signature: str) -> str:
    raw = bytearray(base64.b64decode(signature[len("ed25519:") :]))
    raw[10] ^= 0x01
    return "ed25519:" + base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda s: "", "malformed signature"),
        (lambda s: s[len("ed25519:") :], "malformed signature"),  # no prefix
        (lambda s: "rsa:" + s[len("ed25519:") :], "malformed signature"),
        (lambda s: "ed25519:", "malformed signature"),
        (lambda s: "ed25519:!!!not-base64!!!", "not valid base64"),
        (lambda s: s[:-4], "malformed signature"),  # truncated
        (lambda s: "ed25519:" + base64.b64encode(b"x" * 63).decode(), "63 bytes"),
        (lambda s: "ed25519:" + base64.b64encode(b"x" * 65).decode(), "65 bytes"),
        (_flip_one_bit, "does not match"),
    ],
)
def test_malformed_signatures_fail(make: object, expected: str) -> None:
    key = Ed25519PrivateKey.generate()
    good = sign(key, b"data")
    assert callable(make)
    with pytest.raises(SignatureError, match=expected):
        verify(key.public_key(), b"data", make(good))


def test_non_text_signature_fails() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="not text"):
        verify(key.public_key(), b"data", sign(key, b"data").encode())  # type: ignore[arg-type]


def test_signature_error_is_an_edgeops_error() -> None:
    assert issubclass(SignatureError, EdgeopsError)


# --- loading the private key from the environment ---------------------------------------------------


def test_private_key_from_env_text(keypair: tuple[bytes, bytes, Path, Path]) -> None:
    private, _, _, pub_path = keypair
    key = load_private_key({"EDGEOPS_SIGNING_KEY": private.decode()})
    assert key_id(key) == key_id(load_public_key(pub_path))


def test_private_key_from_env_text_with_escaped_newlines(keypair: tuple[bytes, bytes, Path, Path]) -> None:
    private, _, _, pub_path = keypair
    escaped = private.decode().strip().replace("\n", "\\n")  # how some CI secret stores hand PEMs over
    key = load_private_key({"EDGEOPS_SIGNING_KEY": escaped})
    assert key_id(key) == key_id(load_public_key(pub_path))


def test_private_key_from_file_variable(keypair: tuple[bytes, bytes, Path, Path]) -> None:
    _, _, priv_path, pub_path = keypair
    key = load_private_key({"EDGEOPS_SIGNING_KEY_FILE": str(priv_path)})
    assert key_id(key) == key_id(load_public_key(pub_path))


def test_private_key_defaults_to_os_environ(
    keypair: tuple[bytes, bytes, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    private, _, _, _ = keypair
    monkeypatch.delenv("EDGEOPS_SIGNING_KEY_FILE", raising=False)
    monkeypatch.setenv("EDGEOPS_SIGNING_KEY", private.decode())
    assert isinstance(load_private_key(), Ed25519PrivateKey)


@pytest.mark.parametrize("env", [{}, {"EDGEOPS_SIGNING_KEY": "", "EDGEOPS_SIGNING_KEY_FILE": "  "}])
def test_missing_key_explains_both_variables_and_keygen(env: dict[str, str]) -> None:
    with pytest.raises(SignatureError) as err:
        load_private_key(env)
    message = str(err.value)
    assert "EDGEOPS_SIGNING_KEY " in message and "EDGEOPS_SIGNING_KEY_FILE" in message
    assert "edgeops keygen" in message


def test_both_variables_set_is_ambiguous(keypair: tuple[bytes, bytes, Path, Path]) -> None:
    private, _, priv_path, _ = keypair
    with pytest.raises(SignatureError, match="set only one") as err:
        load_private_key(
            {"EDGEOPS_SIGNING_KEY": private.decode(), "EDGEOPS_SIGNING_KEY_FILE": str(priv_path)}
        )
    assert _pem_body(private) not in str(err.value)


def test_key_file_missing_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(SignatureError, match="no such file") as err:
        load_private_key({"EDGEOPS_SIGNING_KEY_FILE": str(missing)})
    assert str(missing) in str(err.value) and "EDGEOPS_SIGNING_KEY_FILE" in str(err.value)


def test_malformed_pem_in_env_is_not_echoed(keypair: tuple[bytes, bytes, Path, Path]) -> None:
    private, _, _, _ = keypair
    body = _pem_body(private)
    damaged = private.decode().replace(body[20:40], "A" * 20)  # still PEM-shaped, not a key any more
    for text in (damaged, body, "not a key at all: s3cr3t-value"):
        with pytest.raises(SignatureError) as err:
            load_private_key({"EDGEOPS_SIGNING_KEY": text})
        message = str(err.value)
        assert "EDGEOPS_SIGNING_KEY" in message and "edgeops keygen" in message
        assert body not in message and body[:16] not in message and "s3cr3t" not in message
        assert err.value.__cause__ is None and err.value.__suppress_context__


def test_malformed_key_file_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    path.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LW1hdGVyaWFs\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SignatureError) as err:
        load_private_key({"EDGEOPS_SIGNING_KEY_FILE": str(path)})
    assert str(path) in str(err.value) and "c2VjcmV0" not in str(err.value)


def test_encrypted_key_is_refused_with_a_reason() -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(SignatureError, match="encrypted") as err:
        private_key_from_pem(pem, source="EDGEOPS_SIGNING_KEY")
    assert _pem_body(pem)[:16] not in str(err.value)


def _pkcs8(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    "make",
    [lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
     lambda: ec.generate_private_key(ec.SECP256R1())],
    ids=["rsa", "ec"],
)  # fmt: skip
def test_non_ed25519_private_key_is_rejected(make: object, tmp_path: Path) -> None:
    assert callable(make)
    pem = _pkcs8(make())
    with pytest.raises(SignatureError, match="not Ed25519") as err:
        load_private_key({"EDGEOPS_SIGNING_KEY": pem.decode()})
    assert _pem_body(pem)[:16] not in str(err.value)
    (tmp_path / "k").write_bytes(pem)
    with pytest.raises(SignatureError, match="not Ed25519"):
        load_private_key({"EDGEOPS_SIGNING_KEY_FILE": str(tmp_path / "k")})


# --- loading the public key --------------------------------------------------------------------------------


def test_public_key_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="no such public key file") as err:
        load_public_key(tmp_path / "release.pub")
    assert str(tmp_path / "release.pub") in str(err.value)


def test_public_key_not_pem(tmp_path: Path) -> None:
    path = tmp_path / "release.pub"
    path.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI… user@host\n")
    with pytest.raises(SignatureError, match="not a PEM public key") as err:
        load_public_key(path)
    assert str(path) in str(err.value)


def test_public_key_given_the_private_key(keypair: tuple[bytes, bytes, Path, Path]) -> None:
    private, _, priv_path, _ = keypair
    with pytest.raises(SignatureError, match="private key where the public key belongs") as err:
        load_public_key(priv_path)
    assert _pem_body(private)[:16] not in str(err.value)


def test_public_key_not_ed25519(tmp_path: Path) -> None:
    path = tmp_path / "rsa.pub"
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SignatureError, match="not Ed25519") as err:
        load_public_key(path)
    assert str(path) in str(err.value)


def test_public_key_loads(keypair: tuple[bytes, bytes, Path, Path]) -> None:
    _, _, _, pub_path = keypair
    assert isinstance(load_public_key(pub_path), Ed25519PublicKey)
