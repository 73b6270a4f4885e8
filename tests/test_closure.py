"""The edge closure (tools/kits/closure.py): the base dependencies are what a node needs, and nothing more.

A fresh venv holding only the base dependencies' closure (no pip, no system site-packages) runs the
model-updater's install and golden check, and cannot even find PyGithub, psycopg2, jinja2, pydantic, torch
or onnx. The import contracts (.importlinter) say the same statically; this runs it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.test_updater import INTERFACE, World
from tools.core.errors import EdgeopsError
from tools.core.signing import generate_keypair, private_key_from_pem, public_key_from_pem
from tools.edge.updater import CURRENT
from tools.kits.closure import base_requirements, closure, make_venv

NOT_ON_A_NODE = {"pygithub", "psycopg2-binary", "psycopg2", "jinja2", "pydantic", "torch", "onnx"}
NOT_IMPORTABLE = ("github", "psycopg2", "jinja2", "pydantic", "torch", "onnx", "training", "pipelines")


def test_the_base_dependencies_are_the_edge_set() -> None:
    base = set(base_requirements())
    assert base == {"boto3", "cryptography", "numpy", "onnxruntime", "prometheus-client", "ruamel-yaml",
                    "ruamel-yaml-clib"}  # fmt: skip
    names = set(closure(base).names())
    assert not names & NOT_ON_A_NODE
    assert {"botocore", "s3transfer", "protobuf"} <= names  # what pip pulls in for them


def test_a_requirement_that_is_not_installed_is_named() -> None:
    with pytest.raises(EdgeopsError, match=r"no-such-dist is required but not installed here"):
        closure(["no-such-dist"])


def test_a_venv_with_only_the_base_set_installs_a_release_and_passes_the_golden_check(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", closure(base_requirements()))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # cwd is not the checkout: `-m` puts cwd on sys.path, and the checkout holds training/ and pipelines/.
        return subprocess.run([str(python), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip

    probe = run("-c", f"import importlib.util as u; print([m for m in {NOT_IMPORTABLE!r} if u.find_spec(m)])")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"

    usage = run("-m", "tools.cli", "updater", "run", "--help")
    assert usage.returncode == 0, usage.stderr
    assert "--release" in usage.stdout and "--accept-interface" in usage.stdout

    private, public = generate_keypair()
    key_path = tmp_path / "release-signing.pub"
    key_path.write_bytes(public)
    world = World(tmp_path, f"file://{tmp_path / 'store'}", private_key_from_pem(private, source="test"),
                  public_key_from_pem(public, source="test"), key_path)  # fmt: skip
    release = world.write_release(world.publish("v1.0"))
    root = tmp_path / "models"
    done = run("-m", "tools.cli", "--log-json", "updater", "run", "--once", "--release", str(release),
               "--root", str(root), "--public-key", str(key_path),
               "--accept-interface", INTERFACE)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert os.readlink(root / CURRENT) == "v1.0"
    assert (root / CURRENT / "model.onnx").read_bytes() == world.models["v1.0"]

    # The reference inference service runs on the same set: it loads what the updater installed, golden
    # check included (docs/inference-contract.md).
    serve = run("-c", "import sys; from tools.edge.inference import InferenceService; "
                f"s = InferenceService({str(root)!r}, poll_interval=None); s.reload(); print(s.version); "
                "s.close()")  # fmt: skip
    assert serve.returncode == 0, serve.stderr
    assert serve.stdout.split() == ["v1.0"]

    spoiled = world.write_release(world.publish("v1.1", golden_offset=0.5), tmp_path / "spoiled.yaml")
    refused = run("-m", "tools.cli", "updater", "run", "--once", "--release", str(spoiled),
                  "--root", str(root), "--public-key", str(key_path),
                  "--accept-interface", INTERFACE)  # fmt: skip
    assert refused.returncode == 1
    assert "golden" in refused.stderr
    assert os.readlink(root / CURRENT) == "v1.0"  # the node keeps serving what it had
