"""The release file contract (tools/artifacts/release.py): parse, render,
the "no release yet" form, signatures."""

from __future__ import annotations

import dataclasses
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from ruamel.yaml import YAML

import tools.artifacts.release
from tools.artifacts.bundle import FileEntry
from tools.artifacts.release import (
    Release,
    ReleaseError,
    ReleaseSignatureError,
    edit_release_text,
    in_wave,
    load_release,
    make_release,
    parse_release,
    render_no_release,
    render_release,
    sign_release,
    signed_payload,
    verify_release,
    wave_slot,
)
from tools.core.signing import generate_keypair, private_key_from_pem, public_key_from_pem

INTERFACE = "sha256:" + "ab" * 32
OTHER_INTERFACE = "sha256:" + "cd" * 32
BUNDLE = "s3://context-edge-models/models/v2.1/"
Keys = tuple[Ed25519PrivateKey, Ed25519PublicKey]
FILES: dict[str, FileEntry] = {
    "model.onnx": {"sha256": "1f" * 32, "bytes": 120345},
    "golden.json": {"sha256": "2e" * 32, "bytes": 20480},
    "model.json": {"sha256": "3d" * 32, "bytes": 2048},
}


@pytest.fixture(scope="module")
def keys() -> Keys:
    private, public = generate_keypair()
    return private_key_from_pem(private, source="test"), public_key_from_pem(public, source="test")


@pytest.fixture(scope="module")
def release(keys: Keys) -> Release:
    return make_release(
        keys[0],
        version="v2.1",
        interface=INTERFACE,
        bundle=BUNDLE,
        files=FILES,
        metrics={"accuracy": 0.941, "fp_rate": 0.021, "fn_rate": 0.027},
        source={"commit": "0123456", "dataset": "sha256:" + "9" * 64, "run": "runs/2026-11"},
    )


def test_render_then_parse_round_trips_with_the_design_header_and_key_order(release: Release) -> None:
    text = render_release(release, ring="pilot")
    assert text.startswith(
        '# Model release for ring "pilot". Changed by pull requests only: the training pipeline proposes,\n'
        "# `edgeops promote` moves it pilot → fleet in waves, `edgeops rollback` returns to `previous`.\n"
    )
    keys = [line.split(":", 1)[0] for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert keys == ["version", "interface", "bundle", "files", "signature", "metrics", "source"]
    assert "  model.onnx: {sha256: " in text  # one line per file, as in DESIGN.md
    assert parse_release(text, source="release.yaml") == release
    assert render_release(release, ring="pilot") == text  # deterministic
    # ruamel round-trip (how release PRs edit it) keeps the text byte for byte.
    yaml = YAML()
    yaml.width = 4096
    yaml.preserve_quotes = True
    out = StringIO()
    yaml.dump(yaml.load(text), out)
    assert out.getvalue() == text


def test_release_without_metrics_or_source_omits_them(keys: Keys) -> None:
    bare = make_release(
        keys[0], version="v1.0", interface=INTERFACE, bundle="file:///srv/store/models/v1.0/", files=FILES
    )
    text = render_release(bare, ring="fleet")
    assert "metrics" not in text and "source" not in text
    parsed = parse_release(text, source="x")
    assert parsed == bare
    assert parsed is not None and parsed.store_uri == "file:///srv/store"
    assert parsed.object_key("model.onnx") == "models/v1.0/model.onnx"


def test_no_release_form_parses_to_none_and_is_documented(tmp_path: Path) -> None:
    text = render_no_release("fleet")
    assert text.startswith('# Model release for ring "fleet".')
    assert "No release yet" in text
    assert text.endswith("version: null\n")
    assert parse_release(text, source="x") is None
    path = tmp_path / "release.yaml"
    path.write_text(text)
    assert load_release(path) is None
    assert "version: null" in (tools.artifacts.release.__doc__ or "")


def test_store_uri_of_an_s3_bundle(release: Release) -> None:
    assert release.store_uri == "s3://context-edge-models"
    assert release.object_key("golden.json") == "models/v2.1/golden.json"


GOOD = f"""\
version: v2.1
interface: {INTERFACE}
bundle: {BUNDLE}
files:
  model.onnx: {{sha256: {"1f" * 32}, bytes: 10}}
  golden.json: {{sha256: {"2e" * 32}, bytes: 20}}
signature: ed25519:AAAA
"""


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("version: v2.1\n  bad: [\n", ["not valid YAML"]),
        ("", ["empty", "version: null"]),
        ("- a\n- b\n", ["mapping"]),
        (GOOD.replace("version: v2.1", "version: 2.1"), ["version", "string"]),
        (GOOD.replace("version: v2.1", "version: v02.1"), ["version", "vMAJOR.MINOR"]),
        (GOOD.replace("version: v2.1\n", ""), ["version", "missing"]),
        (GOOD.replace(f"interface: {INTERFACE}\n", ""), ["interface", "missing"]),
        (GOOD.replace(INTERFACE, "sha256:xyz"), ["interface", "sha256:<64"]),
        (GOOD.replace(f"bundle: {BUNDLE}\n", ""), ["bundle", "missing"]),
        (GOOD.replace(BUNDLE, BUNDLE.rstrip("/")), ["bundle", "trailing"]),
        (GOOD.replace(BUNDLE, "s3://context-edge-models/models/v2.0/"), ["bundle", "/models/v2.1/"]),
        (GOOD.replace(BUNDLE, "http://x/models/v2.1/"), ["bundle", "s3://bucket"]),
        (GOOD.replace("signature: ed25519:AAAA\n", ""), ["signature", "missing"]),
        (GOOD.replace("ed25519:AAAA", "rsa:AAAA"), ["signature", "ed25519:"]),
        (GOOD.replace("files:\n", "files: {}\n").split("  model.onnx")[0], ["files", "missing"]),
        (GOOD.replace("files:\n", "files: []\n").split("  model.onnx")[0] + "signature: ed25519:A\n",
         ["files", "non-empty mapping"]),
        (GOOD.replace("  golden.json:", "  sub/golden.json:"), ["files.sub/golden.json", "no '/'"]),
        (GOOD.replace("  golden.json:", "  ../golden.json:"), ["files.../golden.json", "plain name"]),
        (GOOD.replace(f"{{sha256: {'1f' * 32}, bytes: 10}}", "{bytes: 10}"), ["files.model.onnx.sha256"]),
        (GOOD.replace(f"{{sha256: {'1f' * 32}, bytes: 10}}", f"{{sha256: {'1f' * 32}}}"),
         ["files.model.onnx.bytes", "integer"]),
        (GOOD.replace("bytes: 10", "bytes: -1"), ["files.model.onnx.bytes"]),
        (GOOD.replace("bytes: 10", "bytes: true"), ["files.model.onnx.bytes"]),
        (GOOD.replace("bytes: 10", "bytes: 10, md5: x"), ["files.model.onnx.md5", "unknown"]),
        (GOOD.replace("1f" * 32, "1f" * 31 + "1"), ["files.model.onnx.sha256", "64 lowercase hex"]),
        (GOOD.replace("  golden.json", "  model.json"), ["files", "golden.json missing"]),
        (GOOD.replace("  golden.json", "  SHA256SUMS"), ["files.SHA256SUMS", "checksum list"]),
        (GOOD + "signatures: x\n", ["signatures", "unknown key"]),
        (GOOD + "metrics: [1, 2]\n", ["metrics", "mapping"]),
        (GOOD + "version: v2.2\n", ["not valid YAML", "duplicate"]),
        ("version: null\nbundle: s3://x/models/v1.0/\n", ["bundle", "version is null"]),
    ],
)  # fmt: skip
def test_malformed_release_files_are_refused_naming_the_file_and_key(text: str, names: list[str]) -> None:
    with pytest.raises(ReleaseError) as info:
        parse_release(text, source="environments/pilot/release.yaml")
    message = str(info.value)
    assert message.startswith("environments/pilot/release.yaml: ")
    for name in names:
        assert name in message, message


def test_missing_release_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="no such release file"):
        load_release(tmp_path / "release.yaml")


def test_signature_verifies_and_payload_is_canonical_json(release: Release, keys: Keys) -> None:
    verify_release(release, keys[1])
    payload = signed_payload(release.version, release.interface, release.bundle, release.files)
    assert payload.startswith(b'{"bundle":"s3://context-edge-models/models/v2.1/","files":{"golden.json":')
    assert b" " not in payload
    reordered = dict(reversed(release.files.items()))
    again = sign_release(
        keys[0], version=release.version, interface=release.interface, bundle=release.bundle, files=reordered
    )
    assert again == release.signature  # file order does not matter: sort_keys


@pytest.mark.parametrize(
    "change",
    [
        {"version": "v2.2"},
        {"interface": OTHER_INTERFACE},
        {"bundle": "s3://context-edge-models/other/models/v2.1/"},
        {"files": {**FILES, "model.onnx": {"sha256": "4" + "1f" * 31 + "f", "bytes": 120345}}},
        {"files": {**FILES, "model.onnx": {"sha256": "1f" * 32, "bytes": 120346}}},
        {"files": {k: v for k, v in FILES.items() if k != "model.json"}},
    ],
)
def test_changing_any_signed_field_breaks_the_signature(
    release: Release, keys: Keys, change: dict[str, object]
) -> None:
    tampered = dataclasses.replace(release, **change)  # type: ignore[arg-type]
    with pytest.raises(ReleaseSignatureError, match="does not match"):
        verify_release(tampered, keys[1])


def test_a_changed_byte_in_the_file_text_breaks_the_signature(release: Release, keys: Keys) -> None:
    text = render_release(release, ring="pilot")
    digest = "1f" * 32
    tampered = parse_release(text.replace(digest, "0" + digest[1:]), source="x")
    assert tampered is not None
    with pytest.raises(ReleaseSignatureError):
        verify_release(tampered, keys[1])


def test_unsigned_fields_may_change_without_breaking_the_signature(release: Release, keys: Keys) -> None:
    text = render_release(release, ring="pilot").replace("accuracy: 0.941", "accuracy: 0.5")
    annotated = parse_release(text, source="x")
    assert annotated is not None and annotated.metrics["accuracy"] == 0.5
    verify_release(annotated, keys[1])
    verify_release(dataclasses.replace(release, metrics={}, source={"note": "promoted"}), keys[1])


def test_another_key_and_malformed_signatures_are_refused(release: Release) -> None:
    _, other_public = generate_keypair()
    other = public_key_from_pem(other_public, source="other")
    with pytest.raises(ReleaseSignatureError, match="trusted one"):
        verify_release(release, other)
    with pytest.raises(ReleaseSignatureError, match="malformed"):
        verify_release(dataclasses.replace(release, signature="ed25519:AAAA"), other)


def test_make_release_checks_its_input(keys: Keys) -> None:
    with pytest.raises(ReleaseError, match="bundle"):
        make_release(keys[0], version="v1.0", interface=INTERFACE, bundle="s3://b/models/v1.1/", files=FILES)


def test_ring_names_are_checked(release: Release) -> None:
    with pytest.raises(ReleaseError, match="ring name"):
        render_release(release, ring='pilot"\nversion: v9.9')
    with pytest.raises(ReleaseError, match="ring name"):
        render_no_release("")


def test_digests_that_look_like_numbers_survive_the_round_trip(keys: Keys) -> None:
    # A hex digest can be all digits (YAML: an integer) or digits with one "e" (YAML: a float).
    files: dict[str, FileEntry] = {
        "model.onnx": {"sha256": "0" * 64, "bytes": 1},
        "golden.json": {"sha256": "1" * 30 + "e" + "2" * 33, "bytes": 2},
    }
    release = make_release(
        keys[0], version="v1.0", interface=INTERFACE, bundle="s3://b/models/v1.0/", files=files
    )
    assert parse_release(render_release(release, ring="pilot"), source="x") == release


def test_a_yaml_1_1_reader_reads_the_same_release(keys: Keys, release: Release) -> None:
    # libyaml (ruamel's C loader, PyYAML, many tools) rejects a plain ':' inside {…}; such values are quoted.
    annotated = dataclasses.replace(
        release, source={"commit": "0123abc", "dataset": "sha256:" + "d" * 64, "run": "runs/2026-11"}
    )
    text = render_release(annotated, ring="fleet")
    assert "dataset: 'sha256:" in text
    c_loaded = YAML(typ="safe").load(text)  # the C (libyaml) loader
    assert c_loaded["source"]["dataset"] == "sha256:" + "d" * 64
    assert c_loaded == YAML(typ="safe", pure=True).load(text)
    renamed = dataclasses.replace(annotated, source={**annotated.source, "run": "b:c"})
    edited = edit_release_text(text, renamed, ring="fleet", source="x")
    assert YAML(typ="safe").load(edited)["source"]["run"] == "b:c"


# --- waves: `previous` and `rollout.percent` (DESIGN.md, "Rings and waves") ---------------------------------


@pytest.fixture(scope="module")
def wave(keys: Keys, release: Release) -> Release:
    previous = make_release(
        keys[0], version="v2.0", interface=INTERFACE, bundle="s3://context-edge-models/models/v2.0/",
        files=FILES, metrics={"accuracy": 0.93},
    )  # fmt: skip
    return dataclasses.replace(release, previous=previous, rollout_percent=5.0)


def test_a_wave_renders_previous_and_a_one_line_rollout_and_round_trips(wave: Release, keys: Keys) -> None:
    text = render_release(wave, ring="fleet")
    assert parse_release(text, source="fleet") == wave
    assert "\nrollout: {percent: 5}\n" in text
    assert "\nprevious:\n  version: v2.0\n" in text
    # the next wave is a one-line diff, and the two signatures still verify
    next_wave = edit_release_text(
        text, dataclasses.replace(wave, rollout_percent=25.0), ring="fleet", source="f"
    )
    changed = [(a, b) for a, b in zip(text.splitlines(), next_wave.splitlines(), strict=True) if a != b]
    assert changed == [("rollout: {percent: 5}", "rollout: {percent: 25}")]
    parsed = parse_release(next_wave, source="fleet")
    assert parsed is not None and parsed.previous is not None
    verify_release(parsed, keys[1])
    verify_release(parsed.previous, keys[1])


def test_a_version_entering_its_first_wave_writes_previous_in_block_style(wave: Release) -> None:
    """The entering PR edits a file that had no `previous`: the new block reads like the release above it."""
    assert wave.previous is not None
    before = render_release(wave.previous, ring="fleet")
    entering = edit_release_text(before, wave, ring="fleet", source="f")
    assert parse_release(entering, source="fleet") == wave
    assert "\nprevious:\n  version: v2.0\n  interface: " in entering
    assert max(len(line) for line in entering.splitlines()) < 200  # no one-line {…} of a whole release


def test_for_node_picks_the_release_in_the_wave_and_previous_outside(wave: Release) -> None:
    nodes = [f"edge-{i:04d}" for i in range(1000)]
    inside = [n for n in nodes if wave.for_node(n) is wave]
    outside = [n for n in nodes if wave.for_node(n) is wave.previous]
    assert len(inside) + len(outside) == 1000
    assert 30 <= len(inside) <= 80  # about 5% by hash (under 8%, the bound at 1,000 nodes)
    assert inside == [n for n in nodes if wave_slot(n) < 500]
    # stable: a larger wave keeps every node of the smaller one (the same nodes go first every time)
    larger = dataclasses.replace(wave, rollout_percent=25.0)
    assert set(inside) <= {n for n in nodes if larger.for_node(n) is larger}
    assert wave.for_node("") is wave.previous  # a node that does not know its name stays outside
    assert dataclasses.replace(wave, rollout_percent=100.0).for_node("") is not wave.previous
    assert in_wave("edge-0001", 100) and not in_wave("edge-0001", 0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("rollout"), "rollout: missing; with a `previous` release"),
        (lambda d: d.pop("previous"), "rollout.percent: 5 needs a `previous` release"),
        (lambda d: d.update(rollout={"percent": 101}), "rollout.percent: expected a number from 0 to 100"),
        (lambda d: d.update(rollout={"percent": True}), "rollout.percent: expected a number from 0 to 100"),
        (lambda d: d.update(rollout={"share": 5}), "rollout: expected {percent: N}"),
        (
            lambda d: d["previous"].update(version="v2.1", bundle=BUNDLE),
            "previous.version: is the release's own version",
        ),
        (lambda d: d["previous"].update(rollout={"percent": 5}), "previous.rollout: unknown key"),
        (
            lambda d: d["previous"].update(version=None),
            "previous.version: a previous release needs a version",
        ),
        (lambda d: d["previous"].pop("signature"), "previous.signature: missing"),
        (lambda d: d.update(previous="v2.0"), "previous: expected the mapping of a whole release"),
    ],
)
def test_malformed_waves_are_refused_naming_the_key(wave: Release, edit: Any, message: str) -> None:
    doc = YAML(typ="safe", pure=True).load(render_release(wave, ring="fleet"))
    edit(doc)
    out = StringIO()
    YAML(typ="safe", pure=True).dump(doc, out)
    with pytest.raises(ReleaseError, match=re.escape(f"fleet.yaml: {message}")):
        parse_release(out.getvalue(), source="fleet.yaml")


# --- swap windows: `rollout.windows` (tools/core/windows.py) -----------------------------------------------

WINDOWS = ("22:00-04:00", "Mon-Fri 12:00-13:00")


def test_swap_windows_render_in_the_rollout_line_and_round_trip(wave: Release, keys: Keys) -> None:
    windowed = dataclasses.replace(wave, swap_windows=WINDOWS)
    text = render_release(windowed, ring="fleet")
    assert "\nrollout: {percent: 5, windows: ['22:00-04:00', 'Mon-Fri 12:00-13:00']}\n" in text
    assert parse_release(text, source="fleet") == windowed
    # A YAML 1.1 reader (libyaml) reads the same: '22:00' plain would be a base-60 integer there.
    assert YAML(typ="safe").load(text)["rollout"] == {"percent": 5, "windows": list(WINDOWS)}
    # Not signed, like the rest of `rollout`: both signatures still verify.
    parsed = parse_release(text, source="fleet")
    assert parsed is not None and parsed.previous is not None
    verify_release(parsed, keys[1])
    verify_release(parsed.previous, keys[1])


def test_adding_changing_and_dropping_windows_is_a_one_line_diff(wave: Release) -> None:
    text = render_release(wave, ring="fleet")
    steps = [
        (dataclasses.replace(wave, swap_windows=WINDOWS), WINDOWS),
        (dataclasses.replace(wave, rollout_percent=25.0, swap_windows=WINDOWS), WINDOWS),
        (dataclasses.replace(wave, rollout_percent=25.0, swap_windows=WINDOWS[:1]), WINDOWS[:1]),
        (dataclasses.replace(wave, rollout_percent=25.0), ()),
    ]
    for new, windows in steps:
        edited = edit_release_text(text, new, ring="fleet", source="f")
        changed = [(a, b) for a, b in zip(text.splitlines(), edited.splitlines(), strict=True) if a != b]
        assert len(changed) == 1 and changed[0][1].startswith("rollout: {percent: "), changed
        parsed = parse_release(edited, source="f")
        assert parsed == new and parsed.swap_windows == windows
        text = edited


def test_a_release_of_the_whole_ring_carries_windows_with_percent_100(release: Release) -> None:
    whole = dataclasses.replace(release, rollout_percent=100.0, swap_windows=("Sat,Sun 00:00-24:00",))
    text = render_release(whole, ring="pilot")
    assert "\nrollout: {percent: 100, windows: ['Sat,Sun 00:00-24:00']}\n" in text
    assert parse_release(text, source="pilot") == whole
    assert whole.for_node("edge-0001") is whole
    # An empty list is no window (and is not written back).
    empty = parse_release(text.replace("['Sat,Sun 00:00-24:00']", "[]"), source="pilot")
    assert empty is not None and empty.swap_windows == ()
    # Windows live in the rollout block: without a percent there is nowhere to write them.
    with pytest.raises(ReleaseError, match=r"swap windows \['22:00-04:00'\] need a rollout percent"):
        render_release(dataclasses.replace(release, swap_windows=("22:00-04:00",)), ring="pilot")


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ({"percent": 5, "windows": "22:00-04:00"}, "rollout.windows: expected a list of swap windows"),
        ({"percent": 5, "windows": ["22:00-04:00", 2200]}, "rollout.windows[1]: expected a string"),
        (
            {"percent": 5, "windows": ["25:00-04:00"]},
            "rollout.windows[0]: swap window '25:00-04:00': 25:00 is not a time of day",
        ),
        (
            {"percent": 5, "windows": ["22:00-04:00", "Mo-Fr 12:00-13:00"]},
            "rollout.windows[1]: swap window 'Mo-Fr 12:00-13:00': 'Mo' is not a day",
        ),
        ({"windows": ["22:00-04:00"]}, "rollout: expected {percent: N} (0-100), optionally with windows"),
        ({"percent": 5, "window": ["22:00-04:00"]}, "rollout: expected {percent: N}"),
    ],
)
def test_malformed_windows_are_refused_naming_the_key(
    wave: Release, rollout: dict[str, Any], message: str
) -> None:
    doc = YAML(typ="safe", pure=True).load(render_release(wave, ring="fleet"))
    doc["rollout"] = rollout
    out = StringIO()
    YAML(typ="safe", pure=True).dump(doc, out)
    with pytest.raises(ReleaseError, match=re.escape(f"fleet.yaml: {message}")):
        parse_release(out.getvalue(), source="fleet.yaml")
