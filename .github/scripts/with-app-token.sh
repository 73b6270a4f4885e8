#!/usr/bin/env bash
# with-app-token.sh COMMAND [ARG...]: run COMMAND with its git calls authenticated as the GitHub App.
#
# The workflows check out with `persist-credentials: false`, so no token is written into .git/config (where
# every later step, and on a self-hosted runner every later job, could read it). The `edgeops` commands
# that fetch, push a bot branch and open a PR (propose, promote, guard, rollback) run under this wrapper
# instead: the App installation token in $GITHUB_TOKEN becomes an HTTP header that git reads from the
# environment (GIT_CONFIG_COUNT/KEY/VALUE, git >= 2.31) for this one process tree, never from a file, and
# the commits are authored by the App's bot account ($APP_SLUG, from actions/create-github-app-token).
set -euo pipefail

: "${GITHUB_TOKEN:?GITHUB_TOKEN must hold the GitHub App installation token}"
: "${APP_SLUG:?APP_SLUG must hold the GitHub App slug (output app-slug of actions/create-github-app-token)}"
server="${GITHUB_SERVER_URL:-https://github.com}"

basic="$(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 | tr -d '\n')"
# The runner masks the token itself; its base64 form is a different string, so mask that too.
if [ -n "${GITHUB_ACTIONS:-}" ]; then
  echo "::add-mask::${basic}"
fi

export GIT_CONFIG_COUNT=1
export GIT_CONFIG_KEY_0="http.${server}/.extraheader"
export GIT_CONFIG_VALUE_0="AUTHORIZATION: basic ${basic}"
export GIT_AUTHOR_NAME="${APP_SLUG}[bot]"
export GIT_AUTHOR_EMAIL="${APP_SLUG}[bot]@users.noreply.github.com"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME"
export GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
unset basic

exec "$@"
