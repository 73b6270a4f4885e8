"""Git, as the release tooling needs it: a ring's release history, and commits made beside the checkout.

A ring's history is read from the **first-parent** chain of the base branch (``main``): every commit on it
is a merge of a reviewed PR (or a squash of one), and its committer time is the moment the change reached
the ring. :func:`ring_history` walks that chain once, asks ``git cat-file`` for the release file's blob at
each commit in one batch, and keeps the commits where the blob changed. Nothing depends on commit messages,
so a hand-made ``git revert`` reads exactly like ``edgeops rollback``.

During a rollout in waves a version's stretch of history (:class:`Segment`) holds one event per wave: the
version's clock starts at its first wave, each wave's soak clock at the commit that set its percent
(:meth:`RingHistory.wave_start`).

Release changes are committed in a temporary ``git worktree`` at the remote base branch
(:func:`scratch_worktree`): the user's checkout, its branch and its uncommitted files are never touched.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tools.artifacts.release import Release, ReleaseError, parse_release, signed_payload
from tools.core.errors import EdgeopsError
from tools.core.git import GitError, git_ok, run_git

__all__ = [
    "GitError",
    "Repo",
    "RingEvent",
    "RingHistory",
    "Segment",
    "content_of",
    "ring_history",
    "scratch_worktree",
    "wave_percent",
]


class Repo:
    """A git working tree (the repository root, where ``edgeops.yaml`` lives)."""

    def __init__(self, root: Path, *, remote: str = "origin") -> None:
        self.root = Path(root)
        self.remote = remote

    def git(self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None) -> str:
        return run_git(args, self.root, input=input, env=env)

    def ok(self, *args: str) -> bool:
        return git_ok(args, self.root)

    def remote_url(self) -> str:
        try:
            return self.git("remote", "get-url", self.remote).strip()
        except GitError:
            raise GitError(
                f"{self.root} has no git remote {self.remote!r}: release PRs are pushed there "
                f"(git remote add {self.remote} URL)"
            ) from None

    def fetch(self, *refs: str, env: Mapping[str, str] | None = None) -> None:
        self.git("fetch", "--quiet", "--prune", self.remote, *refs, env=env)

    def rev(self, ref: str) -> str:
        try:
            return self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
        except GitError:
            raise GitError(f"{ref!r} is not a commit in {self.root}: fetch it first (git fetch)") from None

    def remote_branch(self, branch: str) -> str | None:
        """The commit of ``<remote>/<branch>`` after the last fetch, or None when the branch is not there."""
        out = self.git("for-each-ref", "--format=%(objectname)", f"refs/remotes/{self.remote}/{branch}")
        return out.strip() or None

    def show(self, ref: str, path: str) -> str | None:
        """The text of ``path`` at ``ref``; None when the file does not exist there."""
        if not self.ok("cat-file", "-e", f"{ref}:{path}"):
            return None
        return self.git("show", f"{ref}:{path}")

    def changed_files(self, base: str, head: str) -> list[str]:
        """Files a PR from ``head`` into ``base`` changes: the diff from their merge base, as GitHub shows."""
        out = self.git("diff", "--name-only", "--no-renames", f"{base}...{head}")
        return sorted(line for line in out.splitlines() if line)

    def commit_time(self, ref: str) -> datetime:
        return datetime.fromtimestamp(int(self.git("show", "-s", "--format=%ct", ref).strip()), UTC)


def wave_percent(release: Release) -> float:
    """The share of the ring's nodes that run ``release`` itself: its ``rollout.percent``, or 100 without a
    wave (no ``previous``, or no percent)."""
    if release.previous is None or release.rollout_percent is None:
        return 100.0
    return min(100.0, release.rollout_percent)


@dataclass(frozen=True)
class RingEvent:
    """One first-parent commit that changed a ring's release file."""

    commit: str
    time: datetime  # committer time: when the change reached the base branch
    text: str | None  # the file's text after the commit (None: the file was deleted)
    release: Release | None  # None: the "no release yet" form (or an unreadable file, see ``error``)
    error: str | None = None  # why the file could not be parsed at this commit

    @property
    def version(self) -> str | None:
        return self.release.version if self.release else None

    @property
    def percent(self) -> float | None:
        """:func:`wave_percent` of the release this commit set; None for no release."""
        return None if self.release is None else wave_percent(self.release)

    @property
    def content(self) -> bytes | None:
        """What the release's signature covers (version, interface, bundle, file digests): two events
        run the same model exactly when their contents are equal, whatever they are called."""
        return content_of(self.release)


def content_of(release: Release | None) -> bytes | None:
    """The signed content of ``release`` (None for no release): what soak, promotion and rollback compare."""
    if release is None:
        return None
    return signed_payload(release.version, release.interface, release.bundle, release.files)


@dataclass(frozen=True)
class Segment:
    """A stretch of history during which a ring ran one version (None: no release)."""

    version: str | None
    start: RingEvent  # the commit that set this version
    end: RingEvent | None  # the commit that replaced it; None while it is current

    def ran_for(self, now: datetime) -> float:
        """Hours this version was the ring's release (until ``now`` while current)."""
        until = self.end.time if self.end else now
        return max(0.0, (until - self.start.time).total_seconds() / 3600.0)


@dataclass(frozen=True)
class RingHistory:
    ring: str
    path: str
    events: list[RingEvent]  # oldest first

    @property
    def current(self) -> RingEvent | None:
        return self.events[-1] if self.events else None

    def segments(self) -> list[Segment]:
        """Consecutive events of one release merged: a re-annotation of metrics or a wider wave does not
        restart a clock. Events are the same release when their signed content is (a version name pinned
        with other content, which the ``forward`` rule refuses, starts a segment of its own)."""
        segments: list[Segment] = []
        for event in self.events:
            if segments and segments[-1].start.content == event.content:
                continue
            if segments:
                last = segments[-1]
                segments[-1] = Segment(last.version, last.start, event)
            segments.append(Segment(event.version, event, None))
        return segments

    def current_segment(self) -> Segment | None:
        segments = self.segments()
        return segments[-1] if segments else None

    def wave_start(self) -> RingEvent | None:
        """The commit that set the current wave: the first of the latest events that all set the current
        version at the current percent (re-annotating metrics does not restart a wave's soak clock; a
        narrowing and a new widening do)."""
        if not self.events:
            return None
        last = self.events[-1]
        start = last
        for event in reversed(self.events[:-1]):
            if event.content != last.content or event.percent != last.percent:
                break
            start = event
        return start

    def ran(self, version: str | None) -> list[Segment]:
        """Every stretch during which this ring ran ``version`` (by name: for reports; the rules compare
        content with :meth:`ran_content`)."""
        return [s for s in self.segments() if s.version == version]

    def ran_content(self, release: Release | None) -> list[Segment]:
        """Every stretch during which this ring ran exactly ``release``'s signed content."""
        content = content_of(release)
        return [s for s in self.segments() if s.start.content == content]

    def last_release_of(self, version: str) -> Release | None:
        """The release block this ring last ran for ``version`` (what a rollback to it restores)."""
        for event in reversed(self.events):
            if event.release and event.release.version == version:
                return event.release
        return None


def ring_history(repo: Repo, ref: str, ring: str, path: str) -> RingHistory:
    """The release history of ``path`` along the first-parent chain of ``ref``, oldest change first."""
    lines = repo.git("rev-list", "--first-parent", "--reverse", "--format=%H %ct", ref).splitlines()
    commits = [
        (sha, int(ct)) for sha, ct in (line.split() for line in lines if not line.startswith("commit "))
    ]
    if not commits:
        return RingHistory(ring, path, [])
    query = "".join(f"{sha}:{path}\n" for sha, _ in commits)
    checks = repo.git("cat-file", "--batch-check=%(objectname) %(objecttype)", input=query).splitlines()
    blobs = [line.split()[0] if line.endswith(" blob") else None for line in checks]
    texts = _blob_texts(repo, {b for b in blobs if b})
    events: list[RingEvent] = []
    previous: str | None = "(start)"
    for (sha, ct), blob in zip(commits, blobs, strict=True):
        if blob == previous:
            continue
        previous = blob
        text = texts.get(blob) if blob else None
        release, error = None, None
        if text is not None:
            try:
                release = parse_release(text, source=f"{path} at {sha[:12]}")
            except ReleaseError as exc:
                error = str(exc)
        elif events:
            error = f"{path} was deleted at {sha[:12]}"
        if text is None and not events:
            continue  # the file did not exist yet
        events.append(RingEvent(sha, datetime.fromtimestamp(ct, UTC), text, release, error))
    return RingHistory(ring, path, events)


def _blob_texts(repo: Repo, blobs: set[str]) -> dict[str, str]:
    if not blobs:
        return {}
    order = sorted(blobs)
    out = run_git(["cat-file", "--batch"], repo.root, input="".join(f"{b}\n" for b in order).encode())
    pos, texts = 0, {}
    for blob in order:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        size = int(header[2])
        texts[blob] = out[end + 1 : end + 1 + size].decode("utf-8", errors="replace")
        pos = end + 1 + size + 1
    return texts


@contextlib.contextmanager
def scratch_worktree(repo: Repo, commit: str) -> Iterator[Repo]:
    """A temporary detached worktree at ``commit``: commit and push from it; it is removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="edgeops-wt-"))
    work = tmp / "work"
    repo.git("worktree", "add", "--quiet", "--detach", str(work), commit)
    try:
        yield Repo(work, remote=repo.remote)
    finally:
        with contextlib.suppress(GitError):
            repo.git("worktree", "remove", "--force", str(work))
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(GitError):
            repo.git("worktree", "prune")


def commit_message(subject: str, body: str, trailers: Sequence[tuple[str, str]]) -> str:
    """A commit message with git trailers (``Key: value`` lines in the last paragraph)."""
    parts = [subject.strip()]
    if body.strip():
        parts.append(body.strip())
    if trailers:
        parts.append("\n".join(f"{key}: {value}" for key, value in trailers))
    return "\n\n".join(parts) + "\n"


def must_be_repo(root: Path) -> Repo:
    repo = Repo(root)
    if not repo.ok("rev-parse", "--is-inside-work-tree"):
        raise EdgeopsError(f"{root} is not a git working tree: run edgeops from a clone of the repository")
    return repo
