"""FakeGitHub: an in-process HTTP fake of GitHub's REST API, backed by a real bare git repository.

A fake, not GitHub: it serves the pull-request subset of the REST API that ``tools/gitops/github.py``
calls through
PyGithub, over real HTTP on 127.0.0.1 (port 0, a daemon thread), following GitHub's documented semantics
for those endpoints, so PyGithub runs unmodified against it:

    GET    /repos/{o}/{r}
    GET    /repos/{o}/{r}/pulls                      state=open|closed|all, head=owner:branch, base, sort,
                                                     direction, per_page (default 30, max 100), page
    POST   /repos/{o}/{r}/pulls                      201; 422 "A pull request already exists for o:branch."
                                                     (open PR, same head and base), 422 head/base invalid
                                                     (not on the git repo), 422 "No commits between ..."
    GET    /repos/{o}/{r}/pulls/{n}
    PATCH  /repos/{o}/{r}/pulls/{n}                  title, body, state (open|closed), base
    GET    /repos/{o}/{r}/pulls/{n}/merge            204 merged, 404 not merged
    PUT    /repos/{o}/{r}/pulls/{n}/merge            a real ``git merge --no-ff`` of head into base; 405 "Pull
                                                     Request is not mergeable" (not open, conflict); 409 when
                                                     ``sha`` is not the head's
    GET    /repos/{o}/{r}/pulls/{n}/requested_reviewers
    POST   /repos/{o}/{r}/pulls/{n}/requested_reviewers   201; 422 for the PR's author
    GET    /repos/{o}/{r}/issues/{n}/labels
    POST   /repos/{o}/{r}/issues/{n}/labels          200, the issue's labels (created on first use)
    GET    /repos/{o}/{r}/issues/{n}/comments        ascending by id, paginated
    POST   /repos/{o}/{r}/issues/{n}/comments        201
    GET    /repos/{o}/{r}/issues/comments/{id}
    PATCH  /repos/{o}/{r}/issues/comments/{id}

Lists are paginated as GitHub does: ``per_page``/``page`` and an RFC 5988 ``Link`` header with rel="prev",
"next", "last", "first" (in that order), whose URLs are ``{base}/repositories/{id}/...`` as GitHub's are;
those paths are served too. Every request needs ``Authorization: token <T>`` or ``Bearer <T>`` with the
fake's token (401 "Requires authentication" / "Bad credentials" otherwise); ``read_only = True`` makes every
write answer 403 "Resource not accessible by integration", as for an App token without write permission.

Git is real: branches are what was pushed to the bare repository, head/base shas come from ``git
rev-parse`` there, and a merge happens in a temporary clone and is pushed back, message "Merge pull request
#N from owner/branch" and the PR's title, committed by "GitHub" as GitHub's merge button does.

**A GitHub App** (``enable_app()``): the App's RS256 JWTs (``iss`` = its ID, at most 10 minutes long, checked
against the App's public key) authenticate

    GET    /repos/{o}/{r}/installation               the App's installation on the repository
    POST   /app/installations/{id}/access_tokens     201 {token, expires_at}: an installation token

and an installation token is good for one hour **of the fake's clock** (``now``; ``advance(hours=...)``
moves it, as a long run would), then 401 "Bad credentials", as GitHub answers an expired token.

**Git over HTTP**: ``{base}/{o}/{r}.git`` is the bare repository served by ``git http-backend`` (smart
HTTP, fetch and push), HTTP Basic ``x-access-token:<token>`` required (401 with ``WWW-Authenticate``
otherwise, as github.com), with the same tokens as the API. ``git_url`` is that URL.

Not implemented: forks (head must be a branch of the same repository), issues that are not pull requests,
merge methods other than ``merge``, reviews, drafts' rules, GraphQL. For assertions: ``log`` (every request:
method, path, query, status, error message), ``pulls``, ``comments``, ``errors`` (exceptions in the fake).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import re
import secrets
import subprocess
import tempfile
import threading
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

__all__ = ["FakeComment", "FakeGitHub", "FakePull", "LoggedRequest"]

DOCS = "https://docs.github.com/rest"
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100

Json = Any
Headers = dict[str, str]
Answer = tuple[int, Json, Headers]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _by_id(comment: FakeComment) -> int:
    return comment.id


class _HttpError(Exception):
    """An error answer, with GitHub's body: message, errors (validation), documentation_url, status."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        body["documentation_url"] = DOCS
        body["status"] = str(self.status)
        return body


def _validation(*errors: dict[str, str]) -> _HttpError:
    return _HttpError(422, "Validation Failed", list(errors))


def _not_found() -> _HttpError:
    return _HttpError(404, "Not Found")


@dataclass
class FakePull:
    number: int
    id: int
    head: str
    base: str
    title: str
    body: str | None
    user: str
    head_sha: str
    base_sha: str
    created_at: str
    updated_at: str
    state: str = "open"
    labels: list[str] = field(default_factory=list)
    requested_reviewers: list[str] = field(default_factory=list)
    requested_teams: list[str] = field(default_factory=list)
    closed_at: str | None = None
    merged_at: str | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None

    @property
    def merged(self) -> bool:
        return self.merged_at is not None


@dataclass
class FakeComment:
    id: int
    issue_number: int
    body: str
    user: str
    created_at: str
    updated_at: str


class LoggedRequest(NamedTuple):
    method: str
    path: str  # without the query
    query: dict[str, str]
    status: int
    message: str | None  # an error answer's message, with its validation errors' messages


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGitHub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as api.github.com: every answer has a Content-Length
    wbufsize = -1  # headers and body leave in one write (flushed after each request) ...
    disable_nagle_algorithm = True  # ... and at once: no 40 ms delayed-ACK stall per keep-alive request
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the fake keeps its own log
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake = self.server.fake
        if self.path.startswith(f"/{fake.owner}/{fake.name}.git/"):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raw = self._read_chunked()
            status, git_headers, data = fake.handle_git(
                self.command,
                self.path,
                self.headers.get("Authorization"),
                raw,
                self.headers.get("Content-Type"),
            )
            self.send_response(status)
            for name, value in git_headers:
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        status, payload, headers = self.server.fake.handle(
            self.command, self.path, self.headers.get("Authorization"), raw
        )
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)

    def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


class FakeGitHub:
    """GitHub's REST API for one repository, ``owner/name``, whose git data is the bare repo ``git_dir``."""

    def __init__(
        self,
        git_dir: Path,
        *,
        repository: str = "acme/edgeops-releases",
        token: str | None = None,
        user: str = "edgeops-release[bot]",
        repo_id: int = 1296269,
    ) -> None:
        if not (git_dir / "HEAD").is_file():
            raise ValueError(f"{git_dir} is not a bare git repository")
        self.git_dir = git_dir.resolve()
        self.owner, _, self.name = repository.partition("/")
        self.full_name = repository
        self.token = token or f"ghs_fake{secrets.token_hex(16)}"  # random: tests check it never leaks
        self.user = user
        self.repo_id = repo_id
        self.read_only = False
        self.collaborators: set[str] | None = None  # None: anyone may be asked for a review
        self.teams: set[str] | None = None
        self.on_request: Callable[[str, str], None] | None = None  # (method, path), before routing
        self.pulls: dict[int, FakePull] = {}
        self.comments: dict[int, FakeComment] = {}
        self.log: list[LoggedRequest] = []
        self.errors: list[str] = []  # tracebacks of exceptions inside the fake (a bug in the fake)
        self._lock = threading.RLock()
        self._next_comment_id = 1_000_001  # comment ids never look like PR numbers
        self._user_ids: dict[str, int] = {}
        self._label_ids: dict[str, int] = {}
        self._team_ids: dict[str, int] = {}
        self._branch_cache: dict[str, str] | None = None  # branch -> sha, for the request being answered
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        self.clock_offset = timedelta(0)  # the fake's clock: real time plus this (advance())
        self.app_id: str | None = None
        self.app_private_key_pem: str | None = None
        self.installation_id = 31415926
        self.minted: dict[str, datetime] = {}  # installation token -> expires_at (fake clock)

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeGitHub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- helpers for tests -----------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def advance(self, *, hours: float) -> None:
        """Move the fake's clock forward: tokens minted earlier may expire."""
        self.clock_offset += timedelta(hours=hours)

    def enable_app(self, app_id: str = "1048576") -> str:
        """Make this repository's GitHub App; returns its private key (PEM), as GitHub lets you download."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.app_id = app_id
        self.app_private_key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self._app_public_key = key.public_key()
        return self.app_private_key_pem

    @property
    def git_url(self) -> str:
        return f"{self.base_url}/{self.owner}/{self.name}.git"

    def calls(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        """Logged requests with this method and whose path matches this regular expression (fully)."""
        return [
            r
            for r in self.log
            if (method is None or r.method == method) and (path is None or re.fullmatch(path, r.path))
        ]

    def open_pull(self, head: str, base: str = "main", *, title: str = "", body: str = "") -> FakePull:
        """Open a PR as another client would (same validation as POST /pulls)."""
        with self._lock:
            self._branch_cache = None
            return self._create_pull(head=head, base=base, title=title or head, body=body)

    def add_comment(self, number: int, body: str, *, user: str = "octocat") -> FakeComment:
        """A comment by someone else on PR ``number``."""
        with self._lock:
            return self._add_comment(self._pull(number), body, user)

    # --- git ---------------------------------------------------------------------------------------------

    def _git(self, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        """git as GitHub's servers run it: no user or system configuration of this machine."""
        full_env = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1",
                        GIT_TERMINAL_PROMPT="0", **env)  # fmt: skip
        return subprocess.run(
            ["git", *args], cwd=cwd or self.git_dir, env=full_env, capture_output=True, text=True, check=False
        )

    def _sha(self, branch: str) -> str | None:
        """The branch's commit in the bare repository (``git for-each-ref``, once per request), or None."""
        if self._branch_cache is None:
            listed = self._git("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/")
            pairs = (line.split(" ", 1) for line in listed.stdout.splitlines() if " " in line)
            self._branch_cache = {ref.removeprefix("refs/heads/"): sha for sha, ref in pairs}
        return self._branch_cache.get(branch)

    def _default_branch(self) -> str:
        head = (self.git_dir / "HEAD").read_text().strip()
        return head.removeprefix("ref: refs/heads/") if head.startswith("ref: refs/heads/") else "main"

    def _merge(self, pr: FakePull, title: str, message: str) -> str:
        """``git merge --no-ff`` of the head into the base in a temporary clone, pushed back; the new sha."""
        login = self.user  # the merging user is the token's; the committer is GitHub, as for the button
        identity = {
            "GIT_AUTHOR_NAME": login,
            "GIT_AUTHOR_EMAIL": f"{self._user_id(login)}+{login}@users.noreply.github.com",
            "GIT_COMMITTER_NAME": "GitHub",
            "GIT_COMMITTER_EMAIL": "noreply@github.com",
        }
        with tempfile.TemporaryDirectory(prefix="fakegithub-merge-") as tmp:
            work = Path(tmp) / "work"
            steps: list[tuple[str, ...]] = [
                ("clone", "--quiet", "--branch", pr.base, str(self.git_dir), str(work)),
                ("fetch", "--quiet", "origin", f"refs/heads/{pr.head}"),
                ("merge", "--no-ff", "--quiet", "-m", title, "-m", message, "FETCH_HEAD"),
                ("push", "--quiet", "origin", f"HEAD:refs/heads/{pr.base}"),
            ]
            for step in steps:
                result = self._git(*step, cwd=Path(tmp) if step[0] == "clone" else work, **identity)
                if result.returncode != 0:
                    if step[0] == "push":
                        raise _HttpError(409, "Base branch was modified. Review and try the merge again.")
                    raise _HttpError(405, "Pull Request is not mergeable")  # a conflict, as on GitHub
            sha = self._git("rev-parse", "HEAD", cwd=work).stdout.strip()
        self._branch_cache = None
        return sha

    # --- JSON of GitHub's objects ------------------------------------------------------------------------

    @property
    def _api(self) -> str:
        return f"{self.base_url}/repos/{self.owner}/{self.name}"

    @property
    def _html(self) -> str:
        return f"{self.base_url}/{self.owner}/{self.name}"

    def _user_id(self, login: str) -> int:
        return self._user_ids.setdefault(login, 583231 + len(self._user_ids))

    def _user_json(self, login: str, kind: str | None = None) -> dict[str, Any]:
        quoted = urllib.parse.quote(login)
        return {
            "login": login,
            "id": self._user_id(login),
            "node_id": f"U_fake{self._user_id(login)}",
            "avatar_url": "",
            "url": f"{self.base_url}/users/{quoted}",
            "html_url": f"{self.base_url}/{quoted}",
            "type": kind or ("Bot" if login.endswith("[bot]") else "User"),
            "site_admin": False,
        }

    def _repo_json(self) -> dict[str, Any]:
        api = self._api
        return {
            "id": self.repo_id,
            "node_id": f"R_fake{self.repo_id}",
            "name": self.name,
            "full_name": self.full_name,
            "owner": self._user_json(self.owner, "Organization"),
            "private": True,
            "html_url": self._html,
            "description": None,
            "fork": False,
            "url": api,
            "pulls_url": f"{api}/pulls{{/number}}",
            "issues_url": f"{api}/issues{{/number}}",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "labels_url": f"{api}/labels{{/name}}",
            "default_branch": self._default_branch(),
            "visibility": "private",
            "permissions": {
                "admin": False,
                "maintain": False,
                "push": not self.read_only,
                "triage": True,
                "pull": True,
            },
            "allow_merge_commit": True,
            "allow_squash_merge": False,
            "allow_rebase_merge": False,
        }

    def _label_json(self, name: str) -> dict[str, Any]:
        label_id = self._label_ids.setdefault(name, 208045946 + len(self._label_ids))
        return {
            "id": label_id,
            "node_id": f"LA_fake{label_id}",
            "url": f"{self._api}/labels/{urllib.parse.quote(name, safe='')}",
            "name": name,
            "color": "ededed",
            "default": False,
            "description": None,
        }

    def _team_json(self, slug: str) -> dict[str, Any]:
        team_id = self._team_ids.setdefault(slug, 2_300_001 + len(self._team_ids))
        return {
            "id": team_id,
            "node_id": f"T_fake{team_id}",
            "url": f"{self.base_url}/organizations/1/team/{team_id}",
            "html_url": f"{self.base_url}/orgs/{self.owner}/teams/{slug}",
            "name": slug,
            "slug": slug,
            "description": None,
            "privacy": "closed",
            "permission": "pull",
            "parent": None,
        }

    def _refresh(self, pr: FakePull) -> None:
        """An open PR follows its branches, as on GitHub; a closed one keeps the shas it had."""
        if pr.state == "open":
            pr.head_sha = self._sha(pr.head) or pr.head_sha
            pr.base_sha = self._sha(pr.base) or pr.base_sha

    def _part_json(self, ref: str, sha: str) -> dict[str, Any]:
        return {
            "label": f"{self.owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": self._user_json(self.owner, "Organization"),
            "repo": self._repo_json(),
        }

    def _pull_json(self, pr: FakePull, *, full: bool) -> dict[str, Any]:
        """``full``: the pull-request object of GET/PATCH/POST; else the pull-request-simple of the list."""
        self._refresh(pr)
        url = f"{self._api}/pulls/{pr.number}"
        issue = f"{self._api}/issues/{pr.number}"
        html = f"{self._html}/pull/{pr.number}"
        data: dict[str, Any] = {
            "url": url,
            "id": pr.id,
            "node_id": f"PR_fake{pr.id}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue,
            "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{self._api}/pulls/comments{{/number}}",
            "comments_url": f"{issue}/comments",
            "statuses_url": f"{self._api}/statuses/{pr.head_sha}",
            "number": pr.number,
            "state": pr.state,
            "locked": False,
            "title": pr.title,
            "user": self._user_json(pr.user),
            "body": pr.body,
            "labels": [self._label_json(name) for name in pr.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": pr.created_at,
            "updated_at": pr.updated_at,
            "closed_at": pr.closed_at,
            "merged_at": pr.merged_at,
            "merge_commit_sha": pr.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [self._user_json(login) for login in pr.requested_reviewers],
            "requested_teams": [self._team_json(slug) for slug in pr.requested_teams],
            "head": self._part_json(pr.head, pr.head_sha),
            "base": self._part_json(pr.base, pr.base_sha),
            "_links": {
                "self": {"href": url},
                "html": {"href": html},
                "issue": {"href": issue},
                "comments": {"href": f"{issue}/comments"},
                "review_comments": {"href": f"{url}/comments"},
                "commits": {"href": f"{url}/commits"},
                "statuses": {"href": f"{self._api}/statuses/{pr.head_sha}"},
            },
            "author_association": "NONE",
            "auto_merge": None,
            "draft": False,
        }
        if full:
            counted = self._git("rev-list", "--count", f"{pr.base_sha}..{pr.head_sha}")
            numstat = self._git("diff", "--numstat", f"{pr.base_sha}...{pr.head_sha}").stdout.splitlines()
            rows = [line.split("\t") for line in numstat if line]
            data |= {
                "merged": pr.merged,
                "mergeable": None,  # "not computed yet", as GitHub answers until its background job ran
                "rebaseable": None,
                "mergeable_state": "unknown",
                "merged_by": self._user_json(pr.merged_by) if pr.merged_by else None,
                "comments": sum(1 for c in self.comments.values() if c.issue_number == pr.number),
                "review_comments": 0,
                "maintainer_can_modify": False,
                "commits": int(counted.stdout.strip() or 0) if counted.returncode == 0 else 0,
                "additions": sum(int(r[0]) for r in rows if r[0].isdigit()),
                "deletions": sum(int(r[1]) for r in rows if r[1].isdigit()),
                "changed_files": len(rows),
            }
        return data

    def _comment_json(self, comment: FakeComment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "node_id": f"IC_fake{comment.id}",
            "url": f"{self._api}/issues/comments/{comment.id}",
            "html_url": f"{self._html}/pull/{comment.issue_number}#issuecomment-{comment.id}",
            "issue_url": f"{self._api}/issues/{comment.issue_number}",
            "body": comment.body,
            "user": self._user_json(comment.user),
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "author_association": "NONE",
            "performed_via_github_app": None,
        }

    # --- pagination ------------------------------------------------------------------------------------

    def _paginate(self, items: list[Any], query: dict[str, str], rest: str) -> tuple[list[Any], Headers]:
        """One page of ``items`` and GitHub's Link header (``rest``: the path after /repos/{o}/{r})."""

        def number(name: str, default: int) -> int:
            try:
                return int(query.get(name, default))
            except ValueError:
                return default

        per_page = min(max(number("per_page", DEFAULT_PER_PAGE), 1), MAX_PER_PAGE)
        page = max(number("page", 1), 1)
        last = max(math.ceil(len(items) / per_page), 1)
        chunk = items[(page - 1) * per_page : page * per_page]

        def link(target: int, rel: str) -> str:
            params = [(k, v) for k, v in query.items() if k != "page"] + [("page", str(target))]
            url = f"{self.base_url}/repositories/{self.repo_id}{rest}?{urllib.parse.urlencode(params)}"
            return f'<{url}>; rel="{rel}"'

        links = []
        if page > 1:
            links.append(link(min(page - 1, last), "prev"))
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links.append(link(1, "first"))
        return chunk, ({"Link": ", ".join(links)} if links else {})

    # --- requests ----------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, authorization: str | None, raw: bytes) -> Answer:
        """Answer one request: (status, JSON body or None, extra headers). Called by the HTTP handler."""
        split = urllib.parse.urlsplit(target)
        path = split.path
        query = dict(urllib.parse.parse_qsl(split.query))
        try:
            try:
                app_only = (method == "POST" and path.startswith("/app/")) or (
                    method == "GET" and path.lower().endswith("/installation")
                )
                self._authenticate(authorization, as_app=app_only)
                if self.on_request is not None:
                    self.on_request(method, path)
                body = json.loads(raw) if raw.strip() else None
            except json.JSONDecodeError:
                raise _HttpError(400, "Problems parsing JSON") from None
            with self._lock:
                self._branch_cache = None
                answer = (self._app_route(method, path) if app_only else None) or self._route(
                    method, path, query, body
                )
        except _HttpError as exc:
            answer = (exc.status, exc.body(), {})
        except Exception as exc:  # noqa: BLE001 (a bug in the fake: answer 500 and keep it for the test)
            self.errors.append(traceback.format_exc())
            answer = (500, {"message": f"FakeGitHub error: {exc!r}"}, {})
        status, payload, _ = answer
        message = None
        if status >= 400 and isinstance(payload, dict):
            details = [e.get("message", "") for e in payload.get("errors") or [] if isinstance(e, dict)]
            message = ": ".join([str(payload.get("message", "")), *[d for d in details if d]])
        self.log.append(LoggedRequest(method, path, query, status, message))
        return answer

    def _authenticate(self, authorization: str | None, *, as_app: bool = False) -> None:
        if not authorization:
            raise _HttpError(401, "Requires authentication")
        scheme, _, credential = authorization.partition(" ")
        if as_app:  # the App's own endpoints take its JWT, nothing else
            self._check_jwt(scheme, credential)
            return
        if scheme.lower() not in ("token", "bearer") or not self._token_ok(credential):
            raise _HttpError(401, "Bad credentials")

    def _token_ok(self, credential: str) -> bool:
        if secrets.compare_digest(credential, self.token):
            return True
        expires = self.minted.get(credential)
        return expires is not None and self.now() < expires

    def _check_jwt(self, scheme: str, credential: str) -> None:
        import jwt

        if self.app_id is None or scheme.lower() != "bearer":
            raise _HttpError(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(credential, self._app_public_key, algorithms=["RS256"],
                                options={"verify_exp": False, "verify_iat": False})  # fmt: skip
        except jwt.PyJWTError:
            raise _HttpError(401, "A JSON web token could not be decoded") from None
        # Against the minting process's clock, which is real time: the fake's clock (advance()) models the
        # hours a run has been going since earlier tokens were minted, not a skewed clock.
        now = datetime.now(UTC).timestamp()
        if str(claims.get("iss")) != self.app_id:
            raise _HttpError(401, "'Issuer' claim ('iss') must be an Integer")
        if not claims.get("iat") or claims["iat"] > now + 60 or not claims.get("exp") or claims["exp"] < now:
            raise _HttpError(401, "'Expiration time' claim ('exp') must be a numeric value representing the "
                                  "future time at which the assertion expires")  # fmt: skip
        if claims["exp"] - claims["iat"] > 11 * 60:
            raise _HttpError(401, "'Expiration time' claim ('exp') is too far in the future")

    def _app_route(self, method: str, path: str) -> Answer | None:
        """The App's endpoints (JWT), or None when ``path`` is not one of them."""
        if method == "GET" and path.lower() == f"/repos/{self.owner}/{self.name}/installation".lower():
            return 200, self._installation_json(), {}
        match = re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)
        if method == "POST" and match:
            if int(match[1]) != self.installation_id:
                raise _not_found()
            token = f"ghs_inst{secrets.token_hex(16)}"
            expires = self.now().replace(microsecond=0) + timedelta(hours=1)
            self.minted[token] = expires
            permissions = {
                "contents": "write",
                "pull_requests": "write",
                "issues": "write",
                "metadata": "read",
            }
            return 201, {"token": token, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "permissions": permissions, "repository_selection": "selected"}, {}  # fmt: skip
        return None

    def _installation_json(self) -> dict[str, Any]:
        return {
            "id": self.installation_id,
            "app_id": int(self.app_id or 0),
            "app_slug": "edgeops-release",
            "target_type": "Organization",
            "account": self._user_json(self.owner, "Organization"),
            "permissions": {"contents": "write", "pull_requests": "write", "issues": "write"},
            "repository_selection": "selected",
            "access_tokens_url": f"{self.base_url}/app/installations/{self.installation_id}/access_tokens",
            "repositories_url": f"{self.base_url}/installation/repositories",
            "html_url": f"{self.base_url}/organizations/{self.owner}/settings/installations/1",
            "events": [],
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        }

    def handle_git(self, method: str, target: str, authorization: str | None, raw: bytes,
                   content_type: str | None) -> tuple[int, list[tuple[str, str]], bytes]:  # fmt: skip
        """Git's smart HTTP for ``/{o}/{r}.git/...``: ``git http-backend`` behind the token check."""
        split = urllib.parse.urlsplit(target)
        prefix = f"/{self.owner}/{self.name}.git"
        rest = split.path[len(prefix) :]
        scheme, _, credential = (authorization or "").partition(" ")
        token = ""
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                _user, _, token = base64.b64decode(credential).decode().partition(":")
        if not token or not self._token_ok(token):
            self.log.append(LoggedRequest(method, split.path, {}, 401, "git: Invalid username or token"))
            return 401, [("WWW-Authenticate", 'Basic realm="GitHub"')], b"Invalid username or token.\n"
        env = dict(os.environ, GIT_PROJECT_ROOT=str(self.git_dir.parent), GIT_HTTP_EXPORT_ALL="1",
                   PATH_INFO=f"/{self.git_dir.name}{rest}", REQUEST_METHOD=method,
                   QUERY_STRING=split.query, CONTENT_TYPE=content_type or "", REMOTE_USER="x-access-token",
                   REMOTE_ADDR="127.0.0.1", CONTENT_LENGTH=str(len(raw)), GIT_CONFIG_GLOBAL=os.devnull,
                   GIT_CONFIG_NOSYSTEM="1")  # fmt: skip
        with self._lock:  # one writer at a time, as the API's merges
            out = subprocess.run(
                ["git", "http-backend"], input=raw, env=env, capture_output=True, check=False
            )
            self._branch_cache = None
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, body = out.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        self.log.append(
            LoggedRequest(method, split.path, dict(urllib.parse.parse_qsl(split.query)), status, None)
        )
        return status, headers, body

    def _route(self, method: str, path: str, query: dict[str, str], body: Json) -> Answer:
        match = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/.*)?", path)
        if match and (match[1].lower(), match[2].lower()) == (self.owner.lower(), self.name.lower()):
            rest = match[3] or ""
        else:
            match = re.fullmatch(r"/repositories/(\d+)(/.*)?", path)
            if not match or int(match[1]) != self.repo_id:
                raise _not_found()
            rest = match[2] or ""
        if method != "GET" and self.read_only:
            raise _HttpError(403, "Resource not accessible by integration")
        pull = self._pull
        routes: list[tuple[str, str, Callable[..., Answer]]] = [
            ("GET", r"", lambda: (200, self._repo_json(), {})),
            ("GET", r"/pulls", lambda: self._list_pulls(query)),
            ("POST", r"/pulls", lambda: self._post_pull(body)),
            ("GET", r"/pulls/(\d+)", lambda n: (200, self._pull_json(pull(n), full=True), {})),
            ("PATCH", r"/pulls/(\d+)", lambda n: self._patch_pull(pull(n), body)),
            ("GET", r"/pulls/(\d+)/merge", lambda n: self._merged(pull(n))),
            ("PUT", r"/pulls/(\d+)/merge", lambda n: self._put_merge(pull(n), body)),
            ("GET", r"/pulls/(\d+)/requested_reviewers", lambda n: self._get_reviewers(pull(n))),
            ("POST", r"/pulls/(\d+)/requested_reviewers", lambda n: self._post_reviewers(pull(n), body)),
            ("GET", r"/issues/(\d+)/labels", lambda n: self._get_labels(pull(n), query)),
            ("POST", r"/issues/(\d+)/labels", lambda n: self._post_labels(pull(n), body)),
            ("GET", r"/issues/(\d+)/comments", lambda n: self._list_comments(pull(n), query)),
            ("POST", r"/issues/(\d+)/comments", lambda n: self._post_comment(pull(n), body)),
            ("GET", r"/issues/comments/(\d+)", lambda i: (200, self._comment_json(self._comment(i)), {})),
            ("PATCH", r"/issues/comments/(\d+)", lambda i: self._patch_comment(self._comment(i), body)),
        ]
        for verb, pattern, answer in routes:
            found = re.fullmatch(pattern, rest)
            if found and verb == method:
                return answer(*(int(g) for g in found.groups()))
        raise _not_found()

    def _pull(self, number: int) -> FakePull:
        try:
            return self.pulls[number]
        except KeyError:
            raise _not_found() from None

    def _comment(self, comment_id: int) -> FakeComment:
        try:
            return self.comments[comment_id]
        except KeyError:
            raise _not_found() from None

    @staticmethod
    def _object(body: Json) -> dict[str, Any]:
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise _HttpError(400, "Problems parsing JSON")
        return body

    @staticmethod
    def _strings(value: Json, resource: str, name: str) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _validation({"resource": resource, "field": name, "code": "invalid"})
        return list(value)

    # --- pulls ---------------------------------------------------------------------------------------------

    def _list_pulls(self, query: dict[str, str]) -> Answer:
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _validation({"resource": "PullRequest", "field": "state", "code": "invalid"})
        pulls = [pr for pr in self.pulls.values() if state in ("all", pr.state)]
        if "head" in query:
            user, _, ref = query["head"].partition(":")
            pulls = [pr for pr in pulls if user.lower() == self.owner.lower() and (not ref or pr.head == ref)]
        if "base" in query:
            pulls = [pr for pr in pulls if pr.base == query["base"]]
        sort = query.get("sort", "created")
        direction = query.get("direction", "desc" if sort == "created" else "asc")
        if sort == "updated":
            pulls.sort(key=lambda pr: (pr.updated_at, pr.number))
        else:  # created; popularity and long-running are not modelled
            pulls.sort(key=lambda pr: pr.number)
        if direction == "desc":
            pulls.reverse()
        page, headers = self._paginate(pulls, query, "/pulls")
        return 200, [self._pull_json(pr, full=False) for pr in page], headers

    def _open_exists(self, head: str, base: str) -> bool:
        return any(pr.state == "open" and pr.head == head and pr.base == base for pr in self.pulls.values())

    def _create_pull(self, *, head: str, base: str, title: str, body: str | None) -> FakePull:
        owner, colon, ref = head.rpartition(":")
        if colon and owner.lower() != self.owner.lower():  # a fork: not modelled, and not on this git repo
            raise _validation({"resource": "PullRequest", "field": "head", "code": "invalid"})
        head = ref
        head_sha = self._sha(head)
        if head_sha is None:
            raise _validation({"resource": "PullRequest", "field": "head", "code": "invalid"})
        base_sha = self._sha(base)
        if base_sha is None:
            raise _validation({"resource": "PullRequest", "field": "base", "code": "invalid"})
        if self._open_exists(head, base):
            message = f"A pull request already exists for {self.owner}:{head}."
            raise _validation({"resource": "PullRequest", "code": "custom", "message": message})
        ahead = self._git("rev-list", "--count", f"{base_sha}..{head_sha}").stdout.strip()
        if ahead in ("", "0"):
            message = f"No commits between {base} and {head}"
            raise _validation({"resource": "PullRequest", "code": "custom", "message": message})
        number = max(self.pulls, default=0) + 1
        now = _now()
        pr = FakePull(
            number=number, id=1_900_000_000 + number, head=head, base=base, title=title, body=body,
            user=self.user, head_sha=head_sha, base_sha=base_sha, created_at=now, updated_at=now,
        )  # fmt: skip
        self.pulls[number] = pr
        return pr

    def _post_pull(self, raw: Json) -> Answer:
        body = self._object(raw)
        for name in ("head", "base"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise _validation({"resource": "PullRequest", "field": name, "code": "missing_field"})
        if not isinstance(body.get("title"), str) or not body["title"]:  # no ``issue`` conversion here
            raise _validation({"resource": "PullRequest", "field": "title", "code": "missing_field"})
        text = body.get("body") if isinstance(body.get("body"), str) else None
        pr = self._create_pull(head=body["head"], base=body["base"], title=body["title"], body=text)
        url = f"{self._api}/pulls/{pr.number}"
        return 201, self._pull_json(pr, full=True), {"Location": url}

    def _patch_pull(self, pr: FakePull, raw: Json) -> Answer:
        body = self._object(raw)
        self._refresh(pr)
        if "title" in body:
            if not isinstance(body["title"], str) or not body["title"]:
                raise _validation({"resource": "PullRequest", "field": "title", "code": "missing_field"})
            pr.title = body["title"]
        if "body" in body:
            pr.body = body["body"] if isinstance(body["body"], str) else None
        if "base" in body and body["base"] != pr.base:
            base = body["base"]
            if pr.state != "open":
                message = "Cannot change the base branch of a closed pull request."
                raise _validation({"resource": "PullRequest", "code": "custom", "message": message})
            if not isinstance(base, str) or self._sha(base) is None:
                raise _validation({"resource": "PullRequest", "field": "base", "code": "invalid"})
            if self._open_exists(pr.head, base):
                message = (
                    f"A pull request already exists for base branch '{base}' and head branch '{pr.head}'"
                )
                raise _validation({"resource": "PullRequest", "code": "custom", "message": message})
            pr.base = base
            pr.base_sha = self._sha(base) or pr.base_sha
        if "state" in body and body["state"] != pr.state:
            state = body["state"]
            if state not in ("open", "closed"):
                raise _validation({"resource": "PullRequest", "field": "state", "code": "invalid"})
            if pr.merged:
                message = "State cannot be changed. The pull request has been merged."
                raise _validation({"resource": "PullRequest", "code": "custom", "message": message})
            if state == "closed":
                pr.state, pr.closed_at = "closed", _now()
            else:
                if self._sha(pr.head) is None:
                    message = f"State cannot be changed. The {pr.head} branch has been deleted."
                    raise _validation({"resource": "PullRequest", "code": "custom", "message": message})
                if self._open_exists(pr.head, pr.base):
                    message = f"A pull request already exists for {self.owner}:{pr.head}."
                    raise _validation({"resource": "PullRequest", "code": "custom", "message": message})
                pr.state, pr.closed_at = "open", None
                self._refresh(pr)
        pr.updated_at = _now()
        return 200, self._pull_json(pr, full=True), {}

    def _merged(self, pr: FakePull) -> Answer:
        if pr.merged:
            return 204, None, {}
        raise _not_found()

    def _put_merge(self, pr: FakePull, raw: Json) -> Answer:
        body = self._object(raw)
        if pr.state != "open":
            raise _HttpError(405, "Pull Request is not mergeable")
        method = body.get("merge_method", "merge")
        if method not in ("merge", "squash", "rebase"):
            raise _validation({"resource": "PullRequest", "field": "merge_method", "code": "invalid"})
        if method != "merge":
            raise _HttpError(405, f"FakeGitHub implements merge_method=merge only, not {method}")
        self._refresh(pr)
        if self._sha(pr.head) is None:
            raise _HttpError(405, "Pull Request is not mergeable")
        if body.get("sha") not in (None, pr.head_sha):
            raise _HttpError(409, "Head branch was modified. Review and try the merge again.")
        title = body.get("commit_title") or f"Merge pull request #{pr.number} from {self.owner}/{pr.head}"
        message = body["commit_message"] if isinstance(body.get("commit_message"), str) else pr.title
        sha = self._merge(pr, str(title), message)
        now = _now()
        pr.state, pr.closed_at, pr.merged_at, pr.updated_at = "closed", now, now, now
        pr.merged_by, pr.merge_commit_sha = self.user, sha
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}, {}

    def _get_reviewers(self, pr: FakePull) -> Answer:
        users = [self._user_json(login) for login in pr.requested_reviewers]
        return 200, {"users": users, "teams": [self._team_json(s) for s in pr.requested_teams]}, {}

    def _post_reviewers(self, pr: FakePull, raw: Json) -> Answer:
        body = self._object(raw)
        users = self._strings(body.get("reviewers"), "PullRequest", "reviewers")
        teams = self._strings(body.get("team_reviewers"), "PullRequest", "team_reviewers")
        if pr.user in users:
            raise _HttpError(422, "Review cannot be requested from pull request author.")
        unknown = [u for u in users if self.collaborators is not None and u not in self.collaborators]
        unknown += [t for t in teams if self.teams is not None and t not in self.teams]
        if unknown:
            raise _HttpError(
                422,
                "Reviews may only be requested from collaborators. One or more of the users or teams you "
                f"specified is not a collaborator of the {self.full_name} repository.",
            )
        pr.requested_reviewers += [u for u in dict.fromkeys(users) if u not in pr.requested_reviewers]
        pr.requested_teams += [t for t in dict.fromkeys(teams) if t not in pr.requested_teams]
        pr.updated_at = _now()
        return 201, self._pull_json(pr, full=False), {}

    # --- labels and comments (the issue side of a pull request) -------------------------------------------

    def _get_labels(self, pr: FakePull, query: dict[str, str]) -> Answer:
        page, headers = self._paginate(pr.labels, query, f"/issues/{pr.number}/labels")
        return 200, [self._label_json(name) for name in page], headers

    def _post_labels(self, pr: FakePull, raw: Json) -> Answer:
        names: Json = raw.get("labels") if isinstance(raw, dict) else raw
        if isinstance(names, list):
            names = [n.get("name") if isinstance(n, dict) else n for n in names]
        labels = self._strings(names, "Label", "labels")
        pr.labels += [name for name in dict.fromkeys(labels) if name and name not in pr.labels]
        pr.updated_at = _now()
        return 200, [self._label_json(name) for name in pr.labels], {}

    def _list_comments(self, pr: FakePull, query: dict[str, str]) -> Answer:
        comments = sorted((c for c in self.comments.values() if c.issue_number == pr.number), key=_by_id)
        page, headers = self._paginate(comments, query, f"/issues/{pr.number}/comments")
        return 200, [self._comment_json(c) for c in page], headers

    def _add_comment(self, pr: FakePull, body: str, user: str) -> FakeComment:
        now = _now()
        comment = FakeComment(self._next_comment_id, pr.number, body, user, now, now)
        self._next_comment_id += 1
        self.comments[comment.id] = comment
        pr.updated_at = now
        return comment

    def _post_comment(self, pr: FakePull, raw: Json) -> Answer:
        text = self._object(raw).get("body")
        if not isinstance(text, str) or not text:
            raise _validation({"resource": "IssueComment", "field": "body", "code": "missing_field"})
        comment = self._add_comment(pr, text, self.user)
        return 201, self._comment_json(comment), {"Location": f"{self._api}/issues/comments/{comment.id}"}

    def _patch_comment(self, comment: FakeComment, raw: Json) -> Answer:
        text = self._object(raw).get("body")
        if not isinstance(text, str) or not text:
            raise _validation({"resource": "IssueComment", "field": "body", "code": "missing_field"})
        comment.body, comment.updated_at = text, _now()
        return 200, self._comment_json(comment), {}
