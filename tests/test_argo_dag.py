"""The rendered Argo WorkflowTemplate (pipelines/argo/training-template.yaml), run task by task as Argo would
run it, against real PostgreSQL, an S3 API server and the GitHub fake, with the fake's clock moved on by
the hours a real run takes: the release PR still opens, because propose mints its App token when it pushes.

The executor here is a stand-in for Argo's controller and executor, and says where it differs: it walks
the DAG in order (each task ``depends`` on the one before), evaluates ``when``, substitutes
``{{workflow.parameters.*}}``, builds each container's environment from the Secret's keys exactly as the
template's ``secretKeyRef`` entries name them (a key not in the Secret is left out when ``optional``, an
error otherwise), and runs the container's own ``command`` and ``args``. Where Argo would clone with the
deploy key over SSH, it clones the bare repository directly and points ``origin`` at the fake's git URL
(what a clone of ``repo`` has); the run directory is one folder instead of a tarball per task; the image's
requirements.lock is this checkout's (``EDGEOPS_IMAGE_LOCK``); ``GITHUB_API_URL`` points at the fake.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from pipelines.argo import TEMPLATE_FILE
from pipelines.story import seed_release_repository
from tests.conftest import REPO, project_files
from tests.githubfake import FakeGitHub
from tests.releasekit import git
from tools.core.signing import generate_keypair
from tools.kits.devservices import S3Endpoint
from training.config import load_training_config
from training.data.seed import seed
from training.data.synth import write_dataset

REPOSITORY = "context-edge/edgeops"
SPEC = load_training_config(REPO / "training/configs/demo.yaml").data_spec()


def _config(tmp: Path, bucket: str) -> Path:
    """edgeops.yaml of the fork under test: GitHub forge, the test's buckets, gates a 3-epoch model meets."""
    text = (REPO / "edgeops.yaml").read_text()
    text = text.replace("  kind: local ", "  kind: github").replace(
        "  repository: null", f"  repository: {REPOSITORY}"
    )
    text = text.replace("s3://context-edge-ldos/ldos", f"s3://{bucket}/ldos")
    text = re.sub(r"min_subset_accuracy: [0-9.]+", "min_subset_accuracy: 0.0", text)
    text = re.sub(r"max_(fp|fn)_rate: [0-9.]+ ", r"max_\1_rate: 1.0 ", text)
    text = re.sub(
        r"(bearing_wear|misalignment|overheating|electrical_fault|lubrication_loss): 0\.85", r"\1: 0.0", text
    )
    path = tmp / "edgeops.yaml"
    path.write_text(text)
    return path


class StandInArgo:
    """Runs the WorkflowTemplate's DAG (see the module docstring for where it differs from Argo)."""

    def __init__(self, tmp: Path, remote: Path, fake: FakeGitHub, secret: dict[str, str]) -> None:
        self.tmp, self.remote, self.fake, self.secret = tmp, remote, fake, secret
        spec = YAML(typ="safe").load((REPO / "pipelines" / "argo" / TEMPLATE_FILE).read_text())["spec"]
        self.templates = {t["name"]: t for t in spec["templates"]}
        (dag,) = [t for t in spec["templates"] if "dag" in t]
        self.tasks = dag["dag"]["tasks"]
        self.defaults = {p["name"]: str(p["value"]) for p in spec["arguments"]["parameters"]}
        self.run_dir = tmp / "run-dir"
        self.results: dict[str, subprocess.CompletedProcess[str]] = {}

    def _sub(self, text: str, params: dict[str, str], checkout: Path) -> str:
        text = re.sub(r"\{\{workflow\.parameters\.([\w-]+)\}\}", lambda m: params[m[1]], text)
        return text.replace("/work/run-dir", str(self.run_dir)).replace("/work/repo", str(checkout))

    def _env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEOPS_", "AWS_", "GITHUB_"))}
        env |= {
            "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
            "HOME": str(self.tmp / "home"),
            "EDGEOPS_IMAGE_LOCK": str(REPO / "requirements.lock"),
            "GITHUB_API_URL": self.fake.base_url,
        }
        for item in container.get("env", []):
            ref = item["valueFrom"]["secretKeyRef"]
            if ref["key"] in self.secret:
                env[item["name"]] = self.secret[ref["key"]]
            else:
                assert ref.get("optional"), f"the Secret lacks the required key {ref['key']}"
        return env

    def run(self, params: dict[str, str], *, between: dict[str, float]) -> None:
        """Every task in order; ``between``: hours the fake's clock moves on after a task."""
        full = {**self.defaults, **params}
        for task in self.tasks:
            when = task.get("when")
            if when and self._sub(when, full, self.tmp) != "true == true":
                continue
            template = self.templates[task["template"]]
            checkout = self.tmp / f"repo-{task['name']}"
            git(self.tmp, "clone", "--quiet", str(self.remote), str(checkout))
            git(checkout, "checkout", "--quiet", full["revision"])
            git(checkout, "remote", "set-url", "origin", self.fake.git_url)
            container = template["container"]
            argv = [self._sub(a, full, checkout) for a in [*container["command"], *container["args"]]]
            done = subprocess.run(
                argv,
                cwd=checkout,
                env=self._env(container),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            self.results[task["name"]] = done
            assert done.returncode == 0, f"{task['name']}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
            self.fake.advance(hours=between.get(task["name"], 0.0))


def test_the_dag_opens_the_release_pr_hours_after_it_started(
    tmp_path: Path, git_remote: Path, pg_dsn: str, s3_env: S3Endpoint, s3_bucket: str
) -> None:
    private_pem, public_pem = generate_keypair()
    config = _config(tmp_path, s3_bucket)
    seed_release_repository(
        git_remote, tmp_path / "seed", source_root=REPO, config=config, public_key_pem=public_pem,
        store_uri=f"s3://{s3_bucket}/models", message="the fork", files=project_files(),
    )  # fmt: skip
    tiny = tmp_path / "seed" / "training" / "configs" / "tiny.yaml"
    tiny.write_text("base: demo.yaml\nepochs: 3\n")
    git(tmp_path / "seed", "add", "-A")
    git(tmp_path / "seed", "commit", "--quiet", "-m", "a 3-epoch config for the test")
    git(tmp_path / "seed", "push", "--quiet", "origin", "HEAD:main")

    ldos = tmp_path / "ldos"
    write_dataset(ldos, 1500, 11, SPEC)
    seed(ldos, SPEC, dsn=pg_dsn, s3_uri=f"s3://{s3_bucket}/ldos", workers=8)
    migrate = subprocess.run([str(REPO / ".venv/bin/edgeops"), "db", "migrate", "--pg", pg_dsn],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr

    with FakeGitHub(git_remote, repository=REPOSITORY) as fake:
        app_key = fake.enable_app(app_id="2097152")
        aws = s3_env.env()
        secret = {
            "pg-dsn-snapshot": pg_dsn, "pg-dsn-publish": pg_dsn, "signing-key": private_pem.decode(),
            "github-app-id": "2097152", "github-app-private-key": app_key,
            "aws-access-key-id": aws["AWS_ACCESS_KEY_ID"],
            "aws-secret-access-key": aws["AWS_SECRET_ACCESS_KEY"],
            "aws-endpoint-url": aws["AWS_ENDPOINT_URL"],
            "aws-region": aws.get("AWS_DEFAULT_REGION", "us-east-1"),
        }  # fmt: skip
        argo = StandInArgo(tmp_path, git_remote, fake, secret)
        # Hours pass while training runs: any token minted at submission would be dead by propose.
        argo.run({"revision": "main", "training-config": "training/configs/tiny.yaml", "ring": "pilot"},
                 between={"snapshot": 0.5, "train": 6.0, "export": 1.0})  # fmt: skip

        assert list(argo.results) == ["snapshot", "train", "evaluate", "export", "publish", "propose"]
        (pr,) = fake.pulls.values()
        assert pr.head.startswith("release/pilot/v") and pr.base == "main"
        pushes = fake.calls("POST", rf"/{REPOSITORY}\.git/git-receive-pack")
        assert pushes and all(c.status == 200 for c in pushes)
        # The token propose pushed with was minted after the clock had moved 7.5 h: it was made then.
        minted = fake.calls("POST", r"/app/installations/\d+/access_tokens")
        assert minted and all(expires > fake.now() for expires in fake.minted.values())
        # The train and export tasks held no secret at all.
        for name in ("train", "export"):
            assert "env" not in argo.templates[name]["container"]
        text = "".join(r.stdout + r.stderr for r in argo.results.values())
        assert "PRIVATE KEY" not in text and not any(t in text for t in fake.minted)
