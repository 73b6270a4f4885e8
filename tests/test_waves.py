"""Rollouts in waves, end to end over a real git repository and LocalForge (issue #16).

The repository's edgeops.yaml rolls fleet out in waves of 5, 25 and 100% of its nodes, each wave soaking
24 h. Git records every merge at an injected moment (GIT_COMMITTER_DATE), so soak clocks are real history;
telemetry is computed in-process (``telemetry_from_rows``, the numbers tests/test_telemetry.py proves equal
to the SQL) over a fleet of 200 named nodes, placed in waves by the same hash the nodes use; the last test
checks that the default readers (PostgreSQL) decide the same.

The story: v1.0 enters an empty fleet whole; v1.1 enters at 5% with v1.0 as ``previous``; the next wave is
refused before the soak, with failing wave telemetry and with stuck installs, then opened as a one-line
diff (5 → 25 → 100). v1.2 enters over v1.1, widens to 25%, breaches its gates: ``guard`` writes v1.1 back
as the whole release and revokes v1.2 in the same commit; propose, promote and ``validate pr`` then refuse
v1.2 until a PR that only deletes the revocation lifts it. ``validate pr`` refuses skipping a wave unless
``skip_waves`` allows it, accepts narrowing, and refuses a ``previous`` that is not what the ring runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.releasekit import Keys, git, keys, make_checkout, publish
from tools.artifacts.release import Release, edit_release_text, make_release, parse_release
from tools.core.config import EdgeopsConfig
from tools.gitops.forge import LocalForge
from tools.gitops.policy import PolicyReport, validate_pr
from tools.gitops.promotion import (
    PromoteDecision,
    PromotionError,
    Workspace,
    guard,
    promote,
    propose,
    render_status,
    rollback,
    status,
)
from tools.gitops.revocations import revoked
from tools.gitops.telemetry import PredictionRow, RingTelemetry, telemetry_from_rows, wave_members

PILOT = [f"pilot-{i}" for i in range(5)]
FLEET = [f"fleet-{i:03d}" for i in range(200)]
FLEET_FILE = "environments/fleet/release.yaml"
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@dataclass
class World:
    """The checkout, its forge, the keys and store, and the fleet's predictions so far."""

    work: Path
    forge: LocalForge
    keys: Keys
    store: str
    monkeypatch: pytest.MonkeyPatch
    rows: list[PredictionRow] = field(default_factory=list)
    devices: dict[str, str] = field(
        default_factory=lambda: {**dict.fromkeys(PILOT, "pilot"), **dict.fromkeys(FLEET, "fleet")}
    )

    def at(self, when: datetime) -> Workspace:
        """The workspace at ``when``; what git commits next (pushes, merges) is dated ``when`` too."""
        for var in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
            self.monkeypatch.setenv(var, when.isoformat())
        return Workspace.open(self.work / "edgeops.yaml", forge=self.forge, now=when)

    def merge(self, number: int, when: datetime) -> None:
        self.at(when)
        self.forge.merge_pr(number)
        git(self.work, "fetch", "--quiet", "origin")

    def read(
        self, ring: str, version: str, since: datetime, until: datetime, members: frozenset[str] | None
    ) -> RingTelemetry:
        return telemetry_from_rows(
            self.rows, self.devices, ring=ring, version=version, since=since, until=until, members=members
        )

    def registered(self, ring: str) -> list[str]:
        return [d for d, r in self.devices.items() if r == ring]

    def gauges(self) -> dict[str, Any]:
        return {"telemetry_reader": self.read, "devices": self.registered}

    def report(
        self, version: str, nodes: list[str], start: datetime, *, missed: int = 0, errors: int = 0,
        per_node: int = 40,
    ) -> None:  # fmt: skip
        """Each node's predictions of ``version`` from 90 minutes after ``start`` (past the install grace),
        every one validated; ``missed`` failing windows called healthy, ``errors`` failed inferences."""
        for node in nodes:
            for k in range(per_node):
                moment = start + timedelta(minutes=90 + k)
                truth = ["bearing_wear"] if k % 2 == 0 else []
                if errors > 0:
                    self.rows.append(
                        PredictionRow(node, version, moment, [], None, 12.0, "onnxruntime: boom")
                    )
                    errors -= 1
                elif truth and missed > 0:
                    self.rows.append(PredictionRow(node, version, moment, [], truth, 12.0))
                    missed -= 1
                else:
                    self.rows.append(PredictionRow(node, version, moment, truth, truth, 12.0))

    def forget(self, version: str) -> None:
        self.rows = [r for r in self.rows if r.model_version != version]

    def fleet_release(self) -> Release | None:
        return parse_release(git(self.work, "show", f"origin/main:{FLEET_FILE}") + "\n", source=FLEET_FILE)

    def validate(self, head: str, when: datetime, cfg: EdgeopsConfig | None = None) -> PolicyReport:
        ws = self.at(when)
        return validate_pr(ws.repo, cfg or ws.cfg, base="origin/main", head=head, now=when)

    def hand_made(
        self, branch: str, edit: Callable[[Path], None], when: datetime, cfg: EdgeopsConfig | None = None
    ) -> PolicyReport:
        """A PR made by hand: ``edit`` the checkout on a branch from main, commit, check it."""
        git(self.work, "checkout", "--quiet", "-B", branch, "origin/main")
        edit(self.work)
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "-m", f"by hand: {branch}")
        try:
            return self.validate("HEAD", when, cfg)
        finally:
            git(self.work, "checkout", "--quiet", "main")


@pytest.fixture
def world(tmp_path: Path, git_remote: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    k = keys()
    store = f"file://{tmp_path / 'store'}"
    work = make_checkout(tmp_path, git_remote, k, store=store)
    yield World(work, LocalForge(git_remote), k, store, monkeypatch)


def set_fleet(release: Release) -> Callable[[Path], None]:
    def edit(work: Path) -> None:
        file = work / FLEET_FILE
        file.write_text(edit_release_text(file.read_text(), release, ring="fleet", source=FLEET_FILE))

    return edit


def diff_lines(work: Path, branch: str) -> list[str]:
    diff = git(work, "diff", f"origin/main...origin/{branch}")
    return [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def failing(decision: PromoteDecision) -> set[str]:
    return {g.name for g in decision.gates if not g.passed}


def promoted(w: World, when: datetime) -> PromoteDecision:
    """``edgeops promote --from pilot`` at ``when``, its PR merged at once."""
    decision = promote(w.at(when), from_ring="pilot", **w.gauges())
    assert decision.pr is not None, decision.gates
    w.merge(decision.pr.number, when)
    return decision


def release_into_pilot(w: World, version: str, when: datetime) -> None:
    """Publish, propose and merge ``version`` in pilot at ``when``; pilot reports it, healthy."""
    bundle = publish(w.store, version, w.keys)
    w.merge(propose(w.at(when), ring="pilot", bundle_uri=bundle, private_key=w.keys.private).pr.number, when)
    w.report(version, PILOT, when)


def test_a_version_rolls_out_wave_by_wave_and_a_rolled_back_one_stays_out(world: World) -> None:
    w = world
    five, quarter = wave_members(FLEET, 5), wave_members(FLEET, 25)
    assert 3 <= len(five) < len(quarter) < len(FLEET)

    # --- v1.0 enters an empty fleet whole: there is nothing to fall back to ---------------------------
    release_into_pilot(w, "v1.0", T0)
    first = promote(w.at(T0 + timedelta(hours=25)), from_ring="pilot", **w.gauges())
    assert (first.kind, first.percent, first.allowed) == ("enter", 100.0, True), first.gates
    assert first.pr is not None and "no waves" in first.pr.body
    w.merge(first.pr.number, T0 + timedelta(hours=25))
    v10 = w.fleet_release()
    assert v10 is not None and (v10.version, v10.previous, v10.rollout_percent) == ("v1.0", None, None)
    w.report("v1.0", FLEET, T0 + timedelta(hours=25))

    # --- v1.1 enters at the first wave, v1.0 beside it as `previous` -----------------------------------
    t1 = T0 + timedelta(days=2)
    release_into_pilot(w, "v1.1", t1)
    enter = promote(w.at(t1 + timedelta(hours=25)), from_ring="pilot", **w.gauges())
    assert (enter.kind, enter.percent) == ("enter", 5.0) and enter.pr is not None, enter.gates
    assert enter.pr.head == "promote/fleet/v1.1" and {"promotion", "ring:fleet"} <= set(enter.pr.labels)
    assert "; first wave 5%)" in enter.pr.title
    assert f"{len(five)} of the 200 fleet nodes" in enter.pr.body and "`previous`" in enter.pr.body
    accepted = w.validate("origin/promote/fleet/v1.1", t1 + timedelta(hours=25))
    assert accepted.ok and accepted.rings["fleet"].startswith("promotion v1.0 → v1.1 at 5% of the nodes")
    w5 = t1 + timedelta(hours=26)
    w.merge(enter.pr.number, w5)
    at5 = w.fleet_release()
    assert at5 is not None and at5.version == "v1.1" and at5.rollout_percent == 5
    assert at5.previous == v10  # v1.0 exactly as fleet ran it
    assert {n for n in FLEET if at5.for_node(n).version == "v1.1"} == set(five)

    # --- the next wave: refused before the wave has soaked ---------------------------------------------
    w.report("v1.1", five, w5)
    early = promote(w.at(w5 + timedelta(hours=2)), from_ring="pilot", **w.gauges())
    assert (early.kind, early.percent, early.pr) == ("wave", 25.0, None)
    assert failing(early) == {"wave_soak_hours"}, early.gates
    soak = next(g for g in early.gates if g.name == "wave_soak_hours")
    assert soak.detail == "fleet has run v1.1 on its 5% wave for 2.0 h; soak requires 24 h (22.0 h to go)"
    assert early.telemetry is not None and early.telemetry.ring_nodes == len(five)  # the wave's nodes only

    # ... refused on the wave's own telemetry: its nodes miss failing windows ------------------------------
    later = w5 + timedelta(hours=25)
    w.forget("v1.1")
    w.report("v1.1", PILOT, t1)
    w.report("v1.1", five, w5, missed=len(five) * 8)
    bad = promote(w.at(later), from_ring="pilot", dry_run=True, **w.gauges())
    assert failing(bad) == {"fn_rate", "accuracy"}, bad.gates

    # ... refused on stuck installs: a third of the wave still reports v1.0 after the install grace ------
    w.forget("v1.1")
    w.report("v1.1", PILOT, t1)
    stuck = five[: len(five) // 3 + 1]
    w.report("v1.1", [n for n in five if n not in stuck], w5)
    w.report("v1.0", stuck, w5)
    held = promote(w.at(later), from_ring="pilot", dry_run=True, **w.gauges())
    assert "on_target_fraction" in failing(held), held.gates
    on_target = next(g for g in held.gates if g.name == "on_target_fraction")
    assert f"{len(five) - len(stuck)} of {len(five)} reporting wave nodes run v1.1, {len(stuck)} stuck" in (
        on_target.detail
    )
    report = status(w.at(later), **w.gauges())
    fleet = next(r for r in report["rings"] if r["ring"] == "fleet")
    wave = fleet["wave"]
    assert (wave["percent"], wave["index"], wave["of"], wave["next"], wave["previous"]) == (
        5.0, 1, 3, 25.0, "v1.0",
    )  # fmt: skip
    assert (wave["soak_required"], wave["soak_done"]) == (24.0, True)
    assert (wave["targeted"], wave["reporting"], wave["on_target"], wave["stuck"], wave["silent"]) == (
        len(five), len(five), len(five) - len(stuck), len(stuck), 0,
    )  # fmt: skip
    text = render_status(report)
    assert "wave: 5% of nodes (wave 1 of 3), the others run v1.0" in text
    assert f"nodes: {len(five)} targeted, {len(five)} reporting" in text and f"{len(stuck)} stuck" in text

    # --- healthy: the next wave is a one-line diff of rollout.percent, 5 → 25 → 100 --------------------
    w.forget("v1.1")
    w.report("v1.1", PILOT, t1)
    w.report("v1.1", five, w5)
    to25 = promote(w.at(later), from_ring="pilot", **w.gauges())
    assert (to25.kind, to25.percent, to25.allowed) == ("wave", 25.0, True) and to25.pr is not None
    assert to25.pr.head == "wave/fleet/v1.1/25" and {"promotion", "wave", "ring:fleet"} <= set(to25.pr.labels)
    assert diff_lines(w.work, "wave/fleet/v1.1/25") == ["-rollout: {percent: 5}", "+rollout: {percent: 25}"]
    assert f"{len(quarter)} of the 200 fleet nodes" in to25.pr.body and "no download" in to25.pr.body
    assert w.validate("origin/wave/fleet/v1.1/25", later).ok
    too_soon = w.validate("origin/wave/fleet/v1.1/25", w5 + timedelta(hours=3))
    assert [f.rule for f in too_soon.findings] == ["soak"], too_soon.render()
    w25 = later + timedelta(hours=1)
    w.merge(to25.pr.number, w25)
    w.report("v1.1", [n for n in quarter if n not in five], w25)
    assert promote(w.at(w25 + timedelta(hours=5)), from_ring="pilot", **w.gauges()).pr is None  # soaking
    to100 = promote(w.at(w25 + timedelta(hours=25)), from_ring="pilot", **w.gauges())
    assert to100.pr is not None and to100.percent == 100.0, to100.gates
    assert diff_lines(w.work, "wave/fleet/v1.1/100") == [
        "-rollout: {percent: 25}",
        "+rollout: {percent: 100}",
    ]
    assert w.forge.get_pr(to25.pr.number).state == "merged"
    w.merge(to100.pr.number, w25 + timedelta(hours=25))
    w.report("v1.1", [n for n in FLEET if n not in quarter], w25 + timedelta(hours=25))
    done = promote(w.at(w25 + timedelta(hours=26)), from_ring="pilot", **w.gauges())
    assert (done.kind, done.pr, done.note) == ("none", None, "fleet already runs v1.1: nothing to promote")

    # --- v1.2 enters over v1.1, widens, and breaches its gates at 25% -----------------------------------
    t2 = w25 + timedelta(days=2)
    release_into_pilot(w, "v1.2", t2)
    enter12 = promote(w.at(t2 + timedelta(hours=25)), from_ring="pilot", **w.gauges())
    assert enter12.pr is not None and enter12.percent == 5.0
    v5 = t2 + timedelta(hours=25)
    w.merge(enter12.pr.number, v5)
    v12 = w.fleet_release()
    assert v12 is not None and v12.previous is not None and v12.previous.version == "v1.1"
    assert v12.previous.previous is None and v12.previous.rollout_percent is None  # a whole release
    w.report("v1.2", five, v5)
    to25 = promote(w.at(v5 + timedelta(hours=25)), from_ring="pilot", **w.gauges())
    assert to25.pr is not None
    v25 = v5 + timedelta(hours=25)
    w.merge(to25.pr.number, v25)
    calm = guard(w.at(v25 + timedelta(hours=2)), ring="fleet", **w.gauges())
    assert not calm.breached and calm.percent == 25.0 and calm.rollback is None, calm.gates
    w.report("v1.2", [n for n in quarter if n not in five], v25, errors=200)
    dry = guard(w.at(v25 + timedelta(hours=3)), ring="fleet", dry_run=True, **w.gauges())
    assert (
        dry.breached
        and dry.rollback is None
        and {g.name for g in dry.gates if not g.passed} == {"error_rate"}
    )
    caught = guard(w.at(v25 + timedelta(hours=3)), ring="fleet", **w.gauges())
    assert caught.rollback is not None and caught.rollback.revocation == "revocations/v1.2.yaml"
    rb = caught.rollback
    assert (rb.current, rb.target, rb.reverted) == ("v1.2", "v1.1", None)  # two commits: previous written
    assert {"rollback", "auto", "ring:fleet"} <= set(rb.pr.labels) and "**v1.2 is revoked**" in rb.pr.body
    back = parse_release(git(w.work, "show", f"origin/{rb.pr.head}:{FLEET_FILE}"), source=FLEET_FILE)
    assert back == v12.previous  # v1.1 whole: no previous, no wave
    record = git(w.work, "show", f"origin/{rb.pr.head}:revocations/v1.2.yaml")
    assert 'version: "v1.2"\nring: "fleet"\n' in record and "by: guard" in record
    assert "error_rate" in record and "deletes this file" in record
    assert sorted(git(w.work, "diff", "--name-only", f"origin/main...origin/{rb.pr.head}").split()) == [
        FLEET_FILE, "revocations/v1.2.yaml",
    ]  # fmt: skip
    again = guard(w.at(v25 + timedelta(hours=4)), ring="fleet", **w.gauges())
    assert (
        again.rollback is not None and again.rollback.pr.number == rb.pr.number and not again.rollback.pushed
    )
    checked = w.validate(f"origin/{rb.pr.head}", v25 + timedelta(hours=3))
    assert checked.ok, checked.render()
    assert checked.revocations == {"v1.2": "revokes v1.2, which this PR rolls back"}
    back_at = v25 + timedelta(hours=4)
    w.merge(rb.pr.number, back_at)

    # --- v1.2 is revoked: propose, promote and validate pr refuse it ------------------------------------
    ws = w.at(back_at + timedelta(hours=1))
    assert set(revoked(ws.repo, ws.base_ref)) == {"v1.2"}
    with pytest.raises(PromotionError, match=r"v1\.2 is revoked \(revocations/v1\.2\.yaml on main: `edgeops"):
        promote(ws, from_ring="pilot", **w.gauges())  # pilot still runs v1.2
    bundle = publish(w.store, "v1.3", w.keys)
    w.merge(propose(ws, ring="pilot", bundle_uri=bundle, private_key=w.keys.private).pr.number, back_at)
    with pytest.raises(PromotionError, match=r"not proposing v1\.2 to pilot: v1\.2 is revoked"):
        propose(w.at(back_at), ring="pilot", bundle_uri=v12.bundle, private_key=w.keys.private)
    again12 = replace(v12, rollout_percent=5.0, previous=back)
    refused = w.hand_made("re-enter", set_fleet(again12), back_at + timedelta(days=3))
    assert {f.rule for f in refused.findings} == {"revoked"}, refused.render()
    assert "revocations/v1.2.yaml" in refused.render()

    # --- a PR that deletes the revocation, and nothing else, lifts it -------------------------------------
    def lift(work: Path) -> None:
        (work / "revocations/v1.2.yaml").unlink()

    lifted = w.hand_made("lift", lift, back_at + timedelta(days=3))
    assert lifted.ok and lifted.revocations == {"v1.2": "lifts the revocation of v1.2"}, lifted.render()
    assert "v1.2: lifts the revocation of v1.2" in lifted.render()

    def lift_and_ship(work: Path) -> None:
        lift(work)
        set_fleet(again12)(work)

    both = w.hand_made("lift-and-ship", lift_and_ship, back_at + timedelta(days=3))
    assert "lift-alone" in {f.rule for f in both.findings}, both.render()


def test_validate_pr_holds_waves_to_the_rings_order(world: World) -> None:
    """Skipping a wave is refused unless skip_waves allows it; narrowing is a rollback; `previous` must be
    what the ring runs; a new version enters at the first wave."""
    w = world
    release_into_pilot(w, "v1.0", T0)
    promoted(w, T0 + timedelta(hours=25))
    v10 = w.fleet_release()
    t1 = T0 + timedelta(days=2)
    release_into_pilot(w, "v1.1", t1)
    w5 = t1 + timedelta(hours=25)
    promoted(w, w5)
    w.report("v1.1", wave_members(FLEET, 5), w5)
    at5 = w.fleet_release()
    assert at5 is not None and v10 is not None
    soaked = w5 + timedelta(hours=30)

    skip = w.hand_made("skip", set_fleet(replace(at5, rollout_percent=100.0)), soaked)
    assert [f.rule for f in skip.findings] == ["wave"], skip.render()
    assert "the next wave is 25%" in skip.findings[0].message
    cfg = w.at(soaked).cfg
    allow = cfg.model_copy(
        update={"rings": {**cfg.rings, "fleet": cfg.rings["fleet"].model_copy(update={"skip_waves": True})}}
    )
    assert w.hand_made("skip-allowed", set_fleet(replace(at5, rollout_percent=100.0)), soaked, allow).ok
    odd = w.hand_made("odd", set_fleet(replace(at5, rollout_percent=50.0)), soaked, allow)
    assert [f.rule for f in odd.findings] == ["wave"], odd.render()  # 50 is not one of the waves

    promoted(w, soaked)
    at25 = w.fleet_release()
    assert at25 is not None and at25.rollout_percent == 25
    narrow = w.hand_made("narrow", set_fleet(at5), soaked + timedelta(minutes=5))
    assert narrow.ok and narrow.rings["fleet"].startswith("rollback: v1.1 narrowed from 25% to 5%")
    reverted = w.hand_made("revert-wave", lambda work: git(work, "revert", "--no-commit", "-m", "1", "HEAD"),
                           soaked + timedelta(minutes=5))  # fmt: skip
    assert reverted.ok, reverted.render()  # `git revert` of a wave PR is the same narrowing
    # `previous` changes only with a new version, and is always what the ring's settled nodes run.
    other = replace(v10, metrics={"accuracy": 0.5})
    assert w.hand_made("annotate-previous", set_fleet(replace(at25, previous=other)), soaked).ok
    v09 = make_release(w.keys.private, version="v0.9", interface=v10.interface, files=v10.files,
                       bundle=v10.bundle.replace("/v1.0/", "/v0.9/"))  # fmt: skip
    swapped = w.hand_made("swap-previous", set_fleet(replace(at25, previous=v09)), soaked)
    assert "previous" in {f.rule for f in swapped.findings}, swapped.render()

    # A new version enters at the first wave, over what the ring's settled nodes run (v1.0 here).
    t2 = soaked + timedelta(days=1)
    release_into_pilot(w, "v1.2", t2)
    pilot12 = parse_release(git(w.work, "show", "origin/main:environments/pilot/release.yaml"), source="x")
    assert pilot12 is not None
    later = t2 + timedelta(hours=30)
    whole = w.hand_made("whole", set_fleet(pilot12), later)
    assert [f.rule for f in whole.findings] == ["wave"], whole.render()
    at_quarter = w.hand_made(
        "quarter", set_fleet(replace(pilot12, previous=v10, rollout_percent=25.0)), later
    )
    assert [f.rule for f in at_quarter.findings] == ["wave"], at_quarter.render()
    over = replace(pilot12, previous=_whole(at25), rollout_percent=5.0)
    over_wave = w.hand_made("over-wave", set_fleet(over), later)
    assert [f.rule for f in over_wave.findings] == ["previous"], over_wave.render()
    right = w.hand_made("right", set_fleet(replace(pilot12, previous=v10, rollout_percent=5.0)), later)
    assert right.ok, right.render()
    # promote writes exactly that: v1.1 never finished its waves, so v1.0 stays `previous`.
    decision = promote(w.at(later), from_ring="pilot", **w.gauges())
    assert decision.kind == "enter" and decision.pr is not None, decision.gates
    written = parse_release(git(w.work, "show", f"origin/{decision.pr.head}:{FLEET_FILE}"), source="x")
    assert written == replace(pilot12, previous=v10, rollout_percent=5.0)
    assert w.validate(f"origin/{decision.pr.head}", later).ok


def _whole(release: Release) -> Release:
    return replace(release, previous=None, rollout_percent=None, swap_windows=())


def test_rollback_returns_a_wave_to_previous_and_can_leave_the_version_unrevoked(world: World) -> None:
    w = world
    release_into_pilot(w, "v1.0", T0)
    promoted(w, T0 + timedelta(hours=25))
    fleet_v10 = git(w.work, "show", f"origin/main:{FLEET_FILE}")
    t1 = T0 + timedelta(days=2)
    release_into_pilot(w, "v1.1", t1)
    promoted(w, t1 + timedelta(hours=25))

    # One commit brought v1.1 in over v1.0: the rollback is its revert, byte for byte the file before.
    rb = rollback(w.at(t1 + timedelta(hours=26)), ring="fleet", revoke=False)
    assert (rb.current, rb.target, rb.revocation) == ("v1.1", "v1.0", None) and rb.reverted is not None
    assert git(w.work, "show", f"origin/{rb.pr.head}:{FLEET_FILE}") == fleet_v10
    assert git(w.work, "diff", "--name-only", f"origin/main...origin/{rb.pr.head}") == FLEET_FILE
    assert "revoked" not in rb.pr.body
    # With the revocation (the default), a re-run adds it to the same branch and PR.
    with_record = rollback(w.at(t1 + timedelta(hours=26)), ring="fleet", reason="line 3 misses bearings")
    assert with_record.pr.number == rb.pr.number and with_record.pushed
    record = git(w.work, "show", f"origin/{rb.pr.head}:revocations/v1.1.yaml")
    assert re.search(r'^reason: "line 3 misses bearings"$', record, re.M) and "by: rollback" in record


def test_guard_rolls_a_first_wave_back_on_stuck_installs(world: World) -> None:
    w = world
    five = wave_members(FLEET, 5)
    release_into_pilot(w, "v1.0", T0)
    promoted(w, T0 + timedelta(hours=25))
    v10 = w.fleet_release()
    w.report("v1.0", FLEET, T0 + timedelta(hours=25))
    t1 = T0 + timedelta(days=2)
    release_into_pilot(w, "v1.1", t1)
    w5 = t1 + timedelta(hours=25)
    promoted(w, w5)

    # Within the install grace nothing is judged; after it, two wave nodes reporting are too few a sample.
    w.report("v1.0", five[:2], w5)
    early = guard(w.at(w5 + timedelta(minutes=30)), ring="fleet", **w.gauges())
    on_target = next(g for g in early.gates if g.name == "on_target_fraction")
    assert not early.breached and on_target.detail.startswith("not judged: the 5% wave's nodes have until")
    few = guard(w.at(w5 + timedelta(hours=3)), ring="fleet", **w.gauges())
    assert not few.breached and "(< min_sample_nodes 3)" in str([g.detail for g in few.gates])

    # Every wave node still reports v1.0 three hours in: stuck, and nothing else is wrong.
    w.report("v1.0", five[2:], w5)
    stuck = guard(w.at(w5 + timedelta(hours=3)), ring="fleet", **w.gauges())
    assert stuck.percent == 5.0 and [g.name for g in stuck.gates if not g.passed] == ["on_target_fraction"]
    assert stuck.rollback is not None and stuck.rollback.revocation == "revocations/v1.1.yaml"
    rb = stuck.rollback
    # One commit brought v1.1 in over v1.0: the rollback is its revert, and the file is v1.0 again.
    assert (rb.current, rb.target) == ("v1.1", "v1.0") and rb.reverted is not None
    assert parse_release(git(w.work, "show", f"origin/{rb.pr.head}:{FLEET_FILE}"), source="x") == v10
    assert "by: guard" in git(w.work, "show", f"origin/{rb.pr.head}:revocations/v1.1.yaml")
    assert w.validate(f"origin/{rb.pr.head}", w5 + timedelta(hours=3)).ok


def test_swap_windows_go_into_the_release_and_stretch_the_install_grace(world: World) -> None:
    w = world
    text = (w.work / "edgeops.yaml").read_text()
    windows = "    swap_windows: ['Mon-Fri 22:00-04:00']"
    (w.work / "edgeops.yaml").write_text(text.replace("    swap_windows: []", windows))
    git(w.work, "commit", "--quiet", "-am", "fleet swaps at night")
    git(w.work, "push", "--quiet", "origin", "HEAD:main")
    release_into_pilot(w, "v1.0", T0)
    promoted(w, T0 + timedelta(hours=25))
    whole = w.fleet_release()
    # No previous: the whole ring, but the windows live in the rollout block, so at 100%.
    assert whole is not None and (whole.previous, whole.rollout_percent) == (None, 100.0)
    assert whole.swap_windows == ("Mon-Fri 22:00-04:00",)
    t1 = T0 + timedelta(days=2)
    release_into_pilot(w, "v1.1", t1)
    w5 = t1 + timedelta(hours=25)
    promoted(w, w5)
    at5 = w.fleet_release()
    assert at5 is not None and (at5.rollout_percent, at5.swap_windows) == (5.0, ("Mon-Fri 22:00-04:00",))
    assert at5.previous is not None and at5.previous.swap_windows == ()  # `previous` is a release alone
    # A wave node may wait from Saturday 04:00 to Monday 22:00 (66 h) for its window: stuck only after.
    fleet = next(
        r for r in status(w.at(w5 + timedelta(hours=2)), **w.gauges())["rings"] if r["ring"] == "fleet"
    )
    assert fleet["wave"]["grace_until"] == (w5 + timedelta(hours=1 + 66)).isoformat()
    assert fleet["wave"]["stuck"] is None


def test_the_cli_says_how_waves_and_revocations_work() -> None:
    import subprocess

    from tests.conftest import EDGEOPS

    def helps(*args: str) -> str:
        out = subprocess.run([str(EDGEOPS), *args, "--help"], capture_output=True, text=True, check=True)
        return " ".join(out.stdout.split())

    assert "--no-revoke" in helps("rollback") and "revocations/<version>.yaml" in helps("rollback")
    assert "next wave" in helps("promote") and "stuck installs" in helps("guard")
    assert "a PR lifting a revocation deletes that file and nothing else" in helps("validate", "pr")


@pytest.mark.postgres
def test_the_default_readers_are_postgresql_and_decide_the_same(world: World, pg_dsn: str) -> None:
    """promote, guard and status without a reader or a device list read edge_devices and predictions."""
    from tools.core.pg import connect
    from tools.gitops.telemetry import ensure_schema, insert_predictions, register_devices

    w = world
    five = wave_members(FLEET, 5)
    release_into_pilot(w, "v1.0", T0)
    promoted(w, T0 + timedelta(hours=25))
    t1 = T0 + timedelta(days=2)
    release_into_pilot(w, "v1.1", t1)
    w5 = t1 + timedelta(hours=25)
    promoted(w, w5)
    w.report("v1.1", five[1:], w5)
    w.report("v1.0", five[:1], w5)  # one of the wave's nodes is stuck on v1.0
    conn = connect(pg_dsn)
    with conn:
        ensure_schema(conn)
        register_devices(conn, w.devices)
        insert_predictions(conn, w.rows)
    conn.close()

    later = w5 + timedelta(hours=25)
    in_memory = promote(w.at(later), from_ring="pilot", dry_run=True, **w.gauges())
    in_sql = promote(w.at(later), from_ring="pilot", dry_run=True, dsn=pg_dsn)
    assert in_sql.kind == "wave" and in_sql.telemetry is not None
    assert [(g.name, g.passed, g.detail) for g in in_sql.gates] == [
        (g.name, g.passed, g.detail) for g in in_memory.gates
    ]
    assert in_sql.telemetry.ring_nodes == len(five)
    watched = guard(w.at(later), ring="fleet", dsn=pg_dsn, dry_run=True)
    assert [g.detail for g in watched.gates] == [
        g.detail for g in guard(w.at(later), ring="fleet", dry_run=True, **w.gauges()).gates
    ]
    fleet = status(w.at(later), dsn=pg_dsn)["rings"][1]
    assert (fleet["wave"]["targeted"], fleet["wave"]["stuck"]) == (len(five), 1)
