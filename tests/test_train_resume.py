"""train.yml's local engine as a runner executes it: the "Run folder and LDO cache" step and the phases of
.github/scripts/train-phase.sh, against real PostgreSQL and an S3 API server. A job killed during `train`
and re-run (same run id, a new attempt) resumes at `train`, with the snapshot kept; next month's run
downloads only the LDOs that are new, because the cache lives outside the checkout."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ruamel.yaml import YAML

from tests.conftest import REPO, copy_project
from tests.test_pipeline import lines, tiny_config
from tools.kits.devservices import S3Endpoint
from training.config import load_training_config
from training.data.seed import seed
from training.data.synth import write_dataset

SPEC = load_training_config(REPO / "training/configs/demo.yaml").data_spec()


def step_script(name: str) -> str:
    workflow = YAML(typ="safe").load((REPO / ".github/workflows/train.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["train"]["steps"] if s.get("name") == name]
    return str(step["run"])


class Runner:
    """A self-hosted runner's view: a fresh checkout per job (checkout cleans it), a home that persists."""

    def __init__(self, tmp: Path, s3: S3Endpoint, dsn: str, bucket: str) -> None:
        self.tmp, self.home = tmp, tmp / "home"
        self.home.mkdir()
        self.base = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEOPS_", "AWS_", "GITHUB_"))}
        self.s3, self.dsn, self.bucket = s3, dsn, bucket
        self.config = tiny_config(tmp)

    def job(self, run_id: int, attempt: int) -> dict[str, str]:
        """A job's start: a fresh checkout, then the "Run folder and LDO cache" step; its GITHUB_ENV."""
        work = self.tmp / f"work-{run_id}-{attempt}"
        copy_project(work, installed=True)
        text = (
            (work / "edgeops.yaml")
            .read_text()
            .replace("s3://context-edge-ldos/ldos", f"s3://{self.bucket}/ldos")
        )
        (work / "edgeops.yaml").write_text(text)
        github_env = self.tmp / f"github-env-{run_id}-{attempt}"
        # The runner's kept folder (the job's container mounts /var/lib/edgeops-runner; here, a temp one).
        env = {**self.base, "HOME": str(self.home), "GITHUB_ENV": str(github_env),
               "GITHUB_RUN_ID": str(run_id), "GITHUB_RUN_ATTEMPT": str(attempt),
               "EDGEOPS_RUNNER_STATE": str(self.home / "edgeops-runner")}  # fmt: skip
        script = step_script("Run folder and LDO cache (kept by the runner)")
        subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=work, env=env, check=True)
        exported = dict(line.split("=", 1) for line in github_env.read_text().splitlines())
        return {**env, **exported, "WORK": str(work)}

    def phase(self, job: dict[str, str], phase: str, **extra: str) -> subprocess.CompletedProcess[str]:
        # The training image's Python and libraries are this venv's; its lock, this checkout's.
        env = {**{k: v for k, v in job.items() if k != "WORK"}, "CONFIG": str(self.config), "SAMPLES": "",
               "EPOCHS": "", "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
               "EDGEOPS_IMAGE_LOCK": str(REPO / "requirements.lock"), **extra}  # fmt: skip
        if phase == "snapshot":  # the Snapshot step's secrets: the read DSN, the store's credentials
            env |= {"EDGEOPS_PG_DSN": self.dsn, **self.s3.env()}
        return subprocess.run([".github/scripts/train-phase.sh", phase], cwd=job["WORK"], env=env,
                              capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


def test_a_killed_job_rerun_resumes_at_train_and_next_month_downloads_only_new_ldos(
    tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str, pg_dsn: str
) -> None:
    ldos = tmp_path / "ldos"
    write_dataset(ldos, 600, 5, SPEC)
    seed(ldos, SPEC, dsn=pg_dsn, s3_uri=f"s3://{s3_bucket}/ldos", workers=8)
    runner = Runner(tmp_path, s3_env, pg_dsn, s3_bucket)

    job = runner.job(run_id=41, attempt=1)
    assert job["RUN_DIR"] == str(runner.home / "edgeops-runner" / "runs" / "41")
    snap = runner.phase(job, "snapshot")
    assert snap.returncode == 0, snap.stderr
    fetched = json.loads((Path(job["RUN_DIR"]) / "snapshot" / "snapshot.json").read_text())
    rows = fetched["counts"]["rows"]
    # The job dies during training (a real SIGTERM to the training process after step 5, as when the
    # runner's job is cancelled); the training phase holds no secret at all.
    killed = runner.phase(job, "train", EDGEOPS_FAULT_SIGTERM_AT_STEP="5")
    assert killed.returncode == 143, killed.stderr

    # "Re-run failed jobs": the same run id, attempt 2, a fresh checkout; the run folder is where it was.
    again = runner.job(run_id=41, attempt=2)
    assert again["RUN_DIR"] == job["RUN_DIR"] and again["WORK"] != job["WORK"]
    resnap = runner.phase(again, "snapshot")
    assert resnap.returncode == 0, resnap.stderr
    assert lines(resnap, "snapshot") == ["skipped: unchanged"]
    resumed = runner.phase(again, "train")
    assert resumed.returncode == 0, resumed.stderr
    assert lines(resumed, "snapshot") == ["skipped: unchanged"]
    assert "continuing from its checkpoint" in lines(resumed, "train")[0]
    state = json.loads((Path(job["RUN_DIR"]) / "pipeline-state.json").read_text())["steps"]
    assert state["train"]["status"] == "ok" and "evaluate" not in state

    # Next month (a new run id): 60 new LDOs arrive; the snapshot fetches those and takes the rest from the
    # cache the runner kept.
    write_dataset(ldos, 60, 5, SPEC, first=600)
    seed(ldos, SPEC, dsn=pg_dsn, s3_uri=f"s3://{s3_bucket}/ldos", workers=8)
    month = runner.job(run_id=57, attempt=1)
    assert month["LDO_CACHE"] == job["LDO_CACHE"]
    snap2 = runner.phase(month, "snapshot")
    assert snap2.returncode == 0, snap2.stderr
    log = (Path(month["RUN_DIR"]) / "logs" / "snapshot.log").read_text()
    new_rows = json.loads((Path(month["RUN_DIR"]) / "snapshot" / "snapshot.json").read_text())["counts"][
        "rows"
    ]
    assert 0 < new_rows - rows <= 60
    assert f"{new_rows - rows} fetched" in log and f"{rows} from cache" in log, log[-2000:]
