"""LocalForge against real bare git remotes: one PR per head branch, one bot comment, real merges."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.releasekit import git
from tools.gitops.forge import ForgeError, LocalForge, comment_marker


@pytest.fixture
def repo(git_remote: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    git(tmp_path, "clone", "--quiet", str(git_remote), str(work))
    (work / "release.yaml").write_text("version: null\n")
    git(work, "add", ".")
    git(work, "commit", "--quiet", "-m", "initial")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    return work


def push_branch(work: Path, branch: str, content: str) -> None:
    git(work, "checkout", "--quiet", "-B", branch, "origin/main" if branch != "main" else "HEAD")
    (work / "release.yaml").write_text(content)
    git(work, "commit", "--quiet", "-am", f"{branch}: {content.strip()}")
    git(work, "push", "--quiet", "--force", "origin", f"HEAD:{branch}")


def test_one_pr_per_head_updated_in_place(git_remote: Path, repo: Path) -> None:
    git(repo, "fetch", "--quiet", "origin")
    push_branch(repo, "release/pilot/v1.0", "version: v1.0\n")
    forge = LocalForge(git_remote)
    head = "release/pilot/v1.0"
    first = forge.open_or_update_pr(head=head, base="main", title="pilot: model v1.0", body="first body",
                                    labels=["model-release"], reviewers=["alice"])  # fmt: skip
    second = forge.open_or_update_pr(head=head, base="main", title="pilot: model v1.0 (rerun)",
                                     body="second body", labels=["ring:pilot"])  # fmt: skip
    assert first.number == second.number == 1
    assert [pr.number for pr in forge.list_prs(state="open")] == [1]
    pr = forge.get_pr(1)
    assert (
        pr.body == "second body"
        and pr.labels == ["model-release", "ring:pilot"]
        and pr.reviewers == ["alice"]
    )
    assert forge.find_open_pr("release/pilot/v1.0") is not None and forge.find_open_pr("nope") is None


def test_bot_comment_is_edited_not_repeated(git_remote: Path, repo: Path) -> None:
    push_branch(repo, "release/pilot/v1.0", "version: v1.0\n")
    forge = LocalForge(git_remote)
    pr = forge.open_or_update_pr(head="release/pilot/v1.0", base="main", title="t", body="b")
    forge.upsert_comment(pr.number, "telemetry", "accuracy 0.90")
    forge.upsert_comment(pr.number, "telemetry", "accuracy 0.95")
    forge.upsert_comment(pr.number, "other", "something else")
    comments = forge.get_pr(pr.number).comments
    assert len(comments) == 2
    assert comments[0] == f"{comment_marker('telemetry')}\naccuracy 0.95"


def test_merge_makes_a_merge_commit_on_the_base(git_remote: Path, repo: Path, tmp_path: Path) -> None:
    push_branch(repo, "release/pilot/v1.0", "version: v1.0\n")
    forge = LocalForge(git_remote)
    pr = forge.open_or_update_pr(head="release/pilot/v1.0", base="main", title="pilot: model v1.0", body="b")
    merged = forge.merge_pr(pr.number)
    assert merged.state == "merged" and merged.merge_commit
    check = tmp_path / "check"
    git(tmp_path, "clone", "--quiet", str(git_remote), str(check))
    assert (check / "release.yaml").read_text() == "version: v1.0\n"
    assert git(check, "rev-parse", "HEAD") == merged.merge_commit
    assert len(git(check, "log", "-1", "--format=%P").split()) == 2  # a real merge commit: two parents
    assert git(check, "log", "-1", "--format=%s") == "Merge pull request #1 from release/pilot/v1.0"
    with pytest.raises(ForgeError, match="is merged, not open"):
        forge.merge_pr(pr.number)
    # A new PR for the same head after the merge is a new PR, not the merged one reopened.
    push_branch(repo, "release/pilot/v1.0", "version: v1.0\nnote: again\n")
    again = forge.open_or_update_pr(head="release/pilot/v1.0", base="main", title="again", body="b")
    assert again.number == 2


def test_close_and_errors(git_remote: Path, repo: Path, tmp_path: Path) -> None:
    push_branch(repo, "release/pilot/v1.1", "version: v1.1\n")
    forge = LocalForge(git_remote)
    pr = forge.open_or_update_pr(head="release/pilot/v1.1", base="main", title="t", body="b")
    closed = forge.close_pr(pr.number, comment="superseded by #2")
    assert closed.state == "closed" and closed.comments == ["superseded by #2"]
    assert forge.list_prs(state="open") == []
    with pytest.raises(ForgeError, match="push it first"):
        forge.open_or_update_pr(head="release/pilot/v9.9", base="main", title="t", body="b")
    with pytest.raises(ForgeError, match="no pull request #42"):
        forge.get_pr(42)
    with pytest.raises(ForgeError, match="not a bare git repository"):
        LocalForge(tmp_path)
