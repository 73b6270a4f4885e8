"""Hostile PRs against ``edgeops validate pr`` (issue #19): the bypasses an attacker found, as regressions.

The world: a checkout of this repository on a bare remote (real git), pilot and fleet on v1.0, then v1.2
merged into pilot two hours before ``NOW``: unsoaked (pilot's soak is 24 h). Each case is a PR made by hand
on a branch and checked by the shipped command, ``edgeops validate pr --base origin/main --head HEAD``,
run in the checkout (the PR's head), as the CI job runs it. Each must be refused by the rule it breaks:

- moving the fleet ring in the PR's own ``edgeops.yaml`` while copying pilot's release into it (the check
  read the config from the PR): ``soak`` (the base's config names the file) and ``ring-config``;
- pointing the fleet's ConfigMap generator at another file holding pilot's release: ``render``;
- a fleet "v1.2" that is signed but is not the content pilot soaked: ``soak``;
- a fleet "v1.0" with content the fleet never ran, posing as a rollback: ``forward``.

The property-based test throws random fleet releases (names, bundles, waves, ``previous``, signatures)
at the check and holds it to its one promise: nothing reaches fleet that fleet did not run before or that
pilot has not run for its soak.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.releasekit import Keys, git, keys, make_checkout, publish
from tools.artifacts.bundle import FileEntry
from tools.artifacts.release import (
    Release,
    edit_release_text,
    make_release,
    parse_release,
    render_no_release,
    render_release,
)
from tools.gitops.forge import LocalForge
from tools.gitops.gitrepo import Repo, wave_percent
from tools.gitops.policy import PolicyReport, config_at, validate_pr
from tools.gitops.promotion import Workspace, promote, propose
from tools.gitops.telemetry import PredictionRow, RingTelemetry, telemetry_from_rows

EDGEOPS = str(Path(sys.executable).parent / "edgeops")
PILOT_FILE = "environments/pilot/release.yaml"
FLEET_FILE = "environments/fleet/release.yaml"
# The shipped command judges soak against the wall clock, so the world's history ends now.
NOW = datetime.now(UTC).replace(microsecond=0)
V12_AT = NOW - timedelta(hours=2)  # pilot has run v1.2 for 2 h of its 24 h soak
T0 = V12_AT - timedelta(days=9)


@dataclass
class World:
    work: Path
    forge: LocalForge
    keys: Keys
    store: str
    monkeypatch: pytest.MonkeyPatch

    def at(self, when: datetime) -> Workspace:
        for var in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
            self.monkeypatch.setenv(var, when.isoformat())
        return Workspace.open(self.work / "edgeops.yaml", forge=self.forge, now=when)

    def merge(self, number: int, when: datetime) -> None:
        self.at(when)
        self.forge.merge_pr(number)
        git(self.work, "fetch", "--quiet", "origin")

    def into_pilot(self, version: str, when: datetime) -> None:
        bundle = publish(self.store, version, self.keys)
        pr = propose(self.at(when), ring="pilot", bundle_uri=bundle, private_key=self.keys.private).pr
        self.merge(pr.number, when)

    def release(self, path: str) -> Release:
        release = parse_release(git(self.work, "show", f"origin/main:{path}"), source=path)
        assert release is not None
        return release

    def settled(self) -> Release:
        """What fleet's nodes run (v1.1 on every node), as a ``previous``."""
        return replace(self.release(FLEET_FILE), previous=None, rollout_percent=None)

    def branch(self, name: str, edit: Callable[[Path], object], when: datetime = NOW) -> None:
        """A PR made by hand: ``edit`` the checkout on a branch from main and commit it at ``when``."""
        self.at(when)
        git(self.work, "checkout", "--quiet", "-B", name, "origin/main")
        edit(self.work)
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", f"by hand: {name}")

    def check(self, name: str, edit: Callable[[Path], object], when: datetime = NOW) -> PolicyReport:
        """The PR checked in-process (the same function the CLI calls), by the base's config."""
        self.branch(name, edit, when)
        repo = Repo(self.work)
        try:
            return validate_pr(
                repo, config_at(repo, "origin/main"), base="origin/main", head="HEAD", now=when
            )
        finally:
            git(self.work, "checkout", "--quiet", "--detach", "origin/main")

    def cli(self, name: str, edit: Callable[[Path], object]) -> subprocess.CompletedProcess[str]:
        """The PR checked as CI does: the shipped command, run in the checkout of the PR's head."""
        self.branch(name, edit)
        try:
            return subprocess.run(
                [EDGEOPS, "validate", "pr", "--base", "origin/main", "--head", "HEAD"],
                cwd=self.work, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
        finally:
            git(self.work, "checkout", "--quiet", "--detach", "origin/main")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """pilot and fleet on v1.0 (fleet from pilot after its soak), v1.1 through both, then v1.2 in pilot
    2 h before NOW."""
    tmp = tmp_path_factory.mktemp("hostile-policy")
    remote = tmp / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(remote)], check=True)
    k = keys()
    store = f"file://{tmp / 'store'}"
    work = make_checkout(tmp, remote, k, store=store)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_AUTHOR_NAME", "test")
        mp.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
        mp.setenv("GIT_COMMITTER_NAME", "test")
        mp.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
        w = World(work, LocalForge(remote), k, store, mp)
        for i, version in enumerate(("v1.0", "v1.1")):
            start = T0 + timedelta(days=4 * i)
            w.into_pilot(version, start)
            for step in range(1, 4):  # v1.0 enters an empty fleet whole; v1.1 goes 5 → 25 → 100%
                at = start + timedelta(hours=25 * step)
                decision = promote(w.at(at), from_ring="pilot", telemetry_reader=_healthy, devices=_nodes)
                assert decision.pr is not None, [g for g in decision.gates if not g.passed]
                w.merge(decision.pr.number, at)
                if w.release(FLEET_FILE).previous is None:
                    break
        w.into_pilot("v1.2", V12_AT)
        yield w


def _nodes(ring: str) -> list[str]:
    return [f"{ring}-{i:03d}" for i in range(5 if ring == "pilot" else 200)]


def _healthy(
    ring: str, version: str, since: datetime, until: datetime, members: frozenset[str] | None
) -> RingTelemetry:
    """Every node of the ring (of the wave) reports ``version``, every prediction right, half of the
    windows failing."""
    nodes = [n for n in _nodes(ring) if members is None or n in members]
    moments = [since + timedelta(minutes=90 + k) for k in range(50)]
    truths = [["bearing_wear"] if k % 2 else [] for k in range(len(moments))]
    pairs = list(zip(moments, truths, strict=True))
    rows = [PredictionRow(n, version, m, t, t, 9.0) for n in nodes for m, t in pairs]
    return telemetry_from_rows(
        rows, dict.fromkeys(_nodes(ring), ring), ring=ring, version=version, since=since, until=until,
        members=members,
    )  # fmt: skip


def _fleet_text(w: World, release: Release | None) -> str:
    return edit_release_text(
        git(w.work, "show", f"origin/main:{FLEET_FILE}"), release, ring="fleet", source=FLEET_FILE
    )


def _rules(report: PolicyReport) -> set[str]:
    return {f.rule for f in report.findings}


def test_the_world_is_as_the_cases_assume(world: World) -> None:
    w = world
    assert w.release(PILOT_FILE).version == "v1.2"
    fleet = w.release(FLEET_FILE)
    assert (fleet.version, wave_percent(fleet)) == ("v1.1", 100.0)


def test_a_pr_cannot_move_a_ring_in_its_own_config(world: World) -> None:
    """Bypass 1: `rings.fleet.path: ./environments/fleet` in the PR's edgeops.yaml plus pilot's release in
    environments/fleet/release.yaml: the check read the PR's config, found no known release file changed,
    and said "this PR changes no release"."""
    w = world
    pilot = w.release(PILOT_FILE)

    def edit(work: Path) -> None:
        cfg = work / "edgeops.yaml"
        cfg.write_text(cfg.read_text().replace("path: environments/fleet", "path: ./environments/fleet"))
        (work / FLEET_FILE).write_text(_fleet_text(w, pilot))

    run = w.cli("bypass-config-path", edit)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "[soak] environments/fleet/release.yaml" in run.stdout, run.stdout
    # (2 h when the module was collected; the shipped command reads the wall clock, so a slow suite adds)
    assert re.search(r"pilot has run v1\.2 for \d+\.\d h of the 24 h soak", run.stdout), run.stdout
    assert "Traceback" not in run.stderr
    # The config itself normalises the spelling: both name the same git path.
    assert config_at(Repo(w.work), "origin/main").release_path("fleet") == FLEET_FILE


def test_a_pr_cannot_change_the_rings_and_anything_else(world: World) -> None:
    w = world

    def edit(work: Path) -> None:
        cfg = work / "edgeops.yaml"
        cfg.write_text(cfg.read_text().replace("    soak_hours: 24 ", "    soak_hours: 0  "))
        (work / "NOTES.md").write_text("soak no more\n")

    report = w.check("rings-and-more", edit)
    assert _rules(report) == {"ring-config"}, report.render()
    assert "rings.pilot" in report.findings[0].message and "NOTES.md" in report.findings[0].message

    def longer(work: Path) -> None:
        cfg = work / "edgeops.yaml"
        cfg.write_text(cfg.read_text().replace("    soak_hours: 24 ", "    soak_hours: 48 "))

    alone = w.check("rings-alone", longer)
    assert alone.ok, alone.render()
    assert "rings.pilot" in alone.structure["rings"]


def test_a_pr_cannot_feed_a_ring_another_file(world: World) -> None:
    """Bypass 2: environments/fleet/next.yaml holds pilot's unsoaked release and the fleet overlay's
    generator reads it as release.yaml; the release file itself is untouched."""
    w = world
    pilot = w.release(PILOT_FILE)

    def edit(work: Path) -> None:
        (work / "environments/fleet/next.yaml").write_text(_fleet_text(w, pilot))
        overlay = work / "environments/fleet/kustomization.yaml"
        text = overlay.read_text()
        assert "      - release.yaml\n" in text
        overlay.write_text(text.replace("      - release.yaml\n", "      - release.yaml=next.yaml\n"))

    run = w.cli("bypass-generator", edit)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "[render] environments/fleet: DaemonSet/model-updater-fleet/model-updater would read v1.2" in (
        run.stdout
    ), run.stdout
    assert "not environments/fleet/release.yaml (v1.1" in run.stdout


def _fleet_patch(name: str, text: str) -> Callable[[Path], None]:
    """An edit that adds ``text`` as a patch of the fleet overlay (after its ring.yaml)."""

    def edit(work: Path) -> None:
        (work / "environments/fleet" / name).write_text(text)
        overlay = work / "environments/fleet/kustomization.yaml"
        patches = overlay.read_text().replace(
            "  - path: ring.yaml\n", f"  - path: ring.yaml\n  - path: {name}\n"
        )
        overlay.write_text(patches)

    return edit


def test_a_pr_cannot_patch_the_release_config_map_or_mount_another(world: World) -> None:
    w = world
    pilot = w.release(PILOT_FILE)
    body = "\n".join("      " + line for line in _fleet_text(w, pilot).splitlines())

    patch_data = _fleet_patch(
        "override.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: model-release\ndata:\n"
        f"  release.yaml: |\n{body}\n",
    )
    patched = w.check("patch-configmap", patch_data)
    assert "render" in _rules(patched), patched.render()
    assert any("would read v1.2" in f.message for f in patched.findings), patched.render()

    host_path = _fleet_patch(
        "elsewhere.yaml",
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: model-updater\nspec:\n"
        "  template:\n    spec:\n      volumes:\n        - name: release\n          configMap: null\n"
        "          hostPath:\n            path: /opt/release\n",
    )
    elsewhere = w.check("mount-hostpath", host_path)
    assert "render" in _rules(elsewhere), elsewhere.render()
    assert any("hostPath, not a ConfigMap" in f.message for f in elsewhere.findings), elsewhere.render()


def test_manifests_change_one_ring_at_a_time(world: World) -> None:
    w = world

    def base(work: Path) -> None:
        ds = work / "manifests/model-updater/daemonset.yaml"
        text = ds.read_text()
        ds.write_text(text.replace("          args:\n", "          workingDir: /tmp\n          args:\n", 1))

    both = w.check("base-change", base)
    assert _rules(both) == {"one-ring"}, both.render()
    assert "patch environments/pilot/kustomization.yaml first" in both.findings[0].message

    def pilot_only(work: Path) -> None:
        ring = work / "environments/pilot/ring.yaml"
        ring.write_text(ring.read_text().replace("maxUnavailable", "maxUnavailable", 1) + "\n# hand edit\n")
        overlay = work / "environments/pilot/kustomization.yaml"
        overlay.write_text(overlay.read_text() + "commonAnnotations:\n  context-edge.io/note: canary\n")

    one = w.check("pilot-manifests", pilot_only)
    assert one.ok, one.render()
    assert one.structure == {"pilot": "changes the ring's manifests (what it renders besides its release)"}


def test_a_new_ring_folder_needs_the_ring_in_the_base_config(world: World) -> None:
    w = world
    pilot = w.release(PILOT_FILE)

    def edit(work: Path) -> None:
        folder = work / "environments/fleet2"
        folder.mkdir()
        for name in ("kustomization.yaml", "ring.yaml"):
            (folder / name).write_text(
                (work / "environments/fleet" / name).read_text().replace("fleet", "fleet2")
            )
        (folder / "release.yaml").write_text(_fleet_text(w, pilot))

    report = w.check("new-ring", edit)
    assert "ring-config" in _rules(report), report.render()
    assert any(
        "environments/fleet2/ is a folder Argo CD deploys as a ring" in f.message for f in report.findings
    )


def _other_content(w: World, release: Release, version: str) -> Release:
    """``version`` signed with the trusted key, but another bundle: another model's files."""
    uri = publish(w.store.replace("/store", "/store-elsewhere"), version, w.keys, accuracy=0.5)
    files = {name: FileEntry(sha256="0" * 63 + "1", bytes=e["bytes"]) for name, e in release.files.items()}
    return make_release(w.keys.private, version=version, interface=release.interface, bundle=uri, files=files)


def test_promotion_and_rollback_compare_content_not_names(world: World) -> None:
    w = world
    pilot, fleet = w.release(PILOT_FILE), w.settled()
    soaked = NOW + timedelta(hours=30)  # pilot's v1.2 has soaked by then
    impostor = replace(_other_content(w, pilot, "v1.2"), previous=fleet, rollout_percent=5.0)
    promoted = w.check("impostor-v1.2", lambda work: (work / FLEET_FILE).write_text(_fleet_text(w, impostor)),
                       soaked)  # fmt: skip
    assert _rules(promoted) == {"soak"}, promoted.render()
    assert "pilot ran v1.2, but not this content" in promoted.findings[0].message
    genuine = replace(pilot, previous=fleet, rollout_percent=5.0)
    right = w.check("genuine-v1.2", lambda work: (work / FLEET_FILE).write_text(_fleet_text(w, genuine)),
                    soaked)  # fmt: skip
    assert right.ok, right.render()

    fake_v10 = _other_content(w, fleet, "v1.0")
    back = w.check("fake-rollback", lambda work: (work / FLEET_FILE).write_text(_fleet_text(w, fake_v10)))
    assert _rules(back) == {"forward"}, back.render()
    assert "fleet ran v1.0 before, but not this content" in back.findings[0].message
    last = _last_fleet_commit(w)
    real = w.check("real-rollback", lambda work: git(work, "revert", "--no-commit", "-m", "1", last))
    assert real.ok and "rollback" in real.rings["fleet"], real.render()


def _last_fleet_commit(w: World) -> str:
    return git(w.work, "log", "-1", "--first-parent", "--format=%H", "origin/main", "--", FLEET_FILE).strip()


# --- the property: nothing unsoaked reaches fleet ------------------------------------------------------


@st.composite
def fleet_releases(draw: st.DrawFn, w: World) -> tuple[str, Release | None]:
    pilot, fleet = w.release(PILOT_FILE), w.settled()
    version = draw(st.sampled_from(["v1.0", "v1.1", "v1.2", "v1.3", "v0.9"]))
    kind = draw(st.sampled_from(["pilot", "fleet", "other", "none"]))
    if kind == "none":
        return kind, None
    template = {"pilot": pilot, "fleet": fleet, "other": pilot}[kind]
    release = make_release(
        w.keys.private if draw(st.booleans()) or kind != "other" else keys().private,
        version=version if kind == "other" else template.version,
        interface=template.interface,
        bundle=template.bundle if kind != "other" else template.bundle.replace("v1.2", version),
        files=template.files,
    )
    previous = draw(st.sampled_from([None, fleet, pilot]))
    percent = draw(st.sampled_from([None, 5.0, 25.0, 50.0, 100.0]))
    return kind, replace(release, previous=previous, rollout_percent=percent if previous else None)


@settings(max_examples=40)
@given(data=st.data())
def test_no_random_fleet_release_that_did_not_soak_is_accepted(world: World, data: st.DataObject) -> None:
    w = world
    kind, release = data.draw(fleet_releases(w))
    when = data.draw(st.sampled_from([NOW, NOW + timedelta(hours=30)]))

    def edit(work: Path) -> None:  # a hand-made file: whatever the draw holds, even what propose never writes
        text = render_no_release("fleet") if release is None else render_release(release, ring="fleet")
        (work / FLEET_FILE).write_text(text)

    w.branch("random", edit, when)
    repo = Repo(w.work)
    started = time.monotonic()
    report = validate_pr(repo, config_at(repo, "origin/main"), base="origin/main", head="HEAD", now=when)
    assert time.monotonic() - started < 5.0
    if report.ok and release is not None:  # fleet ran it (v1.1 now, v1.0 before), or pilot soaked it
        assert kind == "fleet" or (kind == "pilot" and when > NOW), (kind, release, report.render())


def test_an_alias_bomb_in_a_release_file_is_refused_at_once(world: World) -> None:
    """A billion laughs under ``metrics:`` of fleet's release passed the check (and then cost promote 25 s
    and 3.9 GB): it is a ``release-file`` finding, answered at once."""
    w = world
    fleet = w.release(FLEET_FILE)
    bomb = ["metrics:", f"  l0: &l0 [{', '.join(['lol'] * 9)}]"]
    bomb += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]

    def edit(work: Path) -> None:
        text = render_release(replace(fleet, metrics={}), ring="fleet")  # no metrics: line of its own
        (work / FLEET_FILE).write_text(text + "\n".join(bomb) + "\n")

    w.branch("alias-bomb", edit)
    repo = Repo(w.work)
    started = time.monotonic()
    report = validate_pr(repo, config_at(repo, "origin/main"), base="origin/main", head="HEAD", now=NOW)
    assert time.monotonic() - started < 5.0
    assert [f.rule for f in report.findings] == ["release-file"], report.render()
    assert "YAML aliases (*l0) are not allowed" in report.findings[0].message
