"""The delivery half of ``make demo``: a release travels through pull requests, rings and a simulated fleet.

What is real here: a git repository (a bare remote and a clone) holding this project's release files, the
LocalForge pull requests, ``edgeops propose``/``promote``/``rollback`` (:mod:`tools.gitops.promotion`), the
rings built with the pinned kustomize at the merged commit (what Argo CD would sync), the model-updater on
every simulated node, the telemetry gates. What is simulated, and said so: the nodes (folders in one
process, :class:`tools.kits.fleetsim.Fleet`), the passing of time during the soak (the clock is injected), and
the predictions pilot nodes report: each node runs the model it actually serves, in ONNX Runtime, on test
windows of the snapshot, and an operator "validates" most of them with the true labels.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tools.artifacts.release import parse_release
from tools.core.config import EdgeopsConfig
from tools.core.errors import EdgeopsError
from tools.gitops.forge import LocalForge, PullRequest
from tools.gitops.gitrepo import Repo
from tools.gitops.manifests import kustomize_build, parse_objects
from tools.gitops.promotion import TelemetryReader, Workspace
from tools.gitops.telemetry import PredictionRow, RingTelemetry, telemetry_from_rows
from tools.kits.fleetsim import Fleet, PhaseReport, load_rings

__all__ = ["Story", "seed_release_repository"]

# What the demo repository needs from this checkout: config, rings, manifests, code owners.
_COPY = ["edgeops.yaml", "environments", "manifests", ".github/CODEOWNERS"]
PREDICTIONS_PER_NODE = 60  # at least; more when the gates ask for more validated predictions than that gives
VALIDATED_SHARE = 0.8


def _git(cwd: Path, *args: str) -> str:
    return Repo(cwd).git(*args).strip()


def seed_release_repository(
    remote: Path, work: Path, *, source_root: Path, config: Path, public_key_pem: bytes, store_uri: str,
    message: str, files: Sequence[str] = _COPY,
) -> None:  # fmt: skip
    """Clone ``remote`` (made bare when missing) into ``work``, put this project's release files there with
    ``config`` as edgeops.yaml, ``public_key_pem`` as the signing key and ``store_uri`` as the bundle store,
    commit and push ``main``. The demo's repository and the release-flow tests both start here; ``files``
    (paths under ``source_root``) can name the whole project instead, as a fork has it.
    """
    if not (remote / "HEAD").exists():
        _git(remote.parent, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    _git(work.parent, "clone", "--quiet", str(remote), str(work))
    for name in files:
        src, dst = source_root / name, work / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    shutil.copy2(config, work / "edgeops.yaml")
    (work / "environments/release-signing/release-signing.pub").write_bytes(public_key_pem)
    text = (work / "edgeops.yaml").read_text()
    lines = [
        f"  bundles: {store_uri}" if line.strip().startswith("bundles:") else line
        for line in text.splitlines()
    ]
    (work / "edgeops.yaml").write_text("\n".join(lines) + "\n")
    for key, value in (("user.name", "edgeops demo"), ("user.email", "demo@edgeops.invalid")):
        _git(work, "config", key, value)
    _git(work, "add", "-A")
    _git(work, "commit", "--quiet", "-m", message)
    _git(work, "push", "--quiet", "origin", "HEAD:main")


@dataclass
class Story:
    """The demo repository, its forge, the simulated fleet, and what happened to them, for the report."""

    root: Path  # the demo workspace
    repo_root: Path  # this checkout (its release files are copied)
    config_path: Path
    say: Callable[[str], None]
    nodes: int = 24
    pilot: int = 4
    dsn: str | None = None  # a PostgreSQL server for telemetry; None: computed in-process
    min_validated: int = 200  # gates.telemetry.min_validated_predictions
    prs: list[PullRequest] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    rows: list[PredictionRow] = field(default_factory=list)
    fleet: Fleet | None = None

    def __post_init__(self) -> None:
        self.root = self.root.resolve()  # git runs in other folders: no relative paths
        self.remote = self.root / "demo-repo.git"
        self.work = self.root / "demo-repo"
        self.report = self.root / "report"
        self._built: dict[str, tuple[str, str]] = {}  # ring -> (commit of its last build, ConfigMap)
        (self.report / "prs").mkdir(parents=True, exist_ok=True)

    # --- the repository --------------------------------------------------------------------------------

    def create_repository(self, public_key_pem: bytes, store_uri: str) -> None:
        """A bare remote and a clone holding this project's release files, the demo key and store."""
        seed_release_repository(
            self.remote, self.work, source_root=self.repo_root, config=self.config_path,
            public_key_pem=public_key_pem, store_uri=store_uri,
            message="demo repository: rings with no release, the demo's signing key",
        )  # fmt: skip
        self.forge = LocalForge(self.remote)
        self.say(f"   {self.remote} (the remote) and {self.work} (a clone), LocalForge PRs beside the remote")

    def workspace(self, now: datetime | None = None) -> Workspace:
        return Workspace.open(self.work / "edgeops.yaml", forge=self.forge, now=now)

    def show_pr(self, pr: PullRequest, lines: int = 16) -> None:
        self.prs.append(pr)
        (self.report / "prs" / f"{pr.number}.md").write_text(f"# #{pr.number} {pr.title}\n\n{pr.body}")
        self.say(f"   PR #{pr.number} {pr.title}")
        self.say(f"      labels {', '.join(pr.labels)}; reviewers {', '.join(pr.reviewers) or '(none)'}")
        body = [ln for ln in pr.body.splitlines() if ln.strip()]
        for ln in body[:lines]:
            self.say(f"      │ {ln[:120]}")
        if len(body) > lines:
            self.say(f"      │ … ({len(body) - lines} more lines: {self.report / 'prs' / f'{pr.number}.md'})")

    def merge(self, pr: PullRequest) -> datetime:
        """Approve and merge (the reviewer's moment); returns the merge time, as git records it."""
        merged = self.forge.merge_pr(pr.number)
        assert merged.merge_commit is not None
        _git(self.work, "fetch", "--quiet", "origin")
        _git(self.work, "merge", "--quiet", "--ff-only", "origin/main")
        self.say(f"   approved and merged #{pr.number}: merge commit {merged.merge_commit[:12]}")
        return datetime.fromtimestamp(int(_git(self.work, "show", "-s", "--format=%ct", "HEAD")), UTC)

    # --- Argo CD and the fleet ------------------------------------------------------------------------

    def _release_configmap(self, ring: str) -> tuple[str, str]:
        """The ring's release ConfigMap at HEAD: (name, release.yaml). ``kustomize build`` runs when anything
        the ring renders changed since its last build; a release PR changes release.yaml alone (``validate
        pr`` holds it to that), and kustomize copies that file verbatim into the stable-name ConfigMap
        (tests/test_manifests.py), so then the file at HEAD is the ConfigMap's data (2 s saved per sync)."""
        head = _git(self.work, "rev-parse", "HEAD")
        path = f"environments/{ring}/release.yaml"
        last = self._built.get(ring)
        if last is not None:
            changed = _git(self.work, "diff", "--name-only", last[0], head, "--", "environments", "manifests")
            if set(changed.split()) <= {path}:
                return last[1], _git(self.work, "show", f"{head}:{path}") + "\n"
        objects = parse_objects(kustomize_build(self.work / "environments" / ring, repo_root=self.work))
        maps = [o for o in objects if o.get("kind") == "ConfigMap" and "release.yaml" in o.get("data", {})]
        if len(maps) != 1:
            raise EdgeopsError(f"ring {ring}: expected one release ConfigMap, kustomize built {len(maps)}")
        self._built[ring] = (head, maps[0]["metadata"]["name"])
        return maps[0]["metadata"]["name"], maps[0]["data"]["release.yaml"]

    def sync(
        self, ring: str, phase: str, *, public_key: Any, interface: str, expect: str | None
    ) -> PhaseReport:
        """Argo CD, simulated: build the ring at the merged commit, read its release, roll the fleet."""
        commit = _git(self.work, "rev-parse", "--short=12", "HEAD")
        name, text = self._release_configmap(ring)
        release = parse_release(text, source=f"{ring} ConfigMap")
        if release is None:
            raise EdgeopsError(f"ring {ring} has no release at {commit}")
        if self.fleet is None:
            self.fleet = Fleet(
                nodes=self.nodes,
                pilot=self.pilot,
                workdir=self.root / "fleet",
                rings=load_rings(self.work),
                public_key=public_key,
                accept_interfaces=(interface,),
            )
        self.say(f"   Argo CD (simulated): {ring} at {commit} → ConfigMap {name} pins {release.version}")
        report = self.fleet.rollout(phase, ring, release)
        versions = self.fleet.versions()
        wave = (
            f"wave {report.percent:g}%: {report.in_wave} of {report.nodes} nodes run {release.version}, "
            "the rest "
            f"{release.previous.version if release.previous else '-'} ({report.prefetched} prefetched it)"
            if report.percent is not None and report.percent < 100
            else f"all {report.nodes} nodes run {release.version}"
        )
        self.say(
            f"   {ring}: {wave}; {report.converged}/{report.reachable} converged within "
            f"{report.sim_seconds:.0f} s (simulated); {report.store_reads} store reads; all nodes now: "
            + ", ".join(f"{c} on {v if v != 'none' else 'no model yet'}" for v, c in sorted(versions.items()))
        )
        if expect is not None and release.version != expect:
            raise EdgeopsError(f"{ring} synced {release.version}, expected {expect}")
        if not report.ok or self.fleet.violations:
            raise EdgeopsError(
                f"{phase}: the ring did not converge ({report.failures}; {self.fleet.violations[:3]})"
            )
        self.phases.append({**asdict(report), "commit": commit, "fleet_versions": versions})
        return report

    # --- telemetry ------------------------------------------------------------------------------------

    def report_predictions(  # noqa: PLR0917 (one caller, which names them all)
        self,
        ring: str,
        version: str,
        since: datetime,
        hours: float,
        windows: dict[str, np.ndarray],
        truth: np.ndarray,
        thresholds: np.ndarray,
        labels: list[str],
        seed: int,
    ) -> int:
        """Each node of ``ring`` runs test windows through its inference service (the reference one, which
        reports the version that made each prediction); most are validated by operators."""
        assert self.fleet is not None
        rng = np.random.default_rng(seed)
        rows: list[PredictionRow] = []
        n = len(truth)
        members = self.fleet.members(ring)
        serving = [
            m for m in members if self.fleet.version_of(m) == version
        ]  # the wave, in a ring with waves
        wanted = self.min_validated / (VALIDATED_SHARE * max(1, len(serving)))
        per_node = max(PREDICTIONS_PER_NODE, math.ceil(1.3 * wanted))  # enough evidence, with a margin
        for i, node in enumerate(serving):
            pick = rng.choice(n, size=min(per_node, n), replace=False)
            feed = {name: value[pick] for name, value in windows.items()}
            start = time.perf_counter()
            served = self.fleet.predict(node, feed)
            probabilities = served.outputs["probabilities"]
            per_row_ms = 1000.0 * (time.perf_counter() - start) / len(pick)
            for j, row in enumerate(pick):
                flagged = [labels[k] for k in range(len(labels)) if probabilities[j, k] >= thresholds[k]]
                true = [labels[k] for k in range(len(labels)) if truth[row, k] >= 0.5]
                at = since + timedelta(hours=hours * (j + 1) / (len(pick) + 1), seconds=i)
                validated = true if rng.random() < VALIDATED_SHARE else None
                rows.append(PredictionRow(node, served.version, at, flagged, validated, per_row_ms))
        if self.dsn:
            from tools.core.pg import connect
            from tools.gitops.telemetry import insert_predictions

            conn = connect(self.dsn)
            with conn:
                insert_predictions(conn, rows)
            conn.close()
        self.rows.extend(rows)
        return len(rows)

    def register_devices(self) -> None:
        assert self.fleet is not None
        devices = {n.name: n.ring for n in self.fleet.nodes}
        if self.dsn:
            from tools.core.pg import connect
            from tools.gitops.telemetry import ensure_schema, register_devices

            conn = connect(self.dsn)
            with conn:
                ensure_schema(conn)
                register_devices(conn, devices)
            conn.close()

    def telemetry_reader(self) -> TelemetryReader | None:
        """None (promote reads PostgreSQL) when a server is up; else the same numbers computed in-process."""
        if self.dsn:
            return None
        assert self.fleet is not None
        devices = {n.name: n.ring for n in self.fleet.nodes}

        def read(
            ring: str, version: str, since: datetime, until: datetime, members: frozenset[str] | None
        ) -> RingTelemetry:
            return telemetry_from_rows(
                self.rows, devices, ring=ring, version=version, since=since, until=until, members=members
            )

        return read

    def devices(self) -> Callable[[str], list[str]] | None:
        """None (promote reads edge_devices from PostgreSQL) when a server is up; else the fleet's members."""
        if self.dsn or self.fleet is None:
            return None
        return self.fleet.members

    # --- the report -----------------------------------------------------------------------------------

    def write_report(self, cfg: EdgeopsConfig) -> None:
        log = _git(self.work, "log", "--graph", "--format=%h %s%n%w(0,4,4)%b", "main")
        (self.report / "git-log.txt").write_text(log + "\n")
        (self.report / "fleet.json").write_text(json.dumps(self.phases, indent=2, default=str) + "\n")
        prs = [{"number": p.number, "title": p.title, "labels": p.labels, "head": p.head} for p in self.prs]
        (self.report / "prs.json").write_text(json.dumps(prs, indent=2) + "\n")
