"""Every git command edgeops runs, through one runner: it logs the command (at DEBUG) and turns a failure
into a :class:`GitError` that names the command, the folder and git's own last words.

The release tooling's :class:`tools.gitops.gitrepo.Repo` calls it for each command; training calls
:func:`git_commit` to record the code's commit in a run. Standard library only, so every layer may use it.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import overload

from tools.core.errors import ServiceError
from tools.core.log import fields

__all__ = ["GitError", "git_commit", "git_ok", "run_git"]

log = logging.getLogger("edgeops.git")


class GitError(ServiceError):
    """A git command failed (a missing ref, a rejected push, a conflicting revert), or git is missing."""


def _run(
    args: Sequence[str], cwd: Path | None, *, input: str | bytes | None, env: Mapping[str, str] | None,
    timeout: float | None, text: bool,
) -> subprocess.CompletedProcess[str] | subprocess.CompletedProcess[bytes]:  # fmt: skip
    command = " ".join(["git", *args])
    log.debug(command, extra=fields(cwd=str(cwd) if cwd is not None else os.getcwd()))
    full_env = {**os.environ, **env} if env else None
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=text, input=input, env=full_env,
            timeout=timeout, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        if cwd is not None and not Path(cwd).is_dir():
            raise GitError(f"{command}: the folder {cwd} does not exist") from None
        raise GitError("git is not installed (apt-get install git)") from None
    except subprocess.TimeoutExpired:
        raise GitError(
            f"{command} did not finish within {timeout:g} s (a remote that does not answer?)"
        ) from None
    except OSError as exc:
        raise GitError(f"cannot run {command}: {exc.strerror or exc}") from None


def _failure(args: Sequence[str], cwd: Path | None, stderr: str, stdout: str) -> GitError:
    detail = (stderr or stdout).strip().splitlines()
    where = cwd if cwd is not None else Path.cwd()
    text = f"git {' '.join(args)} failed in {where}: {' | '.join(detail[-3:])}"
    if any(sign in (stderr or "") for sign in _NO_CREDENTIALS):
        # What git says when the server answered 401 and it had nothing (else) to offer.
        text += (
            ". The remote refused git's credentials: none were given, or the token expired (GitHub App "
            "installation tokens live one hour) or lacks contents: write. With EDGEOPS_GITHUB_APP_ID and "
            "the App's private key set, edgeops mints a fresh one when it pushes"
        )
    return GitError(text)


_NO_CREDENTIALS = ("could not read Username", "Authentication failed", "terminal prompts disabled")


@overload
def run_git(
    args: Sequence[str], cwd: Path | None = None, *, input: str | None = None,
    env: Mapping[str, str] | None = None, timeout: float | None = None,
) -> str: ...  # fmt: skip
@overload
def run_git(
    args: Sequence[str], cwd: Path | None = None, *, input: bytes,
    env: Mapping[str, str] | None = None, timeout: float | None = None,
) -> bytes: ...  # fmt: skip
def run_git(
    args: Sequence[str], cwd: Path | None = None, *, input: str | bytes | None = None,
    env: Mapping[str, str] | None = None, timeout: float | None = None,
) -> str | bytes:  # fmt: skip
    """Run ``git <args>`` in ``cwd`` and return its stdout: text, or bytes when ``input`` is bytes (for
    ``cat-file --batch``, whose sizes count bytes). ``env`` is added to this process's environment.
    Raises :class:`GitError` when git is missing, times out or exits non-zero."""
    binary = isinstance(input, bytes)
    result = _run(args, cwd, input=input, env=env, timeout=timeout, text=not binary)
    if result.returncode != 0:
        out, err = result.stdout, result.stderr
        if isinstance(out, bytes):
            out = out.decode("utf-8", errors="replace")
        if isinstance(err, bytes):
            err = err.decode("utf-8", errors="replace")
        raise _failure(args, cwd, err, out)
    return result.stdout


def git_ok(args: Sequence[str], cwd: Path | None = None) -> bool:
    """Whether ``git <args>`` exits 0 in ``cwd`` (a question, such as ``cat-file -e``); GitError only when
    git cannot run at all."""
    return _run(args, cwd, input=None, env=None, timeout=None, text=True).returncode == 0


def git_commit(cwd: Path) -> tuple[str | None, bool]:
    """``(HEAD, dirty)`` of the checkout around ``cwd``: dirty when tracked files have uncommitted changes.
    ``(None, False)`` when git is missing or ``cwd`` is not inside a repository."""
    try:
        head = run_git(["rev-parse", "HEAD"], cwd).strip()
        dirty = run_git(["status", "--porcelain", "--untracked-files=no"], cwd).strip()
    except GitError:
        return None, False
    return head or None, bool(dirty)
