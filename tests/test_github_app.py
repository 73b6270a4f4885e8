"""The release PR's push as a GitHub App over real git HTTP: the forge mints its installation token itself,
at the moment it needs one, so a run that lasts longer than a token (one hour) still pushes. Against
tests/githubfake.py, a fake of GitHub's REST API whose installation tokens expire after one hour of its
clock and whose git endpoint (``git http-backend``) wants one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EDGEOPS
from tests.githubfake import FakeGitHub
from tests.releasekit import git, keys, make_checkout, publish

REPOSITORY = "context-edge/edgeops"


def cli(work: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEOPS_", "GITHUB_"))}
    return subprocess.run([EDGEOPS, *args], cwd=work, env={**base, **env}, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


@pytest.fixture
def world(tmp_path: Path, git_remote: Path) -> object:
    k = keys()
    store = f"file://{tmp_path / 'store'}"
    work = make_checkout(tmp_path, git_remote, k, store=store)
    text = (work / "edgeops.yaml").read_text()
    text = text.replace("  kind: local ", "  kind: github").replace(
        "  repository: null", f"  repository: {REPOSITORY}"
    )
    (work / "edgeops.yaml").write_text(text)
    git(work, "commit", "--quiet", "-am", "forge: github")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    fake = FakeGitHub(git_remote, repository=REPOSITORY).start()
    try:
        # The checkout talks to the fake's git endpoint, as a clone of github.com would; it holds no token.
        git(work, "remote", "set-url", "origin", fake.git_url)
        yield {"work": work, "fake": fake, "keys": k, "v10": publish(store, "v1.0", k)}
    finally:
        fake.stop()


def test_a_token_from_the_start_of_a_long_run_is_refused_but_the_app_mints_its_own(world: dict) -> None:
    work, fake, k = world["work"], world["fake"], world["keys"]
    key_pem = fake.enable_app(app_id="1048576")
    signing = {"EDGEOPS_SIGNING_KEY": k.private_pem.decode(), "GITHUB_API_URL": fake.base_url}

    # Without credentials git is refused (401), as github.com refuses a private repository.
    anonymous = subprocess.run(
        ["git", "-C", str(work), "fetch", "--quiet", "origin"],
        capture_output=True, text=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, check=False,
    )  # fmt: skip
    assert anonymous.returncode != 0

    # A token minted when the run started (what a Secret filled at submission holds) is dead five hours on.
    import github

    app_auth = github.Auth.AppAuth("1048576", key_pem)
    integration = github.GithubIntegration(auth=app_auth, base_url=fake.base_url)
    stale = integration.get_access_token(integration.get_repo_installation(*REPOSITORY.split("/")).id).token
    fake.advance(hours=5)
    dead = cli(
        work, "propose", "--ring", "pilot", "--bundle", world["v10"], env={**signing, "GITHUB_TOKEN": stale}
    )
    assert dead.returncode == 1 and "Traceback" not in dead.stderr
    assert "The remote refused git's credentials" in dead.stderr and "token expired" in dead.stderr
    assert stale not in dead.stdout + dead.stderr

    # The App's key instead: propose mints a token now, fetches and pushes through git HTTP with it as a
    # header in git's environment, and opens the PR.
    app = {**signing, "EDGEOPS_GITHUB_APP_ID": "1048576", "EDGEOPS_GITHUB_APP_PRIVATE_KEY": key_pem}
    opened = cli(work, "propose", "--ring", "pilot", "--bundle", world["v10"], env=app)
    assert opened.returncode == 0, opened.stderr
    assert "PR #1" in opened.stdout and "branch release/pilot/v1.0 (pushed)" in opened.stdout
    assert fake.pulls[1].head == "release/pilot/v1.0"
    pushes = fake.calls("POST", rf"/{REPOSITORY}\.git/git-receive-pack")
    assert pushes and all(c.status == 200 for c in pushes)
    assert fake.calls("POST", r"/app/installations/\d+/access_tokens")
    minted = set(fake.minted) - {stale}
    text = opened.stdout + opened.stderr + (work / ".git" / "config").read_text()
    assert not any(token in text for token in minted) and "PRIVATE KEY" not in opened.stdout + opened.stderr

    # Hours later (a guard run, a second month) the same key still works: a new token each time.
    fake.advance(hours=3)
    again = cli(work, "propose", "--ring", "pilot", "--bundle", world["v10"], env=app)
    assert again.returncode == 0 and "(already up to date)" in again.stdout, again.stderr
    assert len(set(fake.minted) - {stale}) > len(minted)


def test_app_settings_are_checked(world: dict, tmp_path: Path) -> None:
    work, fake = world["work"], world["fake"]
    fake.enable_app(app_id="1048576")
    base = {"GITHUB_API_URL": fake.base_url, "EDGEOPS_SIGNING_KEY": world["keys"].private_pem.decode()}
    no_id = cli(
        work, "propose", "--bundle", world["v10"], env={**base, "EDGEOPS_GITHUB_APP_PRIVATE_KEY": "x"}
    )
    assert no_id.returncode == 1 and "EDGEOPS_GITHUB_APP_ID is not" in no_id.stderr
    wrong = cli(work, "propose", "--bundle", world["v10"],
                env={**base, "EDGEOPS_GITHUB_APP_ID": "1048576",
                     "EDGEOPS_GITHUB_APP_PRIVATE_KEY_FILE": str(tmp_path / "missing.pem")})  # fmt: skip
    assert wrong.returncode == 1 and "missing.pem" in wrong.stderr and "Traceback" not in wrong.stderr
    other = FakeGitHub(world["fake"].git_dir, repository=REPOSITORY)
    other_key = other.enable_app(app_id="1048576")  # a key GitHub does not know for this App
    unknown = {**base, "EDGEOPS_GITHUB_APP_ID": "1048576", "EDGEOPS_GITHUB_APP_PRIVATE_KEY": other_key}
    refused = cli(work, "propose", "--bundle", world["v10"], env=unknown)
    assert refused.returncode == 1 and "could not find its installation" in refused.stderr
    assert "Traceback" not in refused.stderr
