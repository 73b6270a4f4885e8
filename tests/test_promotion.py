"""Release pull requests end to end (tools/gitops/promotion.py), with real git (a bare remote and clones),
real PostgreSQL telemetry and both forges: LocalForge, and GitHubForge through PyGithub against FakeGitHub
(tests/githubfake.py, an in-process fake of GitHub's REST API backed by the same bare repository).

propose → merge → propose newer ones (the older PR is closed) → promote refused before soak (clock
injected) → refused on bad telemetry → promoted (the diff is the release lines alone) → rollback by revert →
``validate pr`` accepts the revert and rejects a fleet bump that skips pilot, a PR touching both rings and
a release PR that also edits a manifest.

These runs give fleet ``waves: [100]``: a ring without waves behaves exactly as before waves existed (a
promotion copies the release whole, a rollback is a revert). Rollouts in waves are tests/test_waves.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.conftest import EDGEOPS, Roles
from tests.releasekit import Keys, git, keys, make_checkout, publish, telemetry_rows
from tools.artifacts.release import edit_release_text, load_release, make_release, parse_release
from tools.gitops.forge import Forge, LocalForge
from tools.gitops.policy import validate_pr
from tools.gitops.promotion import (
    PromotionError,
    Workspace,
    guard,
    promote,
    propose,
    render_status,
    rollback,
    status,
)

PILOT = [f"pilot-{i}" for i in range(5)]
FLEET = [f"fleet-{i:02d}" for i in range(20)]
PILOT_FILE = "environments/pilot/release.yaml"
FLEET_FILE = "environments/fleet/release.yaml"
# The lines a release consists of: a promotion's diff may touch these and nothing else.
RELEASE_LINE = re.compile(
    r"^[+-](version|interface|bundle|files|  model\.onnx|  golden\.json|signature|metrics|source):"
)


@dataclass
class Setup:
    work: Path
    remote: Path
    store: str
    keys: Keys
    forge: Forge
    dsn: str
    fake: Any = None  # the FakeGitHub behind a GitHubForge

    def workspace(self, now: datetime | None = None) -> Workspace:
        return Workspace.open(self.work / "edgeops.yaml", forge=self.forge, now=now)

    def merge(self, number: int) -> datetime:
        self.forge.merge_pr(number)
        git(self.work, "fetch", "--quiet", "origin")
        return datetime.fromtimestamp(int(git(self.work, "show", "-s", "--format=%ct", "origin/main")), UTC)


@pytest.fixture(params=["local", "github"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, git_remote: Path, pg_dsn: str) -> Iterator[Setup]:
    from tools.core.pg import connect
    from tools.gitops.telemetry import ensure_schema, register_devices

    k = keys()
    store = f"file://{tmp_path / 'store'}"
    work = make_checkout(tmp_path, git_remote, k, store=store)
    whole_fleet(work)
    conn = connect(pg_dsn)
    with conn:
        ensure_schema(conn)
        register_devices(conn, {**dict.fromkeys(PILOT, "pilot"), **dict.fromkeys(FLEET, "fleet")})
    conn.close()
    if request.param == "local":
        yield Setup(work, git_remote, store, k, LocalForge(git_remote), pg_dsn)
        return
    from tests.githubfake import FakeGitHub
    from tools.gitops.github import GitHubForge

    with FakeGitHub(git_remote, repository="context-edge/edgeops") as fake:
        forge = GitHubForge(
            "context-edge/edgeops", token=fake.token, base_url=fake.base_url, seconds_between_requests=None,
            seconds_between_writes=None,
        )  # fmt: skip
        yield Setup(work, git_remote, store, k, forge, pg_dsn, fake)


def whole_fleet(work: Path) -> None:
    """Commit and push fleet ``waves: [100]`` (the repository's edgeops.yaml rolls fleet out in waves)."""
    text = (work / "edgeops.yaml").read_text()
    assert "    waves: [5, 25, 100]\n" in text
    (work / "edgeops.yaml").write_text(text.replace("    waves: [5, 25, 100]\n", "    waves: [100]\n"))
    git(work, "commit", "--quiet", "-am", "fleet: the whole ring at once")
    git(work, "push", "--quiet", "origin", "HEAD:main")


def _insert(dsn: str, rows: list[Any], *, clear: str | None = None) -> None:
    from tools.core.pg import connect
    from tools.gitops.telemetry import insert_predictions

    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        if clear:
            cur.execute("DELETE FROM predictions WHERE model_version = %s", (clear,))
        insert_predictions(conn, rows)
    conn.close()


def _branch_diff(work: Path, branch: str) -> str:
    return git(work, "diff", f"origin/main...origin/{branch}")


def test_the_whole_release_flow(setup: Setup) -> None:
    s = setup
    v10 = publish(s.store, "v1.0", s.keys, accuracy=0.93)
    v11 = publish(s.store, "v1.1", s.keys, accuracy=0.94, fleet=("v1.0", 0.93))
    v12 = publish(s.store, "v1.2", s.keys, accuracy=0.951, fleet=("v1.0", 0.93))

    # --- propose, twice: one PR, updated; the branch changes the pilot release file only -----------------
    first = propose(s.workspace(), ring="pilot", bundle_uri=v10, private_key=s.keys.private)
    again = propose(s.workspace(), ring="pilot", bundle_uri=v10, private_key=s.keys.private)
    assert again.pr.number == first.pr.number and first.pushed and not again.pushed
    assert [pr.number for pr in s.forge.list_prs(state="open")] == [first.pr.number]
    if s.fake is not None:  # one create; the second run found the PR by its head and edited it
        assert [r.status for r in s.fake.calls("POST", r".*/pulls")] == [201]
        assert len(s.fake.calls("PATCH", rf".*/pulls/{first.pr.number}")) == 1
    assert first.pr.title == "pilot: model v1.0 (accuracy 93.0%, first release)"
    assert {"model-release", "ring:pilot"} <= set(first.pr.labels)
    assert "context-edge/fleet-owners" in first.pr.reviewers  # from CODEOWNERS for /environments/
    assert "```mermaid\nxychart-beta" in first.pr.body and "How to roll back" in first.pr.body
    assert git(s.work, "diff", "--name-only", "origin/main...origin/release/pilot/v1.0") == PILOT_FILE
    message = git(s.work, "log", "-1", "--format=%B", "origin/release/pilot/v1.0")
    assert "Model-Version: v1.0" in message and "Dataset: sha256:" in message and "Run: runs/v1.0" in message
    merged = s.merge(first.pr.number)

    # --- v1.0 soaks and is promoted to an empty fleet, so fleet has a history to roll back to ----------
    _insert(s.dsn, telemetry_rows("v1.0", PILOT, merged))
    decision = promote(s.workspace(merged + timedelta(hours=25)), from_ring="pilot", dsn=s.dsn)
    assert decision.allowed and decision.pr is not None, [g.detail for g in decision.gates]
    s.merge(decision.pr.number)

    # --- newer proposals: v1.1, then v1.2 closes v1.1's PR with a pointer to its successor --------------
    p11 = propose(s.workspace(), ring="pilot", bundle_uri=v11, private_key=s.keys.private)
    assert p11.pr.title == "pilot: model v1.1 (accuracy 94.0%, +1.0 pts vs fleet v1.0)"
    p12 = propose(s.workspace(), ring="pilot", bundle_uri=v12, private_key=s.keys.private)
    assert p12.superseded == [p11.pr.number]
    closed = s.forge.get_pr(p11.pr.number)
    assert closed.state == "closed"
    if s.fake is None:
        assert len(closed.comments) == 1
        assert closed.comments[0].startswith(f"Superseded by #{p12.pr.number} (v1.2): only the newest")
    else:
        bodies = [c.body for c in s.fake.comments.values() if c.issue_number == p11.pr.number]
        assert len(bodies) == 1 and bodies[0].startswith(f"Superseded by #{p12.pr.number} (v1.2)")
    assert [pr.number for pr in s.forge.list_prs(state="open")] == [p12.pr.number]
    merged = s.merge(p12.pr.number)

    # --- promote refused before the soak time (clock injected, not slept) ------------------------------
    _insert(s.dsn, telemetry_rows("v1.2", PILOT, merged))
    early = promote(s.workspace(merged + timedelta(hours=1)), from_ring="pilot", dsn=s.dsn)
    assert not early.allowed and early.pr is None
    soak = next(g for g in early.gates if g.name == "soak_hours")
    assert not soak.passed and "23.0 h to go" in soak.detail

    # --- refused on bad telemetry: 20 of 100 failing windows missed --------------------------------------
    _insert(s.dsn, telemetry_rows("v1.2", PILOT, merged, missed=20), clear="v1.2")
    later = merged + timedelta(hours=25)
    bad = promote(s.workspace(later), from_ring="pilot", dsn=s.dsn)
    failed = {g.name for g in bad.gates if not g.passed}
    assert not bad.allowed and "fn_rate" in failed and "soak_hours" not in failed
    assert bad.telemetry is not None and bad.telemetry.fn_rate == pytest.approx(0.2)
    # Each refusal edits one bot comment on v1.2's pilot PR instead of adding one per run.
    marker = "<!-- edgeops:promotion-fleet -->"
    if s.fake is None:
        notes = [c for c in s.forge.get_pr(p12.pr.number).comments if c.startswith(marker)]
    else:
        notes = [c.body for c in s.fake.comments.values() if c.issue_number == p12.pr.number]
    assert len(notes) == 1 and "Not promoted to fleet yet" in notes[0] and "fn_rate" in notes[0]

    # --- promoted once the telemetry is good; the diff is the release lines alone --------------------------
    _insert(s.dsn, telemetry_rows("v1.2", PILOT, merged), clear="v1.2")
    dry = promote(s.workspace(later), from_ring="pilot", dsn=s.dsn, dry_run=True)
    assert dry.allowed and dry.pr is None
    good = promote(s.workspace(later), from_ring="pilot", dsn=s.dsn)
    assert good.allowed and good.pr is not None
    assert "promotion" in good.pr.labels and "| nodes reporting v1.2 | 5 of 5 |" in good.pr.body
    diff = _branch_diff(s.work, "promote/fleet/v1.2")
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert changed and all(RELEASE_LINE.match(ln) for ln in changed), changed
    assert sum(ln.startswith("-version: v1.0") for ln in changed) == 1
    assert git(s.work, "diff", "--name-only", "origin/main...origin/promote/fleet/v1.2") == FLEET_FILE
    ws = s.workspace()
    ok = validate_pr(ws.repo, ws.cfg, base="origin/main", head="origin/promote/fleet/v1.2", now=later)
    assert ok.ok, ok.render()
    early_check = validate_pr(
        ws.repo, ws.cfg, base="origin/main", head="origin/promote/fleet/v1.2", now=merged + timedelta(hours=2)
    )
    assert [f.rule for f in early_check.findings] == ["soak"]
    fleet_v10_text = git(s.work, "show", f"origin/main:{FLEET_FILE}")
    s.merge(good.pr.number)
    assert load_release(s.work / FLEET_FILE) is None  # the checkout itself was never touched
    git(s.work, "merge", "--quiet", "--ff-only", "origin/main")
    fleet_now = load_release(s.work / FLEET_FILE)
    pilot_now = load_release(s.work / PILOT_FILE)
    assert fleet_now == pilot_now and fleet_now is not None and fleet_now.version == "v1.2"

    # --- rollback by revert; validate pr accepts it -------------------------------------------------------
    rb = rollback(s.workspace(), ring="fleet")
    assert (rb.current, rb.target) == ("v1.2", "v1.0") and rb.reverted is not None
    assert "rollback" in rb.pr.labels
    parents = git(s.work, "show", "-s", "--format=%P", rb.reverted).split()
    assert len(parents) == 2  # the merge commit of the promotion PR, reverted with -m 1
    assert git(s.work, "show", f"origin/rollback/fleet/v1.2:{FLEET_FILE}") == fleet_v10_text
    assert f"This reverts commit {rb.reverted}." in git(
        s.work, "log", "-1", "--format=%B", "origin/rollback/fleet/v1.2"
    )
    accepted = validate_pr(s.workspace().repo, s.workspace().cfg, base="origin/main",
                           head="origin/rollback/fleet/v1.2", now=later)  # fmt: skip
    assert accepted.ok and "rollback" in accepted.rings["fleet"], accepted.render()
    s.merge(rb.pr.number)

    # --- validate pr rejects what must not merge -------------------------------------------------------
    v13 = publish(s.store, "v1.3", s.keys, accuracy=0.96)
    ws = s.workspace()
    from tools.artifacts.bundle import verify_bundle_uri
    from tools.core.signing import public_key_from_pem

    files = verify_bundle_uri(v13, public_key_from_pem(s.keys.public_pem, source="test")).files
    release13 = make_release(s.keys.private, version="v1.3", interface=fleet_now.interface, bundle=v13,
                             files={n: files[n] for n in ("model.onnx", "golden.json")})  # fmt: skip

    def hand_made(branch: str, edits: dict[str, str | None]) -> list[str]:
        git(s.work, "checkout", "--quiet", "-B", branch, "origin/main")
        for path, ring in edits.items():
            file = s.work / path
            if ring is None:
                file.write_text(file.read_text() + "# a manifest edit\n")
            else:
                file.write_text(edit_release_text(file.read_text(), release13, ring=ring, source=path))
        git(s.work, "commit", "--quiet", "-am", f"hand-made {branch}")
        report = validate_pr(ws.repo, ws.cfg, base="origin/main", head="HEAD", now=later + timedelta(days=30))
        git(s.work, "checkout", "--quiet", "main")
        return sorted({f.rule for f in report.findings})

    assert hand_made("skip-pilot", {FLEET_FILE: "fleet"}) == ["soak"]
    assert hand_made("both-rings", {PILOT_FILE: "pilot", FLEET_FILE: "fleet"}) == ["one-ring", "soak"]
    assert hand_made(
        "with-manifest", {PILOT_FILE: "pilot", "manifests/model-updater/daemonset.yaml": None}
    ) == ["release-only"]
    # A release whose signed fields were edited by hand does not verify.
    git(s.work, "checkout", "--quiet", "-B", "tampered", "origin/main")
    text = (s.work / PILOT_FILE).read_text()
    (s.work / PILOT_FILE).write_text(text.replace("bytes: ", "bytes: 1", 1))
    git(s.work, "commit", "--quiet", "-am", "tampered")
    tampered = validate_pr(ws.repo, ws.cfg, base="origin/main", head="HEAD", now=later)
    git(s.work, "checkout", "--quiet", "main")
    # Both: the signature no longer verifies, and v1.2 would be re-pinned with other signed content.
    assert [f.rule for f in tampered.findings] == ["release-file", "forward"]
    assert "were changed after signing" in tampered.findings[0].message


def test_guard_opens_one_rollback_pr_and_status_reports(setup: Setup) -> None:
    s = setup
    v10 = publish(s.store, "v1.0", s.keys, accuracy=0.93)
    v11 = publish(s.store, "v1.1", s.keys, accuracy=0.94, fleet=("v1.0", 0.93))
    s.merge(propose(s.workspace(), ring="pilot", bundle_uri=v10, private_key=s.keys.private).pr.number)
    merged = s.merge(
        propose(s.workspace(), ring="pilot", bundle_uri=v11, private_key=s.keys.private).pr.number
    )
    now = merged + timedelta(hours=3)

    _insert(s.dsn, telemetry_rows("v1.1", PILOT, merged, per_device=10))
    calm = guard(s.workspace(now), ring="pilot", dsn=s.dsn)
    assert not calm.breached and calm.rollback is None  # 50 validated < 200: labels not judged, no errors

    _insert(
        s.dsn, telemetry_rows("v1.1", PILOT, merged, per_device=60, errors=30, latency_ms=80.0), clear="v1.1"
    )
    one = guard(s.workspace(now), ring="pilot", dsn=s.dsn)
    two = guard(s.workspace(now), ring="pilot", dsn=s.dsn)
    assert one.breached and one.rollback is not None and two.rollback is not None
    assert {g.name for g in one.gates if not g.passed} == {"error_rate", "p95_latency_ms"}
    assert one.rollback.pr.number == two.rollback.pr.number
    assert {"rollback", "auto"} <= set(one.rollback.pr.labels)
    assert "| ❌" in one.rollback.pr.body or "❌" in one.rollback.pr.body
    assert len([p for p in s.forge.list_prs(state="open") if p.head.startswith("rollback/")]) == 1
    assert git(s.work, "show", f"origin/rollback/pilot/v1.1:{PILOT_FILE}").count("version: v1.0") == 1

    report = status(s.workspace(now), dsn=s.dsn)
    pilot = report["rings"][0]
    assert (pilot["ring"], pilot["version"], pilot["hours"]) == (
        "pilot",
        "v1.1",
        pytest.approx(3.0, abs=0.01),
    )
    assert pilot["soak"]["hours_left"] == pytest.approx(21.0, abs=0.01) and not pilot["soak"]["done"]
    assert [pr["number"] for pr in pilot["prs"]] == [one.rollback.pr.number]
    assert pilot["telemetry"]["errors"] == 30
    assert report["rings"][1]["version"] is None
    text = render_status(report)
    assert "pilot: v1.1 since" in text and "soak: 21.0 h left of 24 h before fleet" in text
    assert (
        f"PR #{one.rollback.pr.number} open: pilot: roll back v1.1 → v1.0" in text
        and "fleet: no release" in text
    )


def test_refusals_say_what_to_do(setup: Setup) -> None:
    s = setup
    v10 = publish(s.store, "v1.0", s.keys)
    with pytest.raises(PromotionError, match=r"first ring \(pilot\) only.*edgeops promote --from pilot"):
        propose(s.workspace(), ring="fleet", bundle_uri=v10, private_key=s.keys.private)
    with pytest.raises(PromotionError, match="not the one nodes trust"):
        propose(s.workspace(), ring="pilot", bundle_uri=v10, private_key=keys().private)
    with pytest.raises(PromotionError, match="pilot has no release to promote"):
        promote(s.workspace(), from_ring="pilot", dsn=s.dsn)
    with pytest.raises(PromotionError, match="nothing to roll back"):
        rollback(s.workspace(), ring="fleet")
    s.merge(propose(s.workspace(), ring="pilot", bundle_uri=v10, private_key=s.keys.private).pr.number)
    with pytest.raises(PromotionError, match=r"pilot already runs v1\.0"):
        propose(s.workspace(), ring="pilot", bundle_uri=v10, private_key=s.keys.private)
    with pytest.raises(PromotionError, match=r"never ran v0\.9"):
        rollback(s.workspace(), ring="pilot", to="v0.9")
    # A damaged bundle is never proposed.
    v11 = publish(s.store, "v1.1", s.keys)
    (Path(v11[len("file://") :]) / "model.onnx").write_bytes(b"swapped")
    with pytest.raises(PromotionError, match="does not match SHA256SUMS"):
        propose(s.workspace(), ring="pilot", bundle_uri=v11, private_key=s.keys.private)
    assert parse_release((s.work / PILOT_FILE).read_text(), source="x") is None  # checkout untouched


def _cli(work: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("EDGEOPS_CONFIG", None)
    return subprocess.run(
        [str(EDGEOPS), *args], cwd=work, capture_output=True, text=True, env=full, check=False
    )


def test_the_cli_drives_the_same_flow(tmp_path: Path, git_remote: Path, pg_dsn: str, pg_roles: Roles) -> None:
    k = keys()
    store = f"file://{tmp_path / 'store'}"
    work = make_checkout(tmp_path, git_remote, k, store=store)
    v10 = publish(store, "v1.0", k)
    secret = {"EDGEOPS_SIGNING_KEY": k.private_pem.decode()}

    first = _cli(work, "propose", "--ring", "pilot", "--bundle", v10, env=secret)
    assert first.returncode == 0, first.stderr
    assert "PR #1" in first.stdout and "branch release/pilot/v1.0 (pushed)" in first.stdout
    again = _cli(work, "propose", "--bundle", v10, env=secret)
    assert again.returncode == 0 and "PR #1" in again.stdout and "(already up to date)" in again.stdout
    assert "PRIVATE KEY" not in first.stdout + first.stderr + again.stdout + again.stderr
    no_key = _cli(
        work, "propose", "--bundle", v10, env={"EDGEOPS_SIGNING_KEY": "", "EDGEOPS_SIGNING_KEY_FILE": ""}
    )
    assert no_key.returncode == 1 and "no signing key" in no_key.stderr

    # The PR's head passes the required check; a hand-made fleet bump does not (exit 1, a line per problem).
    git(work, "fetch", "--quiet")
    accepted = _cli(work, "validate", "pr", "--base", "origin/main", "--head", "origin/release/pilot/v1.0")
    assert accepted.returncode == 0 and "pilot: new release no release → v1.0" in accepted.stdout
    git(work, "checkout", "--quiet", "-b", "skip", "origin/release/pilot/v1.0")
    (work / FLEET_FILE).write_text((work / PILOT_FILE).read_text().replace('ring "pilot"', 'ring "fleet"'))
    git(work, "commit", "--quiet", "-am", "fleet too")
    rejected = _cli(work, "validate", "pr", "--base", "origin/main", "--head", "HEAD", "--json")
    assert rejected.returncode == 1
    assert {f["rule"] for f in json.loads(rejected.stdout)["findings"]} == {"one-ring", "soak"}
    git(work, "checkout", "--quiet", "main")

    LocalForge(git_remote).merge_pr(1)
    report = _cli(work, "status", "--json")
    assert report.returncode == 0, report.stderr
    rings = {r["ring"]: r for r in json.loads(report.stdout)["rings"]}
    assert rings["pilot"]["version"] == "v1.0" and rings["fleet"]["version"] is None
    assert rings["pilot"]["soak"]["done"] is False and rings["pilot"]["prs"] == []

    no_tables = _cli(work, "promote", "--from", "pilot", "--dry-run", "--pg", pg_dsn)
    assert no_tables.returncode == 1 and "TELEMETRY_DDL in tools/core/schema.py" in no_tables.stderr
    from training.data.seed import ensure_ldos_table

    # The owner migrates (the telemetry tables too: no backend here); promote, guard and status then read
    # as docs/database.md's telemetry role, which may SELECT two tables and nothing else.
    migrated = _cli(work, "db", "migrate", "--telemetry", "--pg", pg_roles.dsn("owner"))
    assert migrated.returncode == 0 and "applied 2 migration(s)" in migrated.stderr, migrated.stderr
    conn = psycopg2.connect(pg_roles.dsn("owner"))
    try:
        ensure_ldos_table(conn)  # the backend's, granted to the snapshot role
    finally:
        conn.close()
    pg_roles.grant()
    reader = pg_roles.dsn("telemetry")
    refused = _cli(work, "promote", "--from", "pilot", "--dry-run", "--pg", reader)
    assert refused.returncode == 1, refused.stderr
    assert "promote v1.0 pilot → fleet: REFUSED" in refused.stdout
    assert "FAIL  soak_hours" in refused.stdout and "FAIL  reporting_fraction" in refused.stdout
    assert git(work, "ls-remote", "--heads", "origin", "promote/*") == ""  # a dry run pushes nothing
    guarded = _cli(work, "guard", "--ring", "pilot", "--dry-run", "--pg", reader)
    assert "permission denied" not in guarded.stderr and "Traceback" not in guarded.stderr
    assert guarded.returncode == 0, guarded.stdout + guarded.stderr
    status = _cli(work, "status", "--json", "--pg", reader)
    assert status.returncode == 0, status.stderr
