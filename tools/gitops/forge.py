"""Forges: where release pull requests live. A small protocol, so the release tooling is the same everywhere.

- ``LocalForge``: a bare git remote plus pull-request records (JSON files beside it). The embedded demo and
  the tests use it; it merges with a real ``git merge --no-ff``, as GitHub's merge button does.
- ``GitHubForge`` (PyGithub, a GitHub App token): issue #7.

Semantics every implementation keeps (DESIGN.md, "Forge"): a pull request is identified by its head branch;
opening one for a head that already has an open PR updates that PR instead of opening a second; the bot's
comment is found by a hidden marker and edited in place, never posted again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from tools.core.errors import EdgeopsError
from tools.core.fsutil import write_atomic
from tools.gitops.gitrepo import Repo

__all__ = ["Forge", "ForgeError", "LocalForge", "PullRequest", "comment_marker"]

State = Literal["open", "closed", "merged"]


class ForgeError(EdgeopsError):
    """A pull-request operation was refused (no such PR, wrong state, missing branch)."""


def comment_marker(key: str) -> str:
    """The hidden HTML comment that identifies the bot's comment of one kind on a PR."""
    return f"<!-- edgeops:{key} -->"


@dataclass
class PullRequest:
    number: int
    head: str
    base: str
    title: str
    body: str
    state: State = "open"
    labels: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    merge_commit: str | None = None
    created_at: str = ""
    updated_at: str = ""
    url: str = ""


class Forge(Protocol):
    def open_or_update_pr(
        self, *, head: str, base: str, title: str, body: str, labels: Sequence[str] = (),
        reviewers: Sequence[str] = (),
    ) -> PullRequest: ...  # fmt: skip
    def find_open_pr(self, head: str) -> PullRequest | None: ...
    def get_pr(self, number: int) -> PullRequest: ...
    def list_prs(self, *, state: State | None = None, label: str | None = None) -> list[PullRequest]: ...
    def upsert_comment(self, number: int, key: str, body: str) -> None: ...
    def close_pr(self, number: int, *, comment: str | None = None) -> PullRequest: ...
    def merge_pr(self, number: int) -> PullRequest: ...

    def git_env(self, remote_url: str) -> dict[str, str]:
        """Environment for a git process that fetches from or pushes to ``remote_url`` (credentials)."""
        ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _git(*args: str, cwd: Path) -> str:
    return Repo(cwd).git(*args).strip()  # GitError (a ServiceError) names the command, folder and stderr


class LocalForge:
    """Pull requests against a bare git repository; records in ``<remote>.prs/<number>.json``."""

    def __init__(self, remote: Path) -> None:
        if not (remote / "HEAD").is_file():
            raise ForgeError(f"{remote} is not a bare git repository (git init --bare)")
        self.remote = remote.resolve()
        self.records = self.remote.with_name(self.remote.name + ".prs")
        self.records.mkdir(exist_ok=True)

    # --- records ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.records / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time: numbers and updates never race
            yield

    def _path(self, number: int) -> Path:
        return self.records / f"{number}.json"

    def _load(self, number: int) -> PullRequest:
        try:
            return PullRequest(**json.loads(self._path(number).read_text()))
        except FileNotFoundError:
            raise ForgeError(f"no pull request #{number} in {self.remote}") from None

    def _save(self, pr: PullRequest) -> None:
        pr.updated_at = _now()
        write_atomic(self._path(pr.number), json.dumps(asdict(pr), indent=2))

    def _all(self) -> list[PullRequest]:
        numbers = sorted(int(p.stem) for p in self.records.glob("*.json") if p.stem.isdigit())
        return [self._load(n) for n in numbers]

    def _branch_exists(self, branch: str) -> bool:
        refs = _git("for-each-ref", "--format=%(refname:short)", "refs/heads/", cwd=self.remote)
        return branch in refs.splitlines()

    # --- the protocol -----------------------------------------------------------------------------------

    def find_open_pr(self, head: str) -> PullRequest | None:
        return next((pr for pr in self._all() if pr.head == head and pr.state == "open"), None)

    def get_pr(self, number: int) -> PullRequest:
        return self._load(number)

    def list_prs(self, *, state: State | None = None, label: str | None = None) -> list[PullRequest]:
        return [
            pr
            for pr in self._all()
            if (state is None or pr.state == state) and (label is None or label in pr.labels)
        ]

    def open_or_update_pr(
        self, *, head: str, base: str, title: str, body: str, labels: Sequence[str] = (),
        reviewers: Sequence[str] = (),
    ) -> PullRequest:  # fmt: skip
        for branch in (head, base):
            if not self._branch_exists(branch):
                raise ForgeError(f"branch {branch!r} is not on the remote {self.remote}: push it first")
        with self._locked():
            pr = self.find_open_pr(head)
            if pr is None:
                number = max((p.number for p in self._all()), default=0) + 1
                pr = PullRequest(number=number, head=head, base=base, title=title, body=body,
                                 created_at=_now(), url=f"{self.remote}#pr-{number}")  # fmt: skip
            pr.title, pr.body, pr.base = title, body, base
            pr.labels = sorted(set(pr.labels) | set(labels))
            pr.reviewers = sorted(set(pr.reviewers) | set(reviewers))
            self._save(pr)
            return pr

    def upsert_comment(self, number: int, key: str, body: str) -> None:
        marker = comment_marker(key)
        text = f"{marker}\n{body}"
        with self._locked():
            pr = self._load(number)
            for i, existing in enumerate(pr.comments):
                if existing.startswith(marker):
                    pr.comments[i] = text
                    break
            else:
                pr.comments.append(text)
            self._save(pr)

    def close_pr(self, number: int, *, comment: str | None = None) -> PullRequest:
        with self._locked():
            pr = self._load(number)
            if pr.state != "open":
                raise ForgeError(f"pull request #{number} is {pr.state}, not open")
            if comment:
                pr.comments.append(comment)
            pr.state = "closed"
            self._save(pr)
            return pr

    def git_env(self, remote_url: str) -> dict[str, str]:
        return {}  # a bare repository on this machine: no credentials

    def merge_pr(self, number: int) -> PullRequest:
        """Merge with a merge commit (``git merge --no-ff``) into the base branch and push it."""
        with self._locked():
            pr = self._load(number)
            if pr.state != "open":
                raise ForgeError(f"pull request #{number} is {pr.state}, not open: it cannot be merged")
            with tempfile.TemporaryDirectory(prefix="edgeops-merge-") as tmp:
                work = Path(tmp) / "work"
                _git("clone", "--quiet", "--branch", pr.base, str(self.remote), str(work), cwd=Path(tmp))
                _git("fetch", "--quiet", "origin", pr.head, cwd=work)
                message = f"Merge pull request #{pr.number} from {pr.head}\n\n{pr.title}"
                _git("merge", "--no-ff", "--quiet", "-m", message, "FETCH_HEAD", cwd=work)
                _git("push", "--quiet", "origin", f"HEAD:{pr.base}", cwd=work)
                pr.merge_commit = _git("rev-parse", "HEAD", cwd=work)
            pr.state = "merged"
            self._save(pr)
            return pr
