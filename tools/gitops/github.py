"""GitHubForge: the Forge protocol (tools/gitops/forge.py) on GitHub's REST API, through PyGithub.

Same semantics as ``LocalForge``: a pull request is identified by its head branch, opening one for a head
that already has an open PR updates that PR (title, body, base; labels and reviewers are added), the bot's
comment is found by its hidden marker and edited in place, and merging makes a merge commit.

The token: in production ``GITHUB_TOKEN`` holds a GitHub App installation token, not the workflow's default
``GITHUB_TOKEN``, because pull requests opened with the default token trigger no workflows (so the release
PR's checks would never run). The App needs the repository permissions pull requests: write, contents:
write and issues: write. The token is handed to PyGithub and never appears in a message or a log line:
every error message built here is scrubbed of it.

Or the App itself: with ``EDGEOPS_GITHUB_APP_ID`` (the App's ID or Client ID) and its private key in
``EDGEOPS_GITHUB_APP_PRIVATE_KEY`` (PEM text) or ``EDGEOPS_GITHUB_APP_PRIVATE_KEY_FILE``, and no
``GITHUB_TOKEN``, the forge mints the repository's installation token itself (a JWT signed with the key,
then ``POST /app/installations/{id}/access_tokens``) and mints a new one whenever the last is about to
expire (they live one hour). That is for long runs such as the Argo DAG, where a token stored at the start
would be dead by the time the release PR is pushed. ``git_env`` hands the current token to one git process
as an HTTP header in its environment (``GIT_CONFIG_COUNT``), never through a file.

``GITHUB_API_URL`` (set by GitHub Actions; GitHub Enterprise Server's ``https://HOST/api/v3``) selects the
API in ``from_env``; the default is ``https://api.github.com``. The tests run this module unmodified
against ``tests/githubfake.py``, an in-process HTTP fake of the REST endpoints it calls.
"""

from __future__ import annotations

import base64
import contextlib
import os
import urllib.parse
from collections.abc import Iterator, Sequence
from types import TracebackType

import github
from github.GithubException import GithubException, RateLimitExceededException
from github.PullRequest import PullRequest as GhPullRequest
from github.Repository import Repository

from tools.core.errors import ServiceError
from tools.gitops.forge import ForgeError, PullRequest, State, comment_marker

__all__ = ["APP_ID_VARIABLE", "APP_KEY_VARIABLE", "DEFAULT_BASE_URL", "TOKEN_VARIABLE", "GitHubForge"]

DEFAULT_BASE_URL = "https://api.github.com"
TOKEN_VARIABLE = "GITHUB_TOKEN"  # noqa: S105 (the name of the variable, not a secret)
APP_ID_VARIABLE = "EDGEOPS_GITHUB_APP_ID"
APP_KEY_VARIABLE = "EDGEOPS_GITHUB_APP_PRIVATE_KEY"
_API_URL_VARIABLE = "GITHUB_API_URL"
_PERMISSIONS = "pull requests: write, contents: write, issues: write"
_ALREADY_EXISTS = "a pull request already exists"
# PyGithub's own pacing (seconds), which keeps a run under GitHub's secondary rate limits.
_BETWEEN_REQUESTS = 0.25
_BETWEEN_WRITES = 1.0


def _already_exists(exc: GithubException) -> bool:
    """GitHub's 422 for a second open PR with the same head and base."""
    if exc.status != 422 or not isinstance(exc.data, dict):
        return False
    messages = [
        str(error.get("message", "")) for error in exc.data.get("errors") or [] if isinstance(error, dict)
    ]
    return any(_ALREADY_EXISTS in message.lower() for message in messages)


def _github_reason(exc: GithubException) -> str:
    """GitHub's message and its validation errors, in one line."""
    data = exc.data if isinstance(exc.data, dict) else {}
    parts = [str(data.get("message") or exc.message or f"HTTP {exc.status}")]
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            detail = error.get("message") or " ".join(
                str(error[k]) for k in ("resource", "field", "code") if error.get(k)
            )
            parts.append(str(detail))
        else:
            parts.append(str(error))
    return ": ".join(parts)


class GitHubForge:
    """Pull requests of one GitHub repository (``owner/name``)."""

    def __init__(
        self,
        repository: str,
        *,
        token: str | None = None,
        app: tuple[str, str] | None = None,
        base_url: str = DEFAULT_BASE_URL,
        per_page: int = 100,
        timeout: int = 15,
        seconds_between_requests: float | None = _BETWEEN_REQUESTS,
        seconds_between_writes: float | None = _BETWEEN_WRITES,
    ) -> None:
        """``per_page``: page size of every list (GitHub's maximum, 100: fewest requests).

        ``seconds_between_requests`` / ``seconds_between_writes``: PyGithub's pacing, which keeps a release
        run under GitHub's secondary rate limits; the tests turn it off (``None``) against the fake.

        ``token``: an installation token minted elsewhere; or ``app``: (App ID or Client ID, private key
        PEM), and the forge mints the installation's tokens itself, a fresh one when the last expires.
        """
        owner, slash, name = repository.partition("/")
        if not owner or not slash or not name or "/" in name:
            raise ForgeError(f"GitHub repository {repository!r} is not of the form 'owner/name'")
        if not token and not app:
            raise ForgeError(
                f"no GitHub token given for {repository} (set {TOKEN_VARIABLE}, or {APP_ID_VARIABLE} and "
                f"{APP_KEY_VARIABLE})"
            )
        if urllib.parse.urlsplit(base_url).scheme not in ("https", "http") or "://" not in base_url:
            raise ForgeError(f"GitHub API URL {base_url!r} is not an http(s):// URL")
        self.repository = repository
        self.owner = owner
        self.base_url = base_url
        self._tokens: set[str] = {token} if token else set()  # kept only to scrub them from messages
        auth: github.Auth.Auth
        if app is not None:
            auth = self._installation_auth(app, base_url, timeout)
        else:
            assert token is not None
            auth = github.Auth.Token(token)
        self._auth = auth
        self._github = github.Github(
            auth=auth,
            base_url=base_url,
            per_page=per_page,
            timeout=timeout,
            seconds_between_requests=seconds_between_requests,
            seconds_between_writes=seconds_between_writes,
        )
        self._repository: Repository | None = None

    @classmethod
    def from_env(
        cls,
        repository: str,
        base_url: str | None = None,
        *,
        per_page: int = 100,
        timeout: int = 15,
        seconds_between_requests: float | None = _BETWEEN_REQUESTS,
        seconds_between_writes: float | None = _BETWEEN_WRITES,
    ) -> GitHubForge:
        """A forge whose token is ``GITHUB_TOKEN``: in production a GitHub App installation token.

        Not the workflow's default ``GITHUB_TOKEN``: pull requests opened with it trigger no workflows.
        ``base_url`` defaults to ``GITHUB_API_URL`` (set by GitHub Actions), else ``https://api.github.com``.
        """
        token = os.environ.get(TOKEN_VARIABLE, "").strip()
        app = None if token else _app_from_env()
        if not token and app is None:
            raise ForgeError(
                f"{TOKEN_VARIABLE} is not set: export a GitHub App installation token for {repository} "
                f"(repository permissions {_PERMISSIONS}), or the App's {APP_ID_VARIABLE} and "
                f"{APP_KEY_VARIABLE} (or _FILE) to mint one when needed; the workflow's default token will "
                "not do, because pull requests opened with it trigger no workflows"
            )
        url = base_url or os.environ.get(_API_URL_VARIABLE, "").strip() or DEFAULT_BASE_URL
        return cls(repository, token=token or None, app=app, base_url=url, per_page=per_page,
                   timeout=timeout, seconds_between_requests=seconds_between_requests,
                   seconds_between_writes=seconds_between_writes)  # fmt: skip

    def _installation_auth(self, app: tuple[str, str], base_url: str, timeout: int) -> github.Auth.Auth:
        """The App's installation on this repository, as a PyGithub auth that mints (and re-mints) tokens."""
        app_id, key = app
        try:
            app_auth = github.Auth.AppAuth(app_id, key)
            integration = github.GithubIntegration(auth=app_auth, base_url=base_url, timeout=timeout)
            owner, _, name = self.repository.partition("/")
            installation = integration.get_repo_installation(owner, name)
        except GithubException as exc:
            raise ForgeError(
                f"the GitHub App {app_id} could not find its installation on {self.repository} "
                f"(HTTP {exc.status}: {_github_reason(exc)}): install the App on the repository and check "
                f"{APP_ID_VARIABLE} and the private key"
            ) from None
        except (ValueError, TypeError) as exc:  # a key PyJWT/cryptography cannot load
            raise ForgeError(
                f"{APP_KEY_VARIABLE} is not a usable private key: {type(exc).__name__}"
            ) from None
        return app_auth.get_installation_auth(installation.id)

    def current_token(self) -> str:
        """The token requests use now (a fresh installation token when the last one is about to expire)."""
        if isinstance(self._auth, github.Auth.Token):
            return self._auth.token
        # PyGithub's AppInstallationAuth got the client's requester from github.Github(auth=...) and mints
        # a new installation token when the current one is within its refresh threshold of expiring.
        token = str(self._auth.token)
        self._tokens.add(token)
        return token

    def git_env(self, remote_url: str) -> dict[str, str]:
        """Environment for one git process talking to ``remote_url``: the current token (for an App, minted
        now when the last is about to expire) as an HTTP header scoped to that server (git >= 2.31 reads it
        from the environment), never in a file.
        Empty when git's environment already carries configuration (.github/scripts/with-app-token.sh
        sets the same header for the whole job step)."""
        if "GIT_CONFIG_COUNT" in os.environ:
            return {}
        split = urllib.parse.urlsplit(remote_url)
        if split.scheme not in ("http", "https"):
            return {}
        basic = base64.b64encode(f"x-access-token:{self.current_token()}".encode()).decode()
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.{split.scheme}://{split.netloc}/.extraheader",
            "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
        }

    def __repr__(self) -> str:  # never the token
        return f"GitHubForge({self.repository!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        """Close PyGithub's HTTP connections."""
        self._github.close()

    def __enter__(self) -> GitHubForge:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- errors ------------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for token in self._tokens:
            text = text.replace(token, "***")
        return text

    def _translate(self, exc: GithubException, action: str, subject: str | None) -> Exception:
        reason = _github_reason(exc)
        where = f"{self.repository} at {self.base_url}"
        if isinstance(exc, RateLimitExceededException):
            message = f"GitHub's rate limit stopped {action} on {where}: {reason}; retry later"
            return ServiceError(self._scrub(message))
        if exc.status in (401, 403):
            message = (
                f"GitHub refused the token while {action} on {where} (HTTP {exc.status}: {reason}): "
                "the token must be a valid GitHub App installation token with the repository permissions "
                f"{_PERMISSIONS}"
            )
            return ServiceError(self._scrub(message))
        if exc.status == 404 and (self._repository is None or subject is None):
            # GitHub answers 404, not 403, for a private repository the token cannot see.
            message = (
                f"repository {self.repository} not found at {self.base_url} (HTTP 404 while {action}): "
                "check its name, and that the GitHub App is installed on it"
            )
            return ForgeError(self._scrub(message))
        if exc.status == 404:
            return ForgeError(self._scrub(f"{subject} not found in {where} (HTTP 404 while {action})"))
        if 400 <= exc.status < 500:  # a request GitHub will not do: validation, state, conflict
            return ForgeError(
                self._scrub(f"GitHub refused {action} on {where} (HTTP {exc.status}): {reason}")
            )
        message = f"GitHub failed while {action} on {where} (HTTP {exc.status}): {reason}"
        return ServiceError(self._scrub(message))

    @contextlib.contextmanager
    def _api(self, action: str, subject: str | None = None) -> Iterator[None]:
        """Map PyGithub's and the HTTP stack's errors to ForgeError / ServiceError, token-free."""
        try:
            yield
        except GithubException as exc:
            raise self._translate(exc, action, subject) from exc
        except OSError as exc:  # requests' ConnectionError, Timeout and RetryError are OSErrors
            message = f"cannot reach GitHub at {self.base_url} while {action} on {self.repository}: {exc}"
            raise ServiceError(self._scrub(message)) from exc

    # --- PyGithub objects -> PullRequest ---------------------------------------------------------------

    def _repo(self) -> Repository:
        if self._repository is None:
            self._repository = self._github.get_repo(self.repository)  # GET /repos/{owner}/{repo}
        return self._repository

    @staticmethod
    def _state(pr: GhPullRequest) -> State:
        # merged_at is in list items as well as in single PRs; ``merged`` is not, and reading it on a list
        # item makes PyGithub fetch the whole PR.
        if pr.merged_at is not None:
            return "merged"
        return "closed" if pr.state == "closed" else "open"

    def _convert(self, pr: GhPullRequest, *, comments: bool = False) -> PullRequest:
        state = self._state(pr)
        reviewers = [user.login for user in pr.requested_reviewers]
        reviewers += [f"{self.owner}/{team.slug}" for team in pr.requested_teams]
        return PullRequest(
            number=pr.number,
            head=pr.head.ref,
            base=pr.base.ref,
            title=pr.title,
            body=pr.body or "",
            state=state,
            labels=sorted(label.name for label in pr.labels),
            reviewers=sorted(reviewers),
            comments=[c.body or "" for c in pr.get_issue_comments()] if comments else [],
            merge_commit=pr.merge_commit_sha if state == "merged" else None,
            created_at=pr.created_at.isoformat(timespec="seconds") if pr.created_at else "",
            updated_at=pr.updated_at.isoformat(timespec="seconds") if pr.updated_at else "",
            url=pr.html_url,
        )

    def _open_pulls(self, head: str) -> list[GhPullRequest]:
        pulls = self._repo().get_pulls(state="open", head=f"{self.owner}:{head}")
        return sorted(pulls, key=lambda pr: pr.number)

    def _split_reviewers(self, reviewers: Sequence[str]) -> tuple[list[str], list[str]]:
        users: list[str] = []
        teams: list[str] = []
        for reviewer in reviewers:
            org, slash, slug = reviewer.partition("/")
            if not slash:
                users.append(reviewer)
            elif org != self.owner or not slug or "/" in slug:
                raise ForgeError(
                    f"reviewer team {reviewer!r} is not a team of {self.owner}: GitHub can only request "
                    f"reviews from teams of the repository's organization ({self.owner}/TEAM)"
                )
            else:
                teams.append(slug)
        return users, teams

    # --- the protocol -----------------------------------------------------------------------------------

    def find_open_pr(self, head: str) -> PullRequest | None:
        with self._api(f"looking up the open pull request of {head!r}"):
            pulls = self._open_pulls(head)
            return self._convert(pulls[0]) if pulls else None

    def get_pr(self, number: int) -> PullRequest:
        with self._api(f"reading pull request #{number}", f"pull request #{number}"):
            return self._convert(self._repo().get_pull(number), comments=True)

    def list_prs(self, *, state: State | None = None, label: str | None = None) -> list[PullRequest]:
        # GitHub's states are open and closed; closed includes merged (merged_at set).
        query = {None: "all", "open": "open", "closed": "closed", "merged": "closed"}[state]
        with self._api("listing pull requests"):
            pulls = self._repo().get_pulls(state=query, sort="created", direction="asc")
            found = [self._convert(pr) for pr in pulls]
        wanted = [pr for pr in found if state is None or pr.state == state]
        return sorted((pr for pr in wanted if label is None or label in pr.labels), key=lambda pr: pr.number)

    def open_or_update_pr(
        self, *, head: str, base: str, title: str, body: str, labels: Sequence[str] = (),
        reviewers: Sequence[str] = (),
    ) -> PullRequest:  # fmt: skip
        users, teams = self._split_reviewers(reviewers)
        with self._api(f"opening or updating the pull request of {head!r} into {base!r}"):
            # Look up first: GitHub refuses a second open PR only for the same head *and* base, so creating
            # first would open a second PR when the base changed. The 422 below is the race where another
            # run opened the PR between the lookup and the create.
            pulls = self._open_pulls(head)
            if not pulls:
                try:
                    pulls = [self._repo().create_pull(base=base, head=head, title=title, body=body)]
                except GithubException as exc:
                    if not _already_exists(exc):
                        raise
                    pulls = self._open_pulls(head)
                    if not pulls:
                        raise
                    pulls[0].edit(title=title, body=body, base=base)
            else:
                pulls[0].edit(title=title, body=body, base=base)
            pr = pulls[0]
            changed = False
            missing_labels = sorted(set(labels) - {label.name for label in pr.labels})
            if missing_labels:
                pr.add_to_labels(*missing_labels)
                changed = True
            missing_users = sorted(set(users) - {user.login for user in pr.requested_reviewers})
            missing_teams = sorted(set(teams) - {team.slug for team in pr.requested_teams})
            if missing_users or missing_teams:
                pr.create_review_request(reviewers=missing_users, team_reviewers=missing_teams)
                changed = True
            if changed:  # PyGithub does not update the object from those two calls' answers: read it again
                pr = self._repo().get_pull(pr.number)
            return self._convert(pr)

    def upsert_comment(self, number: int, key: str, body: str) -> None:
        marker = comment_marker(key)
        text = f"{marker}\n{body}"
        with self._api(f"writing the {key!r} comment on pull request #{number}", f"pull request #{number}"):
            pr = self._repo().get_pull(number)
            for comment in pr.get_issue_comments():  # every page: PaginatedList follows the Link headers
                if (comment.body or "").startswith(marker):
                    if comment.body != text:
                        comment.edit(text)
                    return
            pr.create_issue_comment(text)

    def close_pr(self, number: int, *, comment: str | None = None) -> PullRequest:
        with self._api(f"closing pull request #{number}", f"pull request #{number}"):
            pr = self._repo().get_pull(number)
            state = self._state(pr)
            if state != "open":
                raise ForgeError(f"pull request #{number} is {state}, not open")
            if comment:
                pr.create_issue_comment(comment)
            pr.edit(state="closed")
            return self._convert(pr, comments=True)

    def merge_pr(self, number: int) -> PullRequest:
        """Merge with a merge commit (``merge_method="merge"``), only if the head is still what was read."""
        with self._api(f"merging pull request #{number}", f"pull request #{number}"):
            pr = self._repo().get_pull(number)
            state = self._state(pr)
            if state != "open":
                raise ForgeError(f"pull request #{number} is {state}, not open: it cannot be merged")
            try:
                status = pr.merge(merge_method="merge", sha=pr.head.sha)
            except GithubException as exc:
                if exc.status in (405, 409):  # not mergeable (conflict, protection) / head moved meanwhile
                    message = f"pull request #{number} cannot be merged: {_github_reason(exc)}"
                    raise ForgeError(self._scrub(message)) from exc
                raise
            if not status.merged:
                raise ForgeError(f"pull request #{number} was not merged: {status.message}")
            return self._convert(self._repo().get_pull(number), comments=True)


def _app_from_env() -> tuple[str, str] | None:
    """(App ID, private key PEM) from the environment, or None when the App is not configured."""
    app_id = os.environ.get(APP_ID_VARIABLE, "").strip()
    key = os.environ.get(APP_KEY_VARIABLE, "")
    key_file = os.environ.get(f"{APP_KEY_VARIABLE}_FILE", "").strip()
    if not app_id:
        if key or key_file:
            raise ForgeError(f"{APP_KEY_VARIABLE} is set but {APP_ID_VARIABLE} is not: set the App's ID")
        return None
    if not key and key_file:
        try:
            with open(key_file, encoding="utf-8") as f:
                key = f.read()
        except OSError as exc:
            raise ForgeError(f"{APP_KEY_VARIABLE}_FILE {key_file}: {exc.strerror}") from None
    if not key.strip():
        raise ForgeError(f"{APP_ID_VARIABLE} is set but neither {APP_KEY_VARIABLE} nor its _FILE is")
    return app_id, key
