"""The training pipeline: the local runner end to end (and resumed), the Argo YAML, submission, images.

The runner tests run the real ``edgeops pipeline run`` on a tiny synthetic set with a tiny training
config, in a real git checkout on a bare remote (LocalForge), publishing into a ``file://`` store with a
throwaway key from ``edgeops keygen``. Submission goes through hera's client to ``tests/argofake.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from pipelines.argo import CRON_FILE, CRON_NAME, TEMPLATE_FILE, TEMPLATE_NAME, render
from pipelines.dag import STEP_NAMES, STEPS
from pipelines.runner import FAULT_ENV, STATE_FILE, digest_path
from tests.argofake import FakeArgoServer
from tests.conftest import EDGEOPS, REPO, copy_project
from tests.releasekit import Keys, git, make_checkout
from tools.core.signing import private_key_from_pem
from tools.gitops.manifests import validate_object

TOKEN = "argo-test-token-3f9c"  # a throwaway bearer token for the fake server
ARGO_DIR = REPO / "pipelines" / "argo"


def edgeops(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGEOPS, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEOPS_", "ARGO_"))}
    env.update(extra)
    return env


# --- the local runner ---------------------------------------------------------------------------------------


class Workspace:
    """A checkout with lenient gates (a tiny model cannot pass the real ones), LDOs, a tiny config, a key."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        key, pub = tmp / "keys" / "release.key", tmp / "keys" / "release.pub"
        result = edgeops("keygen", "--private-key", str(key), "--public-key", str(pub), cwd=tmp)
        assert result.returncode == 0, result.stderr
        self.key = key
        self.pub = pub
        keys = Keys(private_key_from_pem(key.read_bytes(), source="test"), key.read_bytes(), pub.read_bytes())
        self.remote = tmp / "remote.git"
        git(tmp, "init", "--quiet", "--bare", "--initial-branch=main", str(self.remote))
        self.store = tmp / "store"
        self.checkout = make_checkout(tmp, self.remote, keys, store=f"file://{self.store}")
        self.config = self.checkout / "edgeops.yaml"
        self.set_gates(min_subset_accuracy=0.0, max_fp_rate=1.0, max_fn_rate=1.0, min_recall=0.0)
        self.ldos = tmp / "ldos"
        demo = str(REPO / "training/configs/demo.yaml")
        result = edgeops("--config", str(self.config), "data", "synth", "--n", "1500",
                         "--out", str(self.ldos), "--training-config", demo)  # fmt: skip
        assert result.returncode == 0, result.stderr
        # The demo config, cut to a few epochs: the pipeline's plumbing is under test, not the model.
        self.training_config = tiny_config(tmp)
        self.run_dir = tmp / "run-2026-11"

    def set_gates(self, **gates: float) -> None:
        yaml = YAML()
        doc = yaml.load(self.config.read_text())
        for name, value in gates.items():
            if name == "min_recall":
                for mode in doc["gates"]["evaluation"]["min_recall"]:
                    doc["gates"]["evaluation"]["min_recall"][mode] = value
            else:
                doc["gates"]["evaluation"][name] = value
        with self.config.open("w") as f:
            yaml.dump(doc, f)

    def run(self, *extra: str, key: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        if key:
            env["EDGEOPS_SIGNING_KEY_FILE"] = str(self.key)
        return edgeops(
            "--config", str(self.config), "pipeline", "run", "--run-dir", str(self.run_dir),
            "--data-path", str(self.ldos), "--config", str(self.training_config), *extra,
            env=clean_env(**env), cwd=self.tmp,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        steps: dict[str, Any] = json.loads((self.run_dir / STATE_FILE).read_text())["steps"]
        return steps


def tiny_config(tmp: Path) -> Path:
    """demo.yaml cut to 3 epochs: a delta over it (`base:`), as demo.yaml is over default.yaml."""
    path = tmp / "tiny.yaml"
    path.write_text(f"base: {REPO / 'training/configs/demo.yaml'}\nepochs: 3\n")
    return path


def lines(result: subprocess.CompletedProcess[str], step: str) -> list[str]:
    """What the runner's progress lines say about one step (time, counter and log fields cut off)."""
    found = (re.search(rf"\] {step} +(.*?)(?:  step=.*)?$", line) for line in result.stderr.splitlines())
    return [m.group(1) for m in found if m]


def test_a_run_that_fails_in_export_resumes_from_export(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)

    # 1. export fails: the steps before it ran and are recorded; nothing after it ran.
    first = ws.run(**{FAULT_ENV: "export"})
    assert first.returncode == 1, first.stderr
    assert "[4/6] export" in first.stderr and "FAILED (exit 1)" in first.stderr
    assert f"export | injected failure: {FAULT_ENV}=export" in first.stderr  # the step's stderr, named
    assert "pipeline: stopped at export" in first.stderr
    state = ws.state()
    assert {name: state[name]["status"] for name in state} == {
        "snapshot": "ok", "train": "ok", "evaluate": "ok", "export": "failed",
    }  # fmt: skip
    assert not (ws.run_dir / "run" / "published.json").exists()
    train_log = ws.run_dir / "logs" / "train.log"
    train_log_mtime = train_log.stat().st_mtime_ns

    # 2. the same command again: snapshot, train and evaluate are skipped, export onward runs.
    second = ws.run()
    assert second.returncode == 0, second.stderr
    for step in ("snapshot", "train", "evaluate"):
        assert lines(second, step) == ["skipped: unchanged"], step
    for step in ("export", "publish", "propose"):
        assert lines(second, step)[0].startswith("running"), step
    assert "export    running (its last attempt failed)" in second.stderr
    resumed = ws.state()
    for step in ("snapshot", "train", "evaluate"):
        assert resumed[step] == state[step], f"{step} was re-run"
    assert train_log.stat().st_mtime_ns == train_log_mtime
    assert {name: resumed[name]["status"] for name in resumed} == dict.fromkeys(STEP_NAMES, "ok")
    assert resumed["export"]["started_at"] > state["evaluate"]["finished_at"]

    # What it made is real: a signed bundle that verifies, and the release PR on the forge.
    published = json.loads((ws.run_dir / "run" / "published.json").read_text())
    assert published["version"] == "v1.0"
    verified = edgeops("verify", published["bundle"], "--public-key", str(ws.pub), env=clean_env())
    assert verified.returncode == 0 and verified.stdout.startswith("OK v1.0"), verified.stderr
    proposal = json.loads((ws.run_dir / "proposal.json").read_text())
    assert proposal["bundle"] == published["bundle"] and proposal["ring"] == "pilot"
    assert proposal["output"][0].startswith("PR #1 ")
    assert sorted(p.name for p in (tmp_path / "remote.git.prs").glob("*.json")) == ["1.json"]

    # 3. a changed gate re-evaluates (and re-publishes the same bundle) but neither retrains nor re-exports;
    #    a deleted output re-runs its step (propose updates its PR, it opens no second one).
    ws.set_gates(max_fp_rate=0.99)
    (ws.run_dir / "proposal.json").unlink()
    third = ws.run()
    assert third.returncode == 0, third.stderr
    assert "evaluate  running (inputs changed)" in third.stderr
    assert "propose   running (its outputs changed since it ran)" in third.stderr
    for step in ("snapshot", "train", "export"):
        assert lines(third, step) == ["skipped: unchanged"], step
    assert json.loads((ws.run_dir / "run" / "published.json").read_text()) == published  # identical: no-op
    assert sorted(p.name for p in (tmp_path / "remote.git.prs").glob("*.json")) == ["1.json"]

    # 4. without the key nothing needs it (everything unchanged); a propose that would run says why it cannot.
    fourth = ws.run("--force", "propose", key=False)
    assert fourth.returncode == 0, fourth.stderr
    assert "propose   skipped: no signing key" in fourth.stderr
    assert all(lines(fourth, s) == ["skipped: unchanged"] for s in STEP_NAMES[:-1])


def test_an_interrupted_train_continues_from_its_checkpoint(tmp_path: Path) -> None:
    ldos, tiny = tmp_path / "ldos", tiny_config(tmp_path)
    demo = REPO / "training/configs/demo.yaml"
    synth = edgeops("data", "synth", "--n", "1500", "--out", str(ldos), "--training-config", str(demo))
    assert synth.returncode == 0, synth.stderr
    args = ["pipeline", "run", "--run-dir", str(tmp_path / "r"), "--data-path", str(ldos),
            "--config", str(tiny), "--until", "train"]  # fmt: skip
    # training's own fault hook: a real SIGTERM to the training process after step 5 (it saves a checkpoint)
    first = edgeops(*args, env=clean_env(EDGEOPS_FAULT_SIGTERM_AT_STEP="5"))
    assert first.returncode == 143, first.stderr
    assert lines(first, "train")[1].startswith("was interrupted (exit 143)")
    state = json.loads((tmp_path / "r" / STATE_FILE).read_text())["steps"]
    assert state["train"]["status"] == "failed" and (tmp_path / "r" / "run" / "checkpoint").is_dir()
    second = edgeops(*args, env=clean_env())
    assert second.returncode == 0, second.stderr
    assert lines(second, "snapshot") == ["skipped: unchanged"]
    running = lines(second, "train")[0]
    assert "continuing from its checkpoint" in running and running.endswith("--resume")
    assert "resuming" in (tmp_path / "r" / "logs" / "train.log").read_text()
    assert json.loads((tmp_path / "r" / STATE_FILE).read_text())["steps"]["train"]["status"] == "ok"


def test_a_set_override_reruns_train_not_snapshot_and_the_run_records_the_effective_config(
    tmp_path: Path,
) -> None:
    from training.config import TrainingConfig, load_training_config

    ldos, tiny = tmp_path / "ldos", tiny_config(tmp_path)
    synth = edgeops("data", "synth", "--n", "1500", "--out", str(ldos),
                    "--training-config", str(REPO / "training/configs/demo.yaml"))  # fmt: skip
    assert synth.returncode == 0, synth.stderr
    args = ["pipeline", "run", "--run-dir", str(tmp_path / "r"), "--data-path", str(ldos),
            "--config", str(tiny), "--until", "train"]  # fmt: skip
    first = edgeops(*args, env=clean_env())
    assert first.returncode == 0, first.stderr
    second = edgeops(*args, "--set", "epochs=2", "--set", "early_stop_patience=0", env=clean_env())
    assert second.returncode == 0, second.stderr
    assert lines(second, "snapshot") == ["skipped: unchanged"]
    running = lines(second, "train")[0]
    assert running.startswith("running (inputs changed)")
    assert running.endswith("--set epochs=2 --set early_stop_patience=0")
    assert lines(edgeops(*args, "--set", "epochs=2", "--set", "early_stop_patience=0", env=clean_env()),
                 "train") == ["skipped: unchanged"]  # fmt: skip
    # run.json carries the effective config (demo.yaml over default.yaml, tiny.yaml, then --set), whole:
    # the run can be rebuilt without any of those files.
    run = json.loads((tmp_path / "r" / "run" / "run.json").read_text())
    expected = load_training_config(tiny, overrides=["epochs=2", "early_stop_patience=0"])
    assert run["config"] == expected.model_dump(mode="json")
    assert TrainingConfig.model_validate(run["config"]) == expected
    assert (run["epochs_run"], run["config"]["batch_size"]) == (2, 128)  # --set, and demo.yaml's batch
    refused = edgeops(*args, "--set", "epoch=2", env=clean_env())
    assert refused.returncode != 0 and "--set epoch=2: epoch: unknown key (did you mean 'epochs'?)" in (
        refused.stderr
    )


def test_overrides_reach_train_as_set_and_are_part_of_its_inputs(tmp_path: Path) -> None:
    """RunOptions.overrides: train runs `edgeops train ... --set K=V` and its inputs change with them, the
    snapshot's do not; and the inputs follow a config's base: file (its values, not its comments)."""
    from pipelines.runner import RunOptions, _canonical_hash, _context, _Plan, _plan_snapshot, _plan_train
    from tools.core.errors import ConfigError, EdgeopsError

    default = (REPO / "training/configs/default.yaml").read_text()
    base, delta = tmp_path / "base.yaml", tmp_path / "delta.yaml"
    base.write_text(default)
    delta.write_text("base: base.yaml\nepochs: 3\n")

    def plans(*overrides: str) -> tuple[str, str, list[str]]:
        ctx = _context(RunOptions(
            run_dir=tmp_path / "r", config=str(REPO / "edgeops.yaml"), training_config=str(delta),
            data_path=str(tmp_path / "ldos"), overrides=overrides,
        ))  # fmt: skip

        def digest(plan: _Plan) -> str:
            return _canonical_hash({"argv": [ctx.rel(a) for a in plan.argv], **plan.inputs})

        train = _plan_train(ctx)
        return digest(_plan_snapshot(ctx)), digest(train), train.argv

    snap, train, argv = plans()
    assert "--set" not in argv
    snap_set, train_set, argv_set = plans("epochs=5", "lr=0.001")
    assert argv_set[-4:] == ["--set", "epochs=5", "--set", "lr=0.001"]
    assert (snap_set, train_set != train) == (snap, True)
    assert plans("epochs=5", "lr=0.001")[1] == train_set  # the same overrides: unchanged
    base.write_text(default.replace("lr: 0.003 ", "lr: 0.002 "))  # the base file, not the delta
    snap_base, train_base, _ = plans()
    assert snap_base == snap and train_base != train
    base.write_text(default.replace("# AdamW peak", "# peak"))  # a comment only
    assert plans()[:2] == (snap, train)
    base.write_text(default.replace("window: 128 ", "window: 64 "))
    assert plans()[0] != snap
    with pytest.raises(ConfigError, match=r"--set epoch=5: epoch: unknown key \(did you mean 'epochs'\?\)"):
        plans("epoch=5")
    with pytest.raises(EdgeopsError, match="--set window=64: the snapshot step reads this key too"):
        plans("window=64")


def test_publish_without_a_signing_key_stops_before_running_anything(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = edgeops(
        "pipeline", "run", "--run-dir", str(run_dir), "--data-path", str(tmp_path),
        "--config", str(REPO / "training/configs/demo.yaml"), env=clean_env(),
    )  # fmt: skip
    assert result.returncode == 1
    assert "publish signs the bundle and needs the release-signing key" in result.stderr
    assert "--until export" in result.stderr
    assert not (run_dir / "snapshot").exists() and not (run_dir / STATE_FILE).exists()


def test_step_selection_is_checked(tmp_path: Path) -> None:
    base = [
        "pipeline",
        "run",
        "--run-dir",
        str(tmp_path / "r"),
        "--config",
        str(REPO / "training/configs/demo.yaml"),
    ]
    unknown = edgeops(*base, "--until", "deploy", env=clean_env())
    assert (
        unknown.returncode == 1 and "--until deploy: no such step; steps: snapshot, train" in unknown.stderr
    )
    both = edgeops(*base, "--until", "train", "--only", "train", env=clean_env())
    assert both.returncode == 1 and "--only and --until do not combine" in both.stderr
    orphan = edgeops(*base, "--only", "export", env=clean_env())
    assert (
        orphan.returncode == 1 and "export needs" in orphan.stderr and "(made by snapshot)" in orphan.stderr
    )


def test_the_help_names_every_step() -> None:
    result = edgeops("pipeline", "run", "--help")
    assert result.returncode == 0
    assert ", ".join(STEP_NAMES) in " ".join(result.stdout.split())


def test_digest_follows_content_not_timestamps(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.bin").write_bytes(b"a")
    (tree / "sub" / "b.bin").write_bytes(b"b")
    first = digest_path(tree)
    os.utime(tree / "a.bin", (1, 1))
    assert digest_path(tree) == first
    (tree / "sub" / "b.bin").rename(tree / "sub" / "c.bin")
    assert digest_path(tree) != first
    assert digest_path(tmp_path / "missing") is None
    assert digest_path(tree / "a.bin") != digest_path(tree / "sub" / "c.bin")


# --- the Argo YAML ------------------------------------------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = YAML(typ="safe").load((ARGO_DIR / name).read_text())
    return doc


def test_the_committed_yaml_is_a_fresh_render(tmp_path: Path) -> None:
    for name, text in render().items():
        assert (ARGO_DIR / name).read_text() == text, f"{name} is stale: run `edgeops pipeline render`"
    assert render() == render()  # deterministic
    check = edgeops("pipeline", "render", "--check")
    assert check.returncode == 0 and "up to date" in check.stdout, check.stderr
    stale = tmp_path / "argo"
    stale.mkdir()
    (stale / TEMPLATE_FILE).write_text(
        (ARGO_DIR / TEMPLATE_FILE).read_text().replace("limit: '3'", "limit: '9'")
    )
    (stale / CRON_FILE).write_text((ARGO_DIR / CRON_FILE).read_text())
    check = edgeops("pipeline", "render", "--out", str(stale), "--check")
    assert check.returncode == 1 and f"OUT OF DATE {stale / TEMPLATE_FILE}" in check.stdout
    assert "OUT OF DATE" not in check.stdout.replace(f"OUT OF DATE {stale / TEMPLATE_FILE}", "")
    written = edgeops("pipeline", "render", "--out", str(stale))
    assert written.returncode == 0 and (stale / TEMPLATE_FILE).read_text() == render()[TEMPLATE_FILE]


def test_the_yaml_validates_against_the_upstream_argo_crds(
    crds: dict[tuple[str, str], dict[str, Any]],
) -> None:
    template, cron = load(TEMPLATE_FILE), load(CRON_FILE)
    assert validate_object(template, crds) == []
    assert validate_object(cron, crds) == []
    # The check has teeth: Argo Workflows v4 dropped `schedule` for `schedules`, and fields are strict.
    cron["spec"]["schedule"] = cron["spec"].pop("schedules")[0]
    assert any("schedule" in p for p in validate_object(cron, crds))
    template["spec"]["templates"][0]["container"]["gpus"] = 1
    assert any("gpus" in p for p in validate_object(template, crds))


def test_hera_round_trips_the_yaml() -> None:
    from hera.workflows import CronWorkflow, WorkflowTemplate

    for name, cls in ((TEMPLATE_FILE, WorkflowTemplate), (CRON_FILE, CronWorkflow)):
        text = (ARGO_DIR / name).read_text()
        body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
        loaded = cls.from_yaml(body)
        assert loaded.to_yaml() == body, name
        assert cls.from_dict(YAML(typ="safe").load(body)).to_dict() == YAML(typ="safe").load(body)


def test_the_template_runs_each_step_where_it_belongs() -> None:
    spec = load(TEMPLATE_FILE)["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    (dag,) = [t for t in spec["templates"] if "dag" in t]
    tasks = {t["name"]: t for t in dag["dag"]["tasks"]}
    assert list(tasks) == list(STEP_NAMES)
    keys = set()
    for i, step in enumerate(STEPS):
        t = templates[step.name]
        container = t["container"]
        assert container["image"].startswith("ghcr.io/") and ":latest" not in container["image"]
        assert container["command"][:2] == ["sh", "-c"] and container["command"][3] == "edgeops"
        assert container["command"][2].endswith('exec python -m tools.cli "$@"')  # the revision's code
        (git_input,) = [a for a in t["inputs"]["artifacts"] if "git" in a]
        assert git_input["git"]["sshPrivateKeySecret"] == {"name": "edgeops-pipeline", "key": "git-ssh-key"}
        assert "passwordSecret" not in git_input["git"] and "insecureIgnoreHostKey" not in git_input["git"]
        assert container["args"][:6] == ["pipeline", "run", "--run-dir", "/work/run-dir", "--only", step.name]
        resources = container["resources"]
        gpu = {k: v.get("nvidia.com/gpu") for k, v in resources.items()}
        if step.gpu:
            assert gpu == {"limits": "1", "requests": "1"}, step.name
            assert t["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert t["tolerations"][0]["key"] == "nvidia.com/gpu"
        else:
            assert gpu == {"limits": None, "requests": None} and "nodeSelector" not in t, step.name
        assert ("retryStrategy" in t) == step.transient, step.name
        assert step.transient == (step.name in ("snapshot", "publish", "propose"))
        (out,) = t["outputs"]["artifacts"]
        assert out["name"] == "run-dir" and out["path"] == "/work/run-dir" and set(out["s3"]) == {"key"}
        keys.add(out["s3"]["key"])
        task = tasks[step.name]
        if i == 0:
            assert "depends" not in task and "arguments" not in task
        else:
            previous = STEPS[i - 1].name
            assert task["depends"] == previous
            assert task["arguments"]["artifacts"] == [
                {"name": "run-dir", "from": f"{{{{tasks.{previous}.outputs.artifacts.run-dir}}}}"}
            ]
        secret_refs = [e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])]
        assert all(ref["name"] == "edgeops-pipeline" for ref in secret_refs)
    assert len(keys) == len(STEPS)  # each step's run directory is kept under its own key
    assert "when" in tasks["propose"] and spec["securityContext"]["runAsNonRoot"] is True
    # go-git checks the deploy key's server against the init container's /etc/ssh/ssh_known_hosts.
    assert "mountPath: /etc/ssh/ssh_known_hosts" in spec["podSpecPatch"]
    assert "name: edgeops-ssh-known-hosts" in spec["podSpecPatch"]
    propose_env = {e["name"] for e in templates["propose"]["container"]["env"]}
    assert {"EDGEOPS_GITHUB_APP_ID", "EDGEOPS_GITHUB_APP_PRIVATE_KEY"} <= propose_env
    assert "GITHUB_TOKEN" not in propose_env  # a token stored at submission is dead before propose runs
    cron = load(CRON_FILE)["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["workflowSpec"] == {"workflowTemplateRef": {"name": TEMPLATE_NAME}}
    (schedule,) = cron["schedules"]
    minute, hour, day, month, weekday = schedule.split()
    assert (day, month, weekday) == ("1", "*", "*") and minute.isdigit() and hour.isdigit()  # monthly


def test_a_task_runs_the_code_of_its_checkout_on_the_images_dependencies(tmp_path: Path) -> None:
    """The container command of the rendered template, run in a checkout: the checkout's own code answers
    (not the image's installed copy), and a checkout whose requirements.lock is not the image's stops."""
    spec = load(TEMPLATE_FILE)["spec"]
    (train,) = [t for t in spec["templates"] if t["name"] == "train"]
    command = train["container"]["command"]
    checkout = copy_project(tmp_path / "repo")
    cli = checkout / "tools" / "cli" / "__init__.py"
    cli.write_text(cli.read_text().replace("the GitOps way.", "the GitOps way (revision under test)."))
    image_lock = tmp_path / "image.lock"
    image_lock.write_bytes((REPO / "requirements.lock").read_bytes())
    env = {
        **clean_env(),
        "EDGEOPS_IMAGE_LOCK": str(image_lock),
        "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
    }
    ran = subprocess.run(
        [*command, "--help"], cwd=checkout, env=env, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert "the GitOps way (revision under test)." in ran.stdout
    image_lock.write_text("numpy==1.0\n")
    stopped = subprocess.run(
        [*command, "--help"], cwd=checkout, env=env, capture_output=True, text=True, check=False
    )
    assert stopped.returncode == 3 and "requirements.lock differs from the image's" in stopped.stderr


# --- submission ---------------------------------------------------------------------------------------------


@pytest.fixture
def argo() -> Iterator[FakeArgoServer]:
    server = FakeArgoServer(token=TOKEN).start()
    yield server
    server.stop()


def submit(argo: FakeArgoServer, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    return edgeops("pipeline", "submit", "--server", argo.url, "--namespace", "ml", *args,
                   env=clean_env(ARGO_TOKEN=token))  # fmt: skip


def test_submit_creates_then_updates_and_runs(argo: FakeArgoServer) -> None:
    first = submit(argo, "--cron")
    assert first.returncode == 0, first.stderr
    assert f"WorkflowTemplate {TEMPLATE_NAME} created" in first.stdout
    assert f"CronWorkflow {CRON_NAME} created" in first.stdout
    # What the server got is what is committed (plus the namespace).
    sent = argo.objects[("WorkflowTemplate", "ml", TEMPLATE_NAME)]
    committed = load(TEMPLATE_FILE)
    assert sent["spec"] == committed["spec"]
    assert {k: v for k, v in sent["metadata"].items() if k in committed["metadata"]} == committed["metadata"]
    assert argo.objects[("CronWorkflow", "ml", CRON_NAME)]["spec"] == load(CRON_FILE)["spec"]

    # Again: 409 AlreadyExists, then GET (the resourceVersion) and PUT with it, for both objects.
    before = len(argo.requests)
    version = sent["metadata"]["resourceVersion"]
    second = submit(argo, "--cron")
    assert second.returncode == 0, second.stderr
    assert re.search(rf"WorkflowTemplate {TEMPLATE_NAME} updated \(resourceVersion \d+\)", second.stdout)
    assert f"CronWorkflow {CRON_NAME} updated" in second.stdout
    calls = [(r.method, r.path) for r in argo.requests[before:]]
    assert calls[:3] == [
        ("POST", "/api/v1/workflow-templates/ml"),
        ("GET", f"/api/v1/workflow-templates/ml/{TEMPLATE_NAME}"),
        ("PUT", f"/api/v1/workflow-templates/ml/{TEMPLATE_NAME}"),
    ]
    put = argo.requests[before + 2].body["template"]
    assert put["metadata"]["resourceVersion"] == version
    assert argo.objects[("WorkflowTemplate", "ml", TEMPLATE_NAME)]["metadata"]["resourceVersion"] != version

    # --run: a Workflow from the template, with a parameter.
    third = submit(argo, "--run", "--param", "revision=v2026.11")
    assert third.returncode == 0, third.stderr
    (workflow,) = [o for (kind, _, _), o in argo.objects.items() if kind == "Workflow"]
    name = workflow["metadata"]["name"]
    assert re.fullmatch(rf"{TEMPLATE_NAME}-[0-9a-f]{{5}}", name)
    assert workflow["spec"]["arguments"]["parameters"] == [{"name": "revision", "value": "v2026.11"}]
    assert f"Workflow {name} submitted" in third.stdout and f"/workflows/ml/{name}" in third.stdout

    assert all(r.authorization == f"Bearer {TOKEN}" for r in argo.requests)
    for result in (first, second, third):
        assert TOKEN not in result.stdout + result.stderr


def test_submit_reports_a_refused_token_and_an_unreachable_server(argo: FakeArgoServer) -> None:
    refused = submit(argo, token="wrong-token-9b1e")
    assert refused.returncode == 1
    assert "refused the token (401)" in refused.stderr and "ARGO_TOKEN" in refused.stderr
    assert "wrong-token-9b1e" not in refused.stdout + refused.stderr
    assert argo.objects == {}
    bad_param = submit(argo, "--run", "--param", "colour=blue")
    assert bad_param.returncode == 1 and "--param colour=blue: expected NAME=VALUE" in bad_param.stderr
    url = argo.url
    argo.stop()
    down = edgeops("pipeline", "submit", "--server", url, env=clean_env(ARGO_TOKEN=TOKEN))
    assert down.returncode == 1 and f"cannot reach Argo Server at {url}/" in down.stderr


# --- images -------------------------------------------------------------------------------------------------


def dockerfile(path: Path) -> tuple[list[str], list[str], str]:
    text = path.read_text()
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    froms = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    (entrypoint,) = [line for line in instructions if line.startswith("ENTRYPOINT ")]
    return froms, users, entrypoint


@pytest.mark.parametrize(
    ("path", "base", "entrypoint"),
    [
        ("training/Dockerfile", r"nvcr\.io/nvidia/pytorch:\d\d\.\d\d-py3", '["edgeops"]'),
        ("tools/edge/Dockerfile", r"python:3\.11\.\d+-slim-\w+", '["edgeops", "updater", "run"]'),
    ],
)
def test_images_pin_their_base_and_run_as_non_root(path: str, base: str, entrypoint: str) -> None:
    froms, users, ep = dockerfile(REPO / path)
    assert froms, path
    for image in froms:
        assert re.fullmatch(base + r"(@sha256:[0-9a-f]{64})?", image), image  # an exact tag, or tag + digest
        assert ":latest" not in image
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert ep == f"ENTRYPOINT {entrypoint}"
    text = (REPO / path).read_text()
    assert "requirements.lock" in text
    if path.startswith("tools/"):  # the delivery side: the base dependencies only, never torch
        commands = " ".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert "training" not in commands and "torch" not in commands
