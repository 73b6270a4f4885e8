"""GitHubForge (tools/gitops/github.py) through the real PyGithub, over HTTP, against FakeGitHub.

FakeGitHub (tests/githubfake.py) is a fake of GitHub's REST API, not GitHub: an in-process HTTP server that
follows GitHub's documented semantics for the pull-request endpoints, including pagination by Link headers
and the 422 for a second open PR, backed by a real bare git repository, so branches are really pushed and
merges are real merge commits.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.githubfake import FakeGitHub
from tests.releasekit import git
from tools.core.errors import ServiceError
from tools.gitops.forge import ForgeError, comment_marker
from tools.gitops.github import GitHubForge

HEAD = "release/pilot/v1.0"
UNPACED: dict[str, Any] = {"seconds_between_requests": None, "seconds_between_writes": None}


@pytest.fixture
def work(git_remote: Path, tmp_path: Path) -> Path:
    """A clone of the bare repository, with ``main`` pushed."""
    clone = tmp_path / "work"
    git(tmp_path, "clone", "--quiet", str(git_remote), str(clone))
    git(clone, "config", "user.name", "edgeops tests")
    git(clone, "config", "user.email", "tests@edgeops.invalid")
    (clone / "release.yaml").write_text("version: null\n")
    git(clone, "add", ".")
    git(clone, "commit", "--quiet", "-m", "initial")
    git(clone, "push", "--quiet", "origin", "HEAD:main")
    return clone


def push_branch(work: Path, branch: str, content: str, *, start: str = "main") -> None:
    git(work, "fetch", "--quiet", "origin")
    git(work, "checkout", "--quiet", "-B", branch, f"origin/{start}")
    (work / "release.yaml").write_text(content)
    git(work, "commit", "--quiet", "-am", f"{branch}: {content.strip()}")
    git(work, "push", "--quiet", "--force", "origin", f"HEAD:{branch}")


@pytest.fixture
def fake(git_remote: Path, work: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub(git_remote, repository="acme/edgeops-releases") as server:
        yield server
    assert server.errors == []  # no exception inside the fake itself


def make_forge(
    fake: FakeGitHub, *, repository: str | None = None, token: str | None = None, per_page: int = 100
) -> GitHubForge:
    """A forge on the fake, without PyGithub's pacing between requests (0.25 s, 1 s between writes)."""
    return GitHubForge(repository or fake.full_name, token=token or fake.token, base_url=fake.base_url,
                       per_page=per_page, **UNPACED)  # fmt: skip


def raw_request(fake: FakeGitHub, method: str, path: str, body: Any = None) -> tuple[int, str | None, Any]:
    """One request to the fake without PyGithub: (status, Link header, JSON body)."""
    url = urllib.parse.urlsplit(fake.base_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    headers = {"Authorization": f"Bearer {fake.token}", "Content-Type": "application/json"}
    try:
        connection.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Link"), json.loads(response.read() or b"null")
    finally:
        connection.close()


@pytest.fixture
def forge(fake: FakeGitHub) -> Iterator[GitHubForge]:
    """GitHub's default page size (30), so that 31 items already make two pages."""
    with make_forge(fake, per_page=30) as client:
        yield client


# --- one PR per head ---------------------------------------------------------------------------------------


def test_opening_twice_updates_the_one_pr(fake: FakeGitHub, forge: GitHubForge, work: Path) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    first = forge.open_or_update_pr(head=HEAD, base="main", title="pilot: model v1.0", body="first body",
                                    labels=["model-release"], reviewers=["alice"])  # fmt: skip
    second = forge.open_or_update_pr(head=HEAD, base="main", title="pilot: model v1.0 (rerun)",
                                     body="second body", labels=["ring:pilot"])  # fmt: skip
    assert first.number == second.number == 1
    assert list(fake.pulls) == [1] and len(fake.calls("POST", r"/repos/acme/edgeops-releases/pulls")) == 1
    assert fake.calls("PATCH", r"/repos/acme/edgeops-releases/pulls/1")  # the second call edited it
    pr = forge.get_pr(1)
    assert (pr.title, pr.body, pr.state) == ("pilot: model v1.0 (rerun)", "second body", "open")
    assert pr.labels == ["model-release", "ring:pilot"] and pr.reviewers == ["alice"]
    assert pr.head == HEAD and pr.base == "main"
    assert pr.url == f"{fake.base_url}/acme/edgeops-releases/pull/1"
    assert pr.created_at.endswith("+00:00") and pr.updated_at >= pr.created_at
    found = forge.find_open_pr(HEAD)
    assert found is not None and found.number == 1 and forge.find_open_pr("release/other") is None


def test_a_concurrent_open_gets_github_422_and_the_existing_pr_is_updated(
    fake: FakeGitHub, forge: GitHubForge, work: Path
) -> None:
    """Another run opens the PR between our lookup and our create: GitHub answers 422, we update its PR."""
    push_branch(work, HEAD, "version: v1.0\n")

    def other_run_first(method: str, path: str) -> None:
        if method == "POST" and path.endswith("/pulls") and not fake.pulls:
            fake.open_pull(HEAD, "main", title="opened by the other run")

    fake.on_request = other_run_first
    pr = forge.open_or_update_pr(head=HEAD, base="main", title="pilot: model v1.0", body="ours",
                                 labels=["model-release"])  # fmt: skip
    refused = fake.calls("POST", r"/repos/acme/edgeops-releases/pulls")
    assert [r.status for r in refused] == [422]
    assert refused[0].message == (
        "Validation Failed: A pull request already exists for acme:release/pilot/v1.0."
    )  # fmt: skip
    assert pr.number == 1 and list(fake.pulls) == [1]
    assert (fake.pulls[1].title, fake.pulls[1].body, fake.pulls[1].labels) == (
        "pilot: model v1.0", "ours", ["model-release"]
    )  # fmt: skip


def test_github_itself_refuses_a_second_open_pr_for_the_same_head_and_base(
    fake: FakeGitHub, work: Path
) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    fake.open_pull(HEAD, "main")
    again = {"head": HEAD, "base": "main", "title": "again"}
    status, _, body = raw_request(fake, "POST", "/repos/acme/edgeops-releases/pulls", again)
    assert status == 422 and body["message"] == "Validation Failed"
    message = "A pull request already exists for acme:release/pilot/v1.0."
    assert body["errors"] == [{"resource": "PullRequest", "code": "custom", "message": message}]
    assert list(fake.pulls) == [1]


def test_a_new_base_moves_the_open_pr_instead_of_opening_a_second(
    fake: FakeGitHub, forge: GitHubForge, work: Path
) -> None:
    """GitHub would accept a second PR for the same head into another base: the forge edits the one PR."""
    push_branch(work, "stable", "version: stable\n")
    push_branch(work, HEAD, "version: v1.0\n")
    forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b")
    moved = forge.open_or_update_pr(head=HEAD, base="stable", title="t", body="b")
    assert moved.number == 1 and moved.base == "stable" and list(fake.pulls) == [1]
    assert fake.pulls[1].base == "stable"
    assert fake.pulls[1].base_sha == git(work, "rev-parse", "origin/stable")


def test_labels_and_reviewers_users_and_teams_are_applied(
    fake: FakeGitHub, forge: GitHubForge, work: Path
) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    pr = forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b",
                                 labels=["model-release", "ring:pilot"],
                                 reviewers=["alice", "acme/ml-platform"])  # fmt: skip
    assert pr.labels == ["model-release", "ring:pilot"]
    assert pr.reviewers == ["acme/ml-platform", "alice"]
    pull = fake.pulls[pr.number]
    assert pull.labels == ["model-release", "ring:pilot"]
    assert pull.requested_reviewers == ["alice"] and pull.requested_teams == ["ml-platform"]
    # Nothing new to add: no label or review-request write the second time.
    writes = len(fake.calls("POST"))
    again = forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b", labels=["ring:pilot"],
                                    reviewers=["alice"])  # fmt: skip
    assert len(fake.calls("POST")) == writes and again.reviewers == pr.reviewers
    with pytest.raises(ForgeError, match="not a team of acme"):
        forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b", reviewers=["other-org/team"])
    with pytest.raises(ForgeError, match="Review cannot be requested from pull request author"):
        forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b", reviewers=[fake.user])


def test_a_pr_for_a_branch_that_was_not_pushed_is_refused(fake: FakeGitHub, forge: GitHubForge) -> None:
    with pytest.raises(ForgeError, match=r"HTTP 422\): Validation Failed: PullRequest head invalid"):
        forge.open_or_update_pr(head="release/never-pushed", base="main", title="t", body="b")
    assert fake.pulls == {}


# --- the bot's comment -------------------------------------------------------------------------------------


def test_the_marker_comment_on_page_two_is_edited_not_duplicated(
    fake: FakeGitHub, forge: GitHubForge, work: Path
) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    pr = forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b")
    for i in range(32):
        fake.add_comment(pr.number, f"looks good {i}")
    forge.upsert_comment(pr.number, "telemetry", "accuracy 0.90")  # the 33rd comment: on page 2 of 30
    for i in range(3):
        fake.add_comment(pr.number, f"more {i}")
    before = len(fake.log)
    forge.upsert_comment(pr.number, "telemetry", "accuracy 0.95")
    forge.upsert_comment(pr.number, "other", "something else")

    bodies = [c.body for c in sorted(fake.comments.values(), key=lambda c: c.id)]
    marker = comment_marker("telemetry")
    assert len(bodies) == 37
    assert [b for b in bodies if b.startswith(marker)] == [f"{marker}\naccuracy 0.95"]
    assert bodies.index(f"{marker}\naccuracy 0.95") == 32  # still the 33rd: edited in place
    assert bodies[-1] == f"{comment_marker('other')}\nsomething else"
    pages = [r for r in fake.log[before:] if r.method == "GET" and r.path.endswith("/issues/1/comments")]
    assert [r.query.get("page") for r in pages] == [None, "2", None, "2"]  # followed GitHub's Link headers
    assert pages[1].path == f"/repositories/{fake.repo_id}/issues/1/comments"
    assert len(fake.calls("PATCH", r"/repos/acme/edgeops-releases/issues/comments/\d+")) == 1
    assert len(fake.calls("POST", r".*/issues/1/comments")) == 2
    assert forge.get_pr(pr.number).comments == bodies


def test_the_default_page_size_is_githubs_maximum(fake: FakeGitHub, work: Path) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    number = fake.open_pull(HEAD).number
    for i in range(130):
        fake.add_comment(number, f"{comment_marker('telemetry')}\nold" if i == 120 else f"comment {i}")
    with make_forge(fake) as forge:
        forge.upsert_comment(number, "telemetry", "new")
    pages = fake.calls("GET", r".*/issues/1/comments")
    assert [(r.query.get("per_page"), r.query.get("page")) for r in pages] == [("100", None), ("100", "2")]
    assert sum(c.body.startswith(comment_marker("telemetry")) for c in fake.comments.values()) == 1
    assert fake.comments[1_000_001 + 120].body == f"{comment_marker('telemetry')}\nnew"


# --- listing -----------------------------------------------------------------------------------------------


def test_list_prs_reads_every_page_and_maps_github_states(
    fake: FakeGitHub, forge: GitHubForge, work: Path
) -> None:
    git(work, "checkout", "--quiet", "main")
    for i in range(35):  # 35 branches, one push
        git(work, "checkout", "--quiet", "-B", f"release/r{i}", "main")
        (work / f"r{i}.txt").write_text(f"{i}\n")
        git(work, "add", ".")
        git(work, "commit", "--quiet", "-m", f"r{i}")
    git(work, "push", "--quiet", "origin", *(f"release/r{i}" for i in range(35)))
    for i in range(35):
        labels = ["model-release", "ring:pilot"] if i % 5 == 0 else ["model-release"]
        forge.open_or_update_pr(head=f"release/r{i}", base="main", title=f"r{i}", body="", labels=labels)
    forge.close_pr(3)
    forge.close_pr(34)
    forge.merge_pr(35)

    before = len(fake.log)
    everything = forge.list_prs()
    listed = fake.log[before:]
    assert [pr.number for pr in everything] == list(range(1, 36))
    assert [r.query.get("page") for r in listed] == [None, "2"]  # two pages of 30, nothing else fetched
    assert not [r for r in listed if r.path.endswith(tuple(f"/pulls/{n}" for n in range(1, 36)))]
    assert [pr.number for pr in forge.list_prs(state="closed")] == [3, 34]
    merged = forge.list_prs(state="merged")
    assert [pr.number for pr in merged] == [35] and merged[0].merge_commit == fake.pulls[35].merge_commit_sha
    assert len(forge.list_prs(state="open")) == 32
    pilots = [1, 6, 11, 16, 21, 26, 31]
    assert [pr.number for pr in forge.list_prs(label="ring:pilot")] == pilots
    assert [pr.number for pr in forge.list_prs(state="open", label="ring:pilot")] == pilots
    assert forge.list_prs(label="no-such-label") == []


def test_the_fakes_link_header_is_githubs(fake: FakeGitHub, work: Path) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    number = fake.open_pull(HEAD).number
    for i in range(7):
        fake.add_comment(number, f"c{i}")
    status, link, page = raw_request(
        fake, "GET", "/repos/acme/edgeops-releases/issues/1/comments?per_page=2&page=2"
    )
    assert status == 200
    base = f"{fake.base_url}/repositories/{fake.repo_id}/issues/1/comments?per_page=2"
    assert link == (
        f'<{base}&page=1>; rel="prev", <{base}&page=3>; rel="next", '
        f'<{base}&page=4>; rel="last", <{base}&page=1>; rel="first"'
    )
    assert [c["body"] for c in page] == ["c2", "c3"]


# --- close and merge ---------------------------------------------------------------------------------------


def test_close_with_a_comment(fake: FakeGitHub, forge: GitHubForge, work: Path) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    pr = forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b")
    closed = forge.close_pr(pr.number, comment="superseded by v1.1")
    assert closed.state == "closed" and closed.comments == ["superseded by v1.1"]
    assert fake.pulls[1].state == "closed" and fake.pulls[1].closed_at and not fake.pulls[1].merged
    writes = [(r.method, r.path) for r in fake.log if r.method != "GET"]
    assert writes[-2:] == [("POST", "/repos/acme/edgeops-releases/issues/1/comments"),
                           ("PATCH", "/repos/acme/edgeops-releases/pulls/1")]  # fmt: skip
    assert forge.find_open_pr(HEAD) is None and forge.get_pr(1).state == "closed"
    with pytest.raises(ForgeError, match="is closed, not open"):
        forge.close_pr(pr.number)


def test_merge_makes_a_real_merge_commit_on_the_base(
    fake: FakeGitHub, forge: GitHubForge, git_remote: Path, work: Path, tmp_path: Path
) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    pr = forge.open_or_update_pr(head=HEAD, base="main", title="pilot: model v1.0", body="b")
    head_sha = git(work, "rev-parse", f"origin/{HEAD}")
    merged = forge.merge_pr(pr.number)
    assert merged.state == "merged" and merged.merge_commit
    main = git(git_remote, "rev-parse", "refs/heads/main")
    assert merged.merge_commit == main == fake.pulls[1].merge_commit_sha
    parents = git(git_remote, "log", "-1", "--format=%P", "main").split()
    assert len(parents) == 2 and parents[1] == head_sha  # a real merge commit: base, then the PR's head
    assert git(git_remote, "log", "-1", "--format=%s%n%n%b", "main").strip() == (
        "Merge pull request #1 from acme/release/pilot/v1.0\n\npilot: model v1.0"
    )
    assert git(git_remote, "log", "-1", "--format=%cn", "main") == "GitHub"
    check = tmp_path / "check"
    git(tmp_path, "clone", "--quiet", str(git_remote), str(check))
    assert (check / "release.yaml").read_text() == "version: v1.0\n"
    put = fake.calls("PUT", r"/repos/acme/edgeops-releases/pulls/1/merge")
    assert [r.status for r in put] == [200]
    assert forge.get_pr(1).state == "merged" and fake.pulls[1].state == "closed"  # GitHub's state: closed
    with pytest.raises(ForgeError, match="is merged, not open"):
        forge.merge_pr(pr.number)


def test_merging_a_closed_pr_is_refused(
    fake: FakeGitHub, forge: GitHubForge, git_remote: Path, work: Path
) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    pr = forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b")
    forge.close_pr(pr.number)
    main = git(git_remote, "rev-parse", "refs/heads/main")
    with pytest.raises(ForgeError, match="is closed, not open: it cannot be merged"):
        forge.merge_pr(pr.number)
    assert git(git_remote, "rev-parse", "refs/heads/main") == main
    assert fake.calls("PUT") == []


def test_a_conflicting_pr_is_not_merged(
    fake: FakeGitHub, forge: GitHubForge, git_remote: Path, work: Path
) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    pr = forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b")
    push_branch(work, "main", "version: hotfix\n")  # main moves under the PR: the same line, changed
    main = git(git_remote, "rev-parse", "refs/heads/main")
    with pytest.raises(ForgeError, match="cannot be merged: Pull Request is not mergeable"):
        forge.merge_pr(pr.number)
    assert git(git_remote, "rev-parse", "refs/heads/main") == main
    assert forge.get_pr(pr.number).state == "open"
    assert [r.status for r in fake.calls("PUT")] == [405]


# --- credentials and errors --------------------------------------------------------------------------------


def test_a_bad_token_is_a_service_error_that_never_shows_the_token(fake: FakeGitHub) -> None:
    wrong = "ghs_wrongtoken0123456789abcdef"
    with make_forge(fake, token=wrong) as forge, pytest.raises(ServiceError) as caught:
        forge.list_prs()
    message = str(caught.value)
    assert "401" in message and "Bad credentials" in message and "pull requests: write" in message
    assert wrong not in message and fake.token not in message and wrong not in repr(forge)
    assert [r.status for r in fake.log] == [401]


def test_a_token_without_write_permission_is_a_service_error_naming_the_permissions(
    fake: FakeGitHub, forge: GitHubForge, work: Path
) -> None:
    push_branch(work, HEAD, "version: v1.0\n")
    fake.read_only = True
    with pytest.raises(ServiceError, match="HTTP 403: Resource not accessible by integration") as caught:
        forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b")
    assert "pull requests: write, contents: write, issues: write" in str(caught.value)
    assert fake.token not in str(caught.value) and fake.pulls == {}


def test_unknown_repository_and_pr_are_forge_errors_naming_them(fake: FakeGitHub, forge: GitHubForge) -> None:
    with make_forge(fake, repository="acme/nope") as other, pytest.raises(ForgeError) as caught:
        other.list_prs()
    assert str(caught.value).startswith(f"repository acme/nope not found at {fake.base_url} (HTTP 404")
    with pytest.raises(ForgeError, match="pull request #999 not found in acme/edgeops-releases at"):
        forge.get_pr(999)
    with pytest.raises(ForgeError, match="'owner/name'"):
        GitHubForge("just-a-name", token=fake.token)
    with pytest.raises(ForgeError, match="is not an http"):
        GitHubForge(fake.full_name, token=fake.token, base_url="api.github.com")


def test_an_unreachable_api_is_a_service_error_naming_the_base_url() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    token = "ghs_unreachable0123456789"
    forge = GitHubForge("acme/edgeops-releases", token=token, base_url=base_url, timeout=5, **UNPACED)
    with forge, pytest.raises(ServiceError, match=f"cannot reach GitHub at {base_url}") as caught:
        forge.find_open_pr(HEAD)
    assert token not in str(caught.value)


def test_from_env_reads_github_token(fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    with pytest.raises(ForgeError, match="GITHUB_TOKEN is not set") as caught:
        GitHubForge.from_env(fake.full_name, base_url=fake.base_url)
    assert "GitHub App installation token" in str(caught.value)
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    monkeypatch.setenv("GITHUB_API_URL", fake.base_url)
    push_branch(work, HEAD, "version: v1.0\n")
    with GitHubForge.from_env(fake.full_name, **UNPACED) as forge:
        assert forge.base_url == fake.base_url
        assert forge.open_or_update_pr(head=HEAD, base="main", title="t", body="b").number == 1
    assert fake.pulls[1].user == fake.user
