"""Hostile YAML (issue #19, "YAML aliases"): every file that comes through a PR is read in bounded time.

A "billion laughs" of nine anchors, each a list of nine aliases of the one before, is 600 bytes that expand
to 9⁹ values in whatever walks the result: in ``edgeops.yaml`` or a training config it cost 40 s and 3.6 GB
before a MemoryError; under ``metrics:`` of a release file it passed ``edgeops validate pr`` and then stalled
``promote`` and every node's model-updater. Each read site (tools/core/safeyaml.py) now refuses aliases
and caps size, line length, values and depth before building anything, with an error naming the file. The
property-based test throws random and mutated release files at the parser every node runs.
"""

from __future__ import annotations

import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import EDGEOPS, REPO, project_files
from tools.artifacts.release import (
    Release,
    ReleaseError,
    load_release,
    make_release,
    parse_release,
    render_release,
)
from tools.core.errors import ConfigError, EdgeopsError
from tools.core.safeyaml import UNTRUSTED, SafeYAML, YAMLLimitError, check
from tools.core.signing import generate_keypair, private_key_from_pem

INTERFACE = "sha256:" + "ab" * 32


def laughs(key: str = "lol", indent: str = "") -> str:
    """A billion laughs under ``key``: 9 anchors of 9 aliases each, 9⁹ values when expanded."""
    lines = [f"{indent}{key}:", f"{indent}  l0: &l0 [{', '.join(['lol'] * 9)}]"]
    lines += [f"{indent}  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def release_text() -> str:
    private = private_key_from_pem(generate_keypair()[0], source="test")
    release = make_release(
        private, version="v2.1", interface=INTERFACE, bundle="s3://context-edge-models/models/v2.1/",
        files={"model.onnx": {"sha256": "1f" * 32, "bytes": 10},
               "golden.json": {"sha256": "2e" * 32, "bytes": 20}},
        metrics={"accuracy": 0.941}, source={"commit": "0123456"},
    )  # fmt: skip
    return render_release(release, ring="pilot")


def bounded(call: object, *, seconds: float = 1.0, megabytes: float = 50.0) -> BaseException:
    """Run ``call``; the exception it raised, after asserting it took < ``seconds`` and < ``megabytes``."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        call()  # type: ignore[operator]
    except Exception as exc:  # noqa: BLE001 - returned to the test, which checks its type
        raised: BaseException = exc
    else:
        raise AssertionError("expected an error")
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < seconds, f"{elapsed:.2f} s"
    assert peak < megabytes * 2**20, f"{peak / 2**20:.0f} MB"
    return raised


# --- release files: the parser every node runs -------------------------------------------------------------


def test_a_billion_laughs_in_a_release_file_is_refused_at_once(release_text: str, tmp_path: Path) -> None:
    text = release_text.replace("metrics: {accuracy: 0.941}\n", laughs("metrics"))
    assert "metrics:\n  l0: &l0" in text
    exc = bounded(lambda: parse_release(text, source="environments/pilot/release.yaml"))
    assert isinstance(exc, ReleaseError)
    assert str(exc).startswith("environments/pilot/release.yaml: YAML aliases (*l0) are not allowed (line ")
    assert "write the value out in full" in str(exc)
    path = tmp_path / "release.yaml"
    path.write_text(text)
    assert isinstance(bounded(lambda: load_release(path)), ReleaseError)


def test_the_updater_answers_a_hostile_release_file_at_once(release_text: str, tmp_path: Path) -> None:
    from tools.edge.updater import run

    release = tmp_path / "release.yaml"
    release.write_text(release_text.replace("metrics: {accuracy: 0.941}\n", laughs("metrics")))
    key = tmp_path / "release-signing.pub"
    key.write_bytes(generate_keypair()[1])
    start = time.perf_counter()
    assert run(release_path=release, root=tmp_path / "models", public_key_path=key, once=True) == 1
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: v2.1\n" + "# " + "x" * 150_000 + "\n", "more than the 128 KiB allowed"),
        ("version: v2.1\n# " + "x" * 20_000 + "\n", "line 2 is 19 KiB long"),
        ("version: v2.1\nmetrics: " + "[" * 40 + "]" * 40 + "\n", "nests deeper than 32 levels"),
        ("version: v2.1\nmetrics:\n" + "- 0\n" * 6_000, "more than 5000 values"),
        ("version: v2.1\nmetrics: {<<: *m}\n", "YAML aliases (*m)"),
        ("version: v2.1\nmetrics: {when: 2026-02-30}\n", "a value cannot be read"),
    ],
    ids=["size", "line", "depth", "values", "merge-key", "bad-date"],
)
def test_release_files_past_the_caps_are_refused_naming_the_file(text: str, message: str) -> None:
    exc = bounded(lambda: parse_release(text, source="r.yaml"), seconds=3)
    assert isinstance(exc, ReleaseError) and str(exc).startswith("r.yaml: ") and message in str(exc), exc


def test_a_release_file_that_is_not_utf8_says_where(tmp_path: Path) -> None:
    path = tmp_path / "release.yaml"
    path.write_bytes(b"version: v2.1\nmetrics: {a: '\xff'}\n")
    with pytest.raises(ReleaseError, match=r"not UTF-8 text \(byte 0xff at offset 28\)"):
        load_release(path)


def _mutations(text: str) -> st.SearchStrategy[str]:
    """``text`` with a slice replaced by YAML-ish characters, some of it repeated, or cut."""
    yamlish = st.text(
        st.sampled_from(list("&*!|>-?:,[]{}#%@`'\"\\ \t\n0123456789abcdefvnul.~<=")), max_size=50
    )

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        out = text
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(out)))
            j = draw(st.integers(i, min(len(out), i + 80)))
            out = out[:i] + draw(yamlish) * draw(st.sampled_from([1, 1, 2, 50])) + out[j:]
        return out

    return mutate()


RANDOM_YAMLISH = st.text(
    st.sampled_from(list("&*!|>-?:,[]{}#%@ \t\n\"'\\abcdefghilnrstuvwxyz0123456789._<=~")), max_size=400
)


def _parses_or_refuses(text: str) -> None:
    start = time.perf_counter()
    try:
        result = parse_release(text, source="r.yaml")
    except ReleaseError as exc:
        assert str(exc).startswith("r.yaml: "), exc
    else:
        assert result is None or isinstance(result, Release)
    assert time.perf_counter() - start < 5


@given(data=st.data())
def test_mutated_release_files_parse_or_are_refused(release_text: str, data: st.DataObject) -> None:
    _parses_or_refuses(data.draw(_mutations(release_text)))


@given(text=RANDOM_YAMLISH)
def test_random_yamlish_text_parses_or_is_refused_never_crashes(text: str) -> None:
    _parses_or_refuses(text)


# --- configs: edgeops.yaml, training configs, --set ---------------------------------------------------------


def test_a_billion_laughs_in_a_training_config_is_a_config_error(tmp_path: Path) -> None:
    from training.config import load_training_config

    path = tmp_path / "bomb.yaml"
    path.write_text("base: " + str(REPO / "training/configs/default.yaml") + "\n" + laughs("labels"))
    exc = bounded(lambda: load_training_config(path))
    assert isinstance(exc, ConfigError) and str(exc).startswith(f"{path}: YAML aliases (*l0)"), exc
    with pytest.raises(ConfigError, match=r"--set labels=\*a: the value is not valid YAML: YAML aliases"):
        load_training_config(overrides=["labels=*a"])


def test_a_merge_key_in_edgeops_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    from tools.core.config import load_config

    text = (REPO / "edgeops.yaml").read_text()
    path = tmp_path / "edgeops.yaml"
    path.write_text(text + "\nx-defaults: &defaults {a: 1}\nx-other:\n  <<: *defaults\n")
    with pytest.raises(ConfigError, match=r"edgeops\.yaml: YAML aliases \(\*defaults\) are not allowed"):
        load_config(path)


def test_a_config_that_is_not_utf8_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "edgeops.yaml"
    path.write_bytes(b"# caf\xe9 config\nstores: {}\n")
    result = subprocess.run(
        [EDGEOPS, "--config", str(path), "config", "check"], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{path}: not UTF-8 text (byte 0xe9 at offset 5)" in result.stderr


def test_the_cli_refuses_a_billion_laughs_config_fast(tmp_path: Path) -> None:
    path = tmp_path / "edgeops.yaml"
    path.write_text(laughs("stores"))
    start = time.perf_counter()
    result = subprocess.run(
        [EDGEOPS, "--config", str(path), "config", "check"], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert time.perf_counter() - start < 30  # the interpreter's start; the parse itself is milliseconds
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "YAML aliases (*l0) are not allowed" in result.stderr


# --- the other read sites: overlays, revocations, kustomize output ------------------------------------------


def test_overlays_revocations_and_build_output_refuse_aliases() -> None:
    from tools.gitops.images import ImageError, read_pin
    from tools.gitops.manifests import parse_objects

    overlay = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" + laughs("x-bomb")
    exc = bounded(lambda: read_pin(overlay, source="environments/pilot/kustomization.yaml"))
    assert isinstance(exc, ImageError) and "kustomization.yaml: YAML aliases (*l0)" in str(exc)
    exc = bounded(lambda: parse_objects("kind: ConfigMap\n" + laughs("data")))
    assert isinstance(exc, EdgeopsError)
    assert "the kustomize build output: not valid YAML (YAML aliases (*l0)" in str(exc)


def test_a_revocation_record_with_aliases_still_revokes(tmp_path: Path) -> None:
    from tools.gitops.gitrepo import Repo
    from tools.gitops.revocations import revoked

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "--quiet", "-b", "main")
    (tmp_path / "revocations").mkdir()
    (tmp_path / "revocations" / "v2.1.yaml").write_text("version: v2.1\n" + laughs("reason"))
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "revoke")
    records = revoked(Repo(tmp_path), "HEAD")
    assert "v2.1" in records and "YAML aliases (*l0)" in records["v2.1"]["error"]


# --- the caps fit this repository's own files --------------------------------------------------------------


def test_every_yaml_file_of_the_repository_is_within_the_untrusted_caps() -> None:
    names = [n for n in project_files() if n.endswith((".yaml", ".yml"))]
    assert any(n.startswith("environments/") for n in names) and "edgeops.yaml" in names
    for name in names:
        check((REPO / name).read_text(encoding="utf-8"), UNTRUSTED, typ="rt")  # no alias, within the caps


def test_safe_yaml_reads_text_only_and_lists_every_document() -> None:
    assert SafeYAML(typ="safe").load_all("a: 1\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]
    with pytest.raises(TypeError, match="reads text"):
        SafeYAML(typ="safe").load(Path("edgeops.yaml"))
    with pytest.raises(YAMLLimitError, match=r"aliases \(\*a\)"):
        SafeYAML(typ="rt").load("a: &a 1\nb: *a\n")
