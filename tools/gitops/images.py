"""Agent upgrades: the model-updater image each ring runs, pinned by digest in the ring's overlay.

    edgeops image pin --ring pilot --image ghcr.io/acme/model-updater --digest sha256:<64 hex> \\
        [--source-commit SHA]                          # the images workflow, for every image it builds
    edgeops image promote --from pilot [--to fleet]    # by hand, once pilot runs the new agent well

DESIGN.md ("Rings and waves"): agent upgrades are pinned per ring (the image digest in the ring's overlay)
and move pilot → fleet like a model. The pin is kustomize's ``images:`` entry in
``environments/<ring>/kustomization.yaml``, matched by the base DaemonSet's image name (:data:`UPDATER`)
and rewriting it to ``newName@digest`` for the agent and its init container alike:

    images:
      - name: ghcr.io/context-edge/model-updater
        newName: ghcr.io/acme/model-updater      # only when the image lives elsewhere than the base's name
        digest: sha256:…

Until the first image is built there is no digest, and the entry keeps the base's tag (``newTag``); the
first pin replaces that line. A digest, not a tag: a tag can be moved to other bytes, a digest cannot, and
the DaemonSet's pod template changes exactly when a ring's pin does (its rolling update is the upgrade).

Each change is a pull request made like a release PR (:mod:`tools.gitops.promotion`): one commit on the
base tip in a scratch worktree, a bot branch per ring and digest (``agent/<ring>/<12 hex>``), and the PR
opened or updated through the forge. Running a command twice updates the same PR; a newer pin closes the
ring's older open one. ``edgeops validate pr`` (:mod:`tools.gitops.policy`) checks the order: pilot takes
any well-formed digest of the updater, fleet only the digest pilot pins on the base branch.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from io import StringIO
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from tools.core.config import EdgeopsConfig
from tools.core.errors import EdgeopsError
from tools.core.log import fields
from tools.core.safeyaml import SafeYAML, YAMLLimitError
from tools.gitops.forge import PullRequest
from tools.gitops.gitrepo import Repo, commit_message

if TYPE_CHECKING:
    from tools.gitops.promotion import Workspace

__all__ = [
    "AGENT_LABEL",
    "DIGEST",
    "UPDATER",
    "ImageError",
    "ImagePin",
    "PinEvent",
    "PinOutcome",
    "base_image",
    "check_digest",
    "check_image",
    "effective_ref",
    "kustomization_path",
    "pin",
    "pin_history",
    "pin_text",
    "pinned",
    "promote_image",
    "read_pin",
]

log = logging.getLogger("edgeops.release")

# The image name the base DaemonSet gives the agent and its init container (manifests/model-updater/
# daemonset.yaml, without the tag): what each ring's `images:` entry matches.
UPDATER = "ghcr.io/context-edge/model-updater"
BASE_DAEMONSET = "manifests/model-updater/daemonset.yaml"
KUSTOMIZATION = "kustomization.yaml"
AGENT_LABEL = "agent-upgrade"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# A repository in a registry, as the OCI distribution spec and docker name it: a registry host (a dot or a
# port tells it from a path), lowercase path components, and the updater's own last component.
_IMAGE = re.compile(
    r"(?P<registry>[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]+)?)"
    r"/(?P<path>([a-z0-9]+([._-][a-z0-9]+)*/)*model-updater)"
)


class ImageError(EdgeopsError):
    """An image pin was refused: a malformed digest or image name, an overlay this cannot edit, a ring
    order that does not hold."""


@dataclass(frozen=True)
class ImagePin:
    """The updater's ``images:`` entry of one ring's overlay."""

    name: str  # what kustomize matches (the base's image name)
    new_name: str | None = None
    new_tag: str | None = None
    digest: str | None = None

    @property
    def image(self) -> str:
        """The repository the ring's nodes pull from."""
        return self.new_name or self.name

    @property
    def ref(self) -> str:
        """The image reference the ring's pods get, as kustomize writes it (tag and digest both, if set)."""
        tag = f":{self.new_tag}" if self.new_tag else ""
        return f"{self.image}{tag}{'@' + self.digest if self.digest else ''}"


def check_digest(digest: str) -> str:
    """``digest`` when it is ``sha256:`` and 64 lowercase hex digits (an OCI image or index digest)."""
    if not DIGEST.fullmatch(digest):
        raise ImageError(f"{digest!r} is not an image digest: expected sha256: and 64 lowercase hex digits")
    return digest


def check_image(image: str) -> str:
    """``image`` when it names a model-updater repository in a registry (no tag, no digest)."""
    if not _IMAGE.fullmatch(image):
        raise ImageError(
            f"{image!r} is not the model-updater's image: expected REGISTRY/[PATH/]model-updater in "
            f"lowercase, without a tag or digest (e.g. {UPDATER})"
        )
    return image


def kustomization_path(cfg: EdgeopsConfig, ring: str) -> str:
    """The ring's overlay file, relative to the repository root (a git path)."""
    return f"{cfg.ring(ring).path.rstrip('/')}/{KUSTOMIZATION}"


# --- reading and rewriting the overlay ------------------------------------------------------------------


def _round_trip() -> YAML:
    yaml = SafeYAML()  # round-trip: comments, key order and quotes survive; no aliases, bounded
    yaml.width = 4096  # never fold a digest onto two lines
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the overlays' own layout: `  - name: …`
    return yaml


def _load(text: str, source: str, yaml: YAML | None = None) -> Any:
    try:
        return (yaml or SafeYAML(typ="safe", pure=True)).load(text)
    except YAMLLimitError as exc:
        raise ImageError(f"{source}: {exc}") from None
    except YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ImageError(f"{source}: not valid YAML ({detail})") from None


def _entry(doc: Any, source: str) -> Any:
    """The updater's mapping in ``doc``'s ``images:`` list, or None."""
    if not isinstance(doc, dict):
        raise ImageError(f"{source}: not a Kustomization (a mapping)")
    images = doc.get("images")
    if images is None:
        return None
    if not isinstance(images, list):
        raise ImageError(f"{source}: `images:` is not a list")
    found = [e for e in images if isinstance(e, dict) and e.get("name") == UPDATER]
    if len(found) > 1:
        raise ImageError(f"{source}: `images:` names {UPDATER} {len(found)} times; kustomize uses one")
    return found[0] if found else None


def read_pin(text: str, *, source: str) -> ImagePin | None:
    """The updater's pin in a ring's ``kustomization.yaml``; None when the overlay has none (the base's
    image, as the DaemonSet names it)."""
    entry = _entry(_load(text, source), source)
    if entry is None:
        return None
    unknown = set(entry) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise ImageError(f"{source}: the {UPDATER} entry has unknown keys {sorted(unknown)}")

    def value(key: str) -> str | None:
        v = entry.get(key)
        return None if v is None else str(v)

    return ImagePin(UPDATER, value("newName"), value("newTag"), value("digest"))


def pin_text(text: str, *, image: str, digest: str, source: str) -> str:
    """``text`` (a ring's kustomization.yaml) with the updater pinned to ``image@digest``, comments kept.

    Only the entry's lines change: ``digest`` takes the new value (the whole diff of a later pin), a tag
    pin's ``newTag`` line goes (with its comment), and ``newName`` is written only when ``image`` is not the
    base's name. An overlay without the entry gets one at the end of its ``images:`` list.
    """
    check_image(image)
    check_digest(digest)
    yaml = _round_trip()
    doc = _load(text, source, yaml)
    entry = _entry(doc, source)
    if entry is None:
        images = doc.get("images")
        if images is None:
            images = doc["images"] = CommentedSeq()
        entry = CommentedMap(name=UPDATER)
        images.append(entry)
    if image == UPDATER:
        entry.pop("newName", None)
    elif entry.get("newName") != image:
        if "newName" in entry:
            entry["newName"] = image
        else:
            entry.insert(1, "newName", image)
    entry.pop("newTag", None)
    if entry.get("digest") != digest:
        entry["digest"] = digest
    out = StringIO()
    yaml.dump(doc, out)
    new_text = out.getvalue()
    expected = ImagePin(UPDATER, None if image == UPDATER else image, None, digest)
    if read_pin(new_text, source=source) != expected:
        raise ImageError(f"{source}: rewriting the images: entry did not give {expected.ref}; fix it by hand")
    return new_text


def base_image(repo: Repo, ref: str) -> str:
    """The updater's image as the base DaemonSet names it at ``ref`` (what a ring without a pin runs);
    :data:`UPDATER` when it cannot be read there."""
    text = repo.show(ref, BASE_DAEMONSET)
    try:
        doc = _load(text or "", BASE_DAEMONSET)
        containers = doc["spec"]["template"]["spec"]["containers"]
        image = next(c["image"] for c in containers if c.get("name") == "model-updater")
    except (ImageError, KeyError, TypeError, StopIteration):
        return UPDATER
    return str(image)


def effective_ref(pin: ImagePin | None, base: str) -> str:
    """The image reference a ring's agent runs: ``base`` (the DaemonSet's) as the ring's pin rewrites it,
    the way kustomize's image transformer does (a digest replaces the tag unless ``newTag`` is set too)."""
    if pin is None:
        return base
    name, _, digest = base.partition("@")
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    if pin.digest:
        tag, digest = pin.new_tag, pin.digest
    elif pin.new_tag:
        tag, digest = pin.new_tag, ""
    return f"{pin.new_name or name}{':' + tag if tag else ''}{'@' + digest if digest else ''}"


# --- history --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinEvent:
    """A first-parent commit of the base branch that changed a ring's updater pin."""

    commit: str
    time: datetime
    pin: ImagePin | None


def pin_history(repo: Repo, ref: str, path: str) -> list[PinEvent]:
    """The updater pins ``path`` held along the first-parent chain of ``ref``, oldest first; a commit that
    edits the overlay but not its pin is left out. A file that did not parse at a commit is skipped."""
    lines = repo.git("rev-list", "--first-parent", "--reverse", ref, "--", path)
    events: list[PinEvent] = []
    for line in lines.splitlines():
        sha = line.strip()
        text = repo.show(sha, path)
        if text is None:
            continue
        try:
            current = read_pin(text, source=f"{path} at {sha[:12]}")
        except ImageError:
            continue
        if events and events[-1].pin == current:
            continue
        events.append(PinEvent(sha, repo.commit_time(sha), current))
    return events


def soaked(cfg: EdgeopsConfig, ring: str, since: PinEvent, now: datetime) -> tuple[float, float]:
    """(hours ``ring`` has run the pin of ``since`` at ``now``, the ring's ``soak_hours``): an agent soaks in
    a ring as a model does, and `image promote` and `validate pr` read the same two figures."""
    return (now - since.time).total_seconds() / 3600.0, cfg.rings[ring].soak_hours


def pinned(repo: Repo, ref: str, cfg: EdgeopsConfig, ring: str) -> ImagePin | None:
    """The ring's updater pin at ``ref``."""
    path = kustomization_path(cfg, ring)
    text = repo.show(ref, path)
    if text is None:
        raise ImageError(f"{path} is missing at {ref}: ring {ring} has no overlay")
    return read_pin(text, source=f"{path} at {ref}")


# --- pull requests --------------------------------------------------------------------------------------


@dataclass
class PinOutcome:
    ring: str
    pin: ImagePin
    branch: str
    pr: PullRequest | None = None  # None: the ring already pins this image, nothing to do
    pushed: bool = False
    superseded: list[int] = field(default_factory=list)
    note: str = ""


def _branch(ring: str, digest: str) -> str:
    return f"agent/{ring}/{digest.removeprefix('sha256:')[:12]}"


def _open(
    ws: Workspace, *, ring: str, target: ImagePin, subject: str, body: str, trailers: list[tuple[str, str]]
) -> PinOutcome:
    """Commit ``target`` into the ring's overlay on ``agent/<ring>/<digest>``, push, open or update the PR,
    close the ring's older agent PRs."""
    from tools.gitops.promotion import _push_change, _supersede

    assert target.digest is not None
    path = kustomization_path(ws.cfg, ring)
    branch = _branch(ring, target.digest)
    if pinned(ws.repo, ws.base_ref, ws.cfg, ring) == target:
        note = f"{ring} already pins {target.ref} on {ws.cfg.forge.base_branch}: nothing to do"
        return PinOutcome(ring, target, branch, note=note)
    message = commit_message(subject, body, trailers)

    def change(wt: Repo) -> str:
        file = wt.root / path
        new = pin_text(file.read_text(), image=target.image, digest=target.digest or "", source=path)
        file.write_text(new)
        return message

    _, pushed = _push_change(ws, branch, [path], change)
    pr = ws.forge.open_or_update_pr(
        head=branch, base=ws.cfg.forge.base_branch, title=subject, body=body,
        labels=[AGENT_LABEL, f"ring:{ring}"], reviewers=ws.reviewers(path),
    )  # fmt: skip
    superseded = _supersede(ws, [f"agent/{ring}/"], pr, target.ref)
    log.info("agent upgrade PR", extra=fields(ring=ring, pr=pr.number, image=target.ref))
    return PinOutcome(ring, target, branch, pr, pushed, superseded)


def _body(ws: Workspace, ring: str, target: ImagePin, what: str) -> str:
    """A PR body: ``what`` the PR does, what merging it does to the ring, how to check and to undo it."""
    now = effective_ref(pinned(ws.repo, ws.base_ref, ws.cfg, ring), base_image(ws.repo, ws.base_ref))
    overlay = ws.cfg.rings[ring].path.rstrip("/")
    nxt = ws.next_ring(ring)
    registry, _, path = target.image.partition("/")
    owner = path.split("/")[0] if registry == "ghcr.io" else "OWNER"  # GHCR: ghcr.io/<owner>/<name>
    return "\n\n".join([
        f"## {ring}: agent upgrade\n\n{what} Now: `{now}`.",
        f"Approving this PR is the approval of this model-updater for ring **{ring}**. Merging it changes "
        f"the ring's DaemonSet pod template (agent and init container): the DaemonSet controller replaces "
        f"the agent on the {ring} nodes under the ring's `maxUnavailable` ({overlay}/ring.yaml), which "
        "counts offline nodes too: with that many of them away the rollout waits for them "
        "(kubernetes/kubernetes#117658). Models are not touched: each node keeps serving what it runs.",
        f"Check the image before approving: `gh attestation verify oci://{target.ref} --owner {owner}` "
        "verifies the build provenance the images workflow attested.",
        *([f"Once it runs well on the {ring} nodes, `edgeops image promote --from {ring}` opens the PR that "
           f"copies this pin to {nxt}."] if nxt else []),
        f"### How to roll back\n\nAfter merge: `git revert -m 1 <merge commit>` in a PR: {ring} returns to "
        "the image it pinned before (`edgeops validate pr` never blocks a return to an image the ring ran).",
    ])  # fmt: skip


def pin(ws: Workspace, *, ring: str, image: str, digest: str, source_commit: str | None = None) -> PinOutcome:
    """Open (or update) the PR that pins ``image@digest`` in ``ring``, which must be the first ring (the
    others get an image from the ring before them: :func:`promote_image`)."""
    first = ws.cfg.ring_order()[0]
    if ws.ring(ring) != first:
        raise ImageError(
            f"a new model-updater image is pinned in the first ring ({first}) only; {ring} gets it by "
            f"`edgeops image promote --from {ws.cfg.rings[ring].after} --to {ring}` once {first} runs it"
        )
    target = ImagePin(UPDATER, None if check_image(image) == UPDATER else image, None, check_digest(digest))
    built = f", built from commit {source_commit}," if source_commit else ""
    what = (
        f"Pins the model-updater image `{target.ref}`{built} in `{kustomization_path(ws.cfg, ring)}` "
        "(opened by `edgeops image pin`)."
    )
    trailers = [("Image", target.ref)] + ([("Source-Commit", source_commit)] if source_commit else [])
    subject = f"{ring}: model-updater {digest[:19]}"
    body = _body(ws, ring, target, what)
    return _open(ws, ring=ring, target=target, subject=subject, body=body, trailers=trailers)


def promote_image(ws: Workspace, *, from_ring: str, to_ring: str | None = None) -> PinOutcome:
    """Open (or update) the PR that copies ``from_ring``'s updater pin into the next ring (``to_ring``)."""
    to = to_ring or ws.next_ring(ws.ring(from_ring))
    if to is None:
        raise ImageError(f"{from_ring} is the last ring: there is no ring to promote its agent to")
    if ws.cfg.ring(to).after != from_ring:
        raise ImageError(
            f"{to} is promoted from {ws.cfg.rings[to].after or 'no ring'}, not {from_ring} (rings.{to}.after)"
        )
    history = pin_history(ws.repo, ws.base_ref, kustomization_path(ws.cfg, from_ring))
    source = history[-1].pin if history else None
    if source is None or source.digest is None:
        raise ImageError(
            f"{from_ring} pins no model-updater digest on {ws.cfg.forge.base_branch} (it runs "
            f"{effective_ref(source, base_image(ws.repo, ws.base_ref))}): pin one first (the images "
            f"workflow, or `edgeops image pin --ring {from_ring}`)"
        )
    target = ImagePin(UPDATER, source.new_name, None, source.digest)
    since = history[-1]
    hours, soak = soaked(ws.cfg, from_ring, since, ws.now)
    if hours < soak and pinned(ws.repo, ws.base_ref, ws.cfg, to) != target:
        # The same soak as a model's: an agent that crash-loops or misreports only shows it on real nodes.
        raise ImageError(
            f"{from_ring} has run the model-updater {target.ref} for {hours:.1f} h of its {soak:g} h soak "
            f"(rings.{from_ring}.soak_hours, since commit {since.commit[:12]}); wait {soak - hours:.1f} h "
            f"more, then re-run `edgeops image promote --from {from_ring}`"
        )
    what = (
        f"Copies {from_ring}'s model-updater pin `{target.ref}` into `{kustomization_path(ws.cfg, to)}` "
        f"(opened by `edgeops image promote`). {from_ring} has run it for {hours:.1f} h, since commit "
        f"`{since.commit[:12]}`."
    )
    subject = f"{to}: model-updater {source.digest[:19]} from {from_ring}"
    trailers = [("Image", target.ref), ("Promoted-From", from_ring)]
    body = _body(ws, to, target, what)
    return _open(ws, ring=to, target=target, subject=subject, body=body, trailers=trailers)
