"""The training pipeline as Argo Workflows objects, built with hera and rendered to ``pipelines/argo/``.

    edgeops pipeline render            # writes pipelines/argo/training-template.yaml and training-cron.yaml
    edgeops pipeline render --check    # exit 1 when the committed files differ from a fresh render

``training-template.yaml`` is a WorkflowTemplate whose DAG runs the same steps as the local runner
(``pipelines/dag.py``), one container per step in the training image, each running
``edgeops pipeline run --only <step>`` (the checked-out revision's code, on the image's dependencies) on a
run directory that travels between the steps as an S3 artifact. ``training-cron.yaml`` is a CronWorkflow
that starts it monthly and never twice at once.

What the cluster provides (docs/pipeline.md):
- a default artifact repository (S3 or MinIO) in the namespace: the run-directory artifacts are
  *key-only* (``s3.key`` only), so bucket, endpoint and credentials come from the repository's
  configuration, not from this template;
- the Secret ``edgeops-pipeline`` with the keys named in :data:`SECRET_KEYS` (a PostgreSQL DSN per role, S3
  credentials for the LDO and model stores, the release-signing key, the GitHub App's ID and private key)
  and ``git-ssh-key`` (a read-only deploy key for the checkout);
- the ConfigMap ``edgeops-ssh-known-hosts`` (key ``ssh_known_hosts``: the git server's host keys);
- the ServiceAccount ``edgeops-pipeline`` (what Argo's executor needs: create/patch workflowtaskresults);
- GPU nodes labelled ``nvidia.com/gpu.present=true`` (NVIDIA GPU feature discovery sets it) with the
  device plugin advertising ``nvidia.com/gpu``; their ``nvidia.com/gpu:NoSchedule`` taint is tolerated.

The output is deterministic (hera sorts keys; nothing here reads the clock or the environment), so
``tests/test_pipeline.py`` can compare the committed files with a fresh render.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hera.workflows import (
    DAG,
    Artifact,
    Container,
    CronWorkflow,
    EmptyDirVolume,
    GitArtifact,
    Parameter,
    Resources,
    RetryStrategy,
    S3Artifact,
    SecretEnv,
    WorkflowTemplate,
)
from hera.workflows import models as m

from pipelines.dag import STEPS, Step

__all__ = [
    "CRON_FILE",
    "CRON_NAME",
    "IMAGE",
    "TEMPLATE_FILE",
    "TEMPLATE_NAME",
    "build_cron",
    "build_template",
    "render",
    "render_files",
]

TEMPLATE_NAME = "edgeops-training"
CRON_NAME = "edgeops-training-monthly"
TEMPLATE_FILE = "training-template.yaml"
CRON_FILE = "training-cron.yaml"
# The training image (training/Dockerfile): one reference, in training/IMAGE, for both engines (train.yml's
# GPU job runs in it too: one training stack). Pin its digest there (`<image>:<tag>@sha256:...`) once
# images.yml has pushed one.
IMAGE = (Path(__file__).resolve().parents[1] / "training" / "IMAGE").read_text().strip()
SERVICE_ACCOUNT = "edgeops-pipeline"
SECRET = "edgeops-pipeline"  # noqa: S105 (the Secret's name, not a secret)
# 03:00 UTC on the 1st of every month; Forbid: a month's run that is still going blocks the next one.
SCHEDULE = "0 3 1 * *"

REPO_PATH = "/work/repo"  # the checkout of this repository (edgeops.yaml, configs, release files)
RUN_DIR = "/work/run-dir"  # the run directory, passed from step to step as an S3 artifact
RUN_ARTIFACT = "run-dir"

# Environment variable -> (key in the Secret `edgeops-pipeline`, optional), per step: each step sees only
# what it uses. Optional keys may be left out of the Secret: S3 credentials when the nodes have an IAM
# role, the endpoint for AWS itself, the DSN when LDOs come from a folder, the token for the local forge.
_S3_ENV = {
    "AWS_ACCESS_KEY_ID": ("aws-access-key-id", True),
    "AWS_SECRET_ACCESS_KEY": ("aws-secret-access-key", True),
    "AWS_ENDPOINT_URL": ("aws-endpoint-url", True),
    "AWS_DEFAULT_REGION": ("aws-region", True),
}
SECRET_KEYS: dict[str, dict[str, tuple[str, bool]]] = {
    # One DSN per least-privilege role (docs/database.md): the snapshot reads `ldos`, publish writes
    # `model_versions`; train and export see no secret at all.
    "snapshot": {"EDGEOPS_PG_DSN": ("pg-dsn-snapshot", True), **_S3_ENV},
    "evaluate": dict(_S3_ENV),  # the fleet model's bundle is read from the model store
    "publish": {
        "EDGEOPS_PG_DSN": ("pg-dsn-publish", True),
        **_S3_ENV,
        "EDGEOPS_SIGNING_KEY": ("signing-key", False),
    },
    "propose": {
        **_S3_ENV,
        "EDGEOPS_SIGNING_KEY": ("signing-key", False),
        # The App's ID and private key, not a token: a token stored at submission would have expired (one
        # hour) long before training ends; propose mints one when it pushes (tools/gitops/github.py).
        "EDGEOPS_GITHUB_APP_ID": ("github-app-id", True),
        "EDGEOPS_GITHUB_APP_PRIVATE_KEY": ("github-app-private-key", True),
    },
}
# The checkout: a read-only deploy key (SSH), which does not expire mid-run as a token would. Argo's git
# artifact driver (go-git, workflow/artifacts/git/git.go upstream) checks the server's host key against
# the init container's /etc/ssh/ssh_known_hosts: the ConfigMap below is mounted there (POD_SPEC_PATCH).
GIT_SSH_KEY = "git-ssh-key"
KNOWN_HOSTS_CONFIGMAP = "edgeops-ssh-known-hosts"
POD_SPEC_PATCH = f"""\
initContainers:
- name: init
  volumeMounts:
  - name: ssh-known-hosts
    mountPath: /etc/ssh/ssh_known_hosts
    subPath: ssh_known_hosts
    readOnly: true
volumes:
- name: ssh-known-hosts
  configMap:
    name: {KNOWN_HOSTS_CONFIGMAP}
"""
# Each task runs the code of the revision it checked out (`python -m tools.cli` in the checkout: the
# working directory comes first on sys.path), on the image's dependencies; the image was built from some
# commit, so a checkout whose requirements.lock differs from the image's stops at once with a message
# instead of running new code on old libraries.
IMAGE_LOCK = "/opt/edgeops/requirements.lock"
_RUN_REVISION = (
    f'lock="${{EDGEOPS_IMAGE_LOCK:-{IMAGE_LOCK}}}"; '
    'cmp -s requirements.lock "$lock" || { echo "edgeops: this revision\'s requirements.lock differs from '
    "the image's: build the training image for this commit (images.yml) and point the template at it\" >&2; "
    'exit 3; }; exec python -m tools.cli "$@"'
)

# Workflow parameters: name -> (default, description).
PARAMETERS: dict[str, tuple[str, str]] = {
    "repo": (
        "git@github.com:context-edge/edgeops.git",
        "the git repository to check out (SSH: the deploy key)",
    ),
    "revision": ("main", "branch, tag or commit of the repository to run"),
    "training-config": ("training/configs/default.yaml", "training config, relative to the checkout"),
    "source": ("pg+s3", "where LDOs come from: pg+s3 (the runtime backend) or dir"),
    "ring": ("pilot", "the ring whose release file the proposal changes"),
    "propose": ("true", "open the release PR (true) or stop after publishing (false)"),
}

_RESOURCES: dict[str, Resources] = {
    "snapshot": Resources(cpu_request="2", memory_request="4Gi", memory_limit="8Gi"),
    "train": Resources(cpu_request="8", memory_request="32Gi", memory_limit="64Gi", gpus=1),
    "evaluate": Resources(cpu_request="2", memory_request="8Gi", memory_limit="16Gi"),
    "export": Resources(cpu_request="4", memory_request="16Gi", memory_limit="32Gi", gpus=1),
    "publish": Resources(cpu_request="1", memory_request="2Gi", memory_limit="4Gi"),
    "propose": Resources(cpu_request="500m", memory_request="512Mi", memory_limit="1Gi"),
}
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = m.Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
# Snapshot, publish and propose talk to PostgreSQL, S3 and the forge: a network blip should not cost a
# month's run. Both failure kinds (the step's own exit and Argo's errors) are retried, with backoff.
RETRY = RetryStrategy(
    limit="3", retry_policy="Always", backoff=m.Backoff(duration="30s", factor="2", max_duration="10m")
)


def _param(name: str) -> str:
    return f"{{{{workflow.parameters.{name}}}}}"


def _env(step: Step) -> list[SecretEnv] | None:
    env = [
        SecretEnv(name=var, secret_name=SECRET, secret_key=key, optional=optional or None)
        for var, (key, optional) in SECRET_KEYS.get(step.name, {}).items()
    ]
    return env or None


def _run_dir_output(step: Step) -> S3Artifact:
    # Key-only: the namespace's default artifact repository supplies bucket, endpoint and credentials.
    return S3Artifact(
        name=RUN_ARTIFACT, path=RUN_DIR, key=f"edgeops/pipeline-runs/{{{{workflow.name}}}}/{step.name}.tgz"
    )


def _container(step: Step, first: bool) -> Container:
    inputs: list[Artifact] = [
        GitArtifact(
            name="repo",
            path=REPO_PATH,
            repo=_param("repo"),
            revision=_param("revision"),
            ssh_private_key_secret=m.SecretKeySelector(name=SECRET, key=GIT_SSH_KEY),
        ),
    ]
    if not first:
        inputs.append(Artifact(name=RUN_ARTIFACT, path=RUN_DIR))
    args = [
        "pipeline",
        "run",
        "--run-dir",
        RUN_DIR,
        "--only",
        step.name,
        "--config",
        _param("training-config"),
    ]
    if step.name == "snapshot":
        args += ["--source", _param("source")]
    if step.name == "propose":
        args += ["--ring", _param("ring")]
    kwargs: dict[str, Any] = {}
    if step.gpu:
        kwargs["node_selector"] = dict(GPU_NODE_SELECTOR)
        kwargs["tolerations"] = [GPU_TOLERATION]
    if step.transient:
        kwargs["retry_strategy"] = RETRY
    if step.name == "train":
        # DataLoader-free, but torch still uses shared memory; the container default (64 MiB) is too small.
        kwargs["volumes"] = [EmptyDirVolume(name="dshm", mount_path="/dev/shm", medium="Memory")]  # noqa: S108
    return Container(
        name=step.name,
        image=IMAGE,
        command=["sh", "-c", _RUN_REVISION, "edgeops"],
        args=args,
        working_dir=REPO_PATH,
        env=_env(step),
        resources=_RESOURCES[step.name],
        inputs=inputs,
        outputs=[_run_dir_output(step)],
        **kwargs,
    )


def build_template() -> WorkflowTemplate:
    with WorkflowTemplate(
        name=TEMPLATE_NAME,
        entrypoint="training",
        service_account_name=SERVICE_ACCOUNT,
        labels={"app.kubernetes.io/name": "edgeops", "app.kubernetes.io/component": "training-pipeline"},
        annotations={"edgeops.context-edge.io/generated-by": "edgeops pipeline render (pipelines/argo.py)"},
        arguments=[Parameter(name=k, value=v, description=d) for k, (v, d) in PARAMETERS.items()],
        security_context=m.PodSecurityContext(
            run_as_non_root=True, run_as_user=10001, run_as_group=10001, fs_group=10001
        ),
        pod_gc=m.PodGC(strategy="OnWorkflowSuccess"),
        pod_spec_patch=POD_SPEC_PATCH,
        ttl_strategy=m.TTLStrategy(seconds_after_success=7 * 24 * 3600),
    ) as wt:
        containers = {s.name: _container(s, first=i == 0) for i, s in enumerate(STEPS)}
        with DAG(name="training"):
            previous = None
            for s in STEPS:
                arguments: list[Artifact] = []
                if previous is not None:
                    arguments.append(
                        Artifact(
                            name=RUN_ARTIFACT,
                            from_=f"{{{{tasks.{previous}.outputs.artifacts.{RUN_ARTIFACT}}}}}",
                        )
                    )
                containers[s.name](
                    name=s.name,
                    arguments=arguments,
                    depends=previous,
                    when=f"{_param('propose')} == true" if s.name == "propose" else None,
                )
                previous = s.name
    return wt


def build_cron() -> CronWorkflow:
    return CronWorkflow(
        name=CRON_NAME,
        schedules=[SCHEDULE],
        timezone="UTC",
        concurrency_policy="Forbid",
        starting_deadline_seconds=3600,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=3,
        labels={"app.kubernetes.io/name": "edgeops", "app.kubernetes.io/component": "training-pipeline"},
        workflow_template_ref=m.WorkflowTemplateRef(name=TEMPLATE_NAME),
    )


_HEADER = (
    "# Generated by `edgeops pipeline render` from pipelines/argo.py: do not edit by hand.\n"
    "# tests/test_pipeline.py fails when this file differs from a fresh render.\n"
)


def render() -> dict[str, str]:
    """File name -> YAML text, exactly what ``render_files`` writes."""
    return {
        TEMPLATE_FILE: _HEADER + build_template().to_yaml(),
        CRON_FILE: _HEADER + build_cron().to_yaml(),
    }


def render_files(out: Path, *, check: bool = False) -> list[Path]:
    """Write (or with ``check``, compare) the rendered files; returns those that differed."""
    if not check:
        out.mkdir(parents=True, exist_ok=True)
    changed: list[Path] = []
    for name, text in render().items():
        path = out / name
        if not path.is_file() or path.read_text() != text:
            changed.append(path)
            if not check:
                path.write_text(text)
    return changed
