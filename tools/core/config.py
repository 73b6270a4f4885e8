"""``edgeops.yaml``: the repository's configuration, parsed into typed, frozen models.

Found as ``--config PATH``, else ``$EDGEOPS_CONFIG``, else ``edgeops.yaml`` in the current directory or the
nearest parent that has one. Unknown keys and wrong types fail with the file, line and key path.
Secrets never live here: credentials come from the environment (AWS_*, EDGEOPS_PG_DSN, EDGEOPS_SIGNING_KEY).
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tools.core.errors import ConfigError
from tools.core.names import RING_NAME, RING_NAME_RULE
from tools.core.typedyaml import Strict, load_model
from tools.core.windows import SwapWindow

__all__ = [
    "CONFIG_FILENAME",
    "RELEASE_FILENAME",
    "CostConfig",
    "DataConfig",
    "EdgeopsConfig",
    "EvaluationGates",
    "ForgeConfig",
    "GatesConfig",
    "ReviewConfig",
    "RingConfig",
    "SigningConfig",
    "StoreConfig",
    "TelemetryGates",
    "find_config",
    "load_config",
]

CONFIG_FILENAME = "edgeops.yaml"
RELEASE_FILENAME = "release.yaml"  # in each ring's overlay folder
_STORE_URI = re.compile(r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file://.+)$")


class StoreConfig(Strict):
    bundles: str = Field(
        default="file://.edgeops/store",
        description=(
            "Where published model bundles live (immutable, signed): `s3://bucket/prefix` or `file:///path`."
        ),
    )

    @field_validator("bundles")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not _STORE_URI.match(value):
            raise ValueError(f"{value!r} is not a store URI: use s3://bucket/prefix or file:///path")
        return value


class DataConfig(Strict):
    ldo_store: str = Field(
        default="s3://context-edge-ldos/ldos",
        description=(
            "Where the runtime backend stores LDO objects; the PostgreSQL table `ldos` names their keys."
        ),
    )
    snapshot_limit: int = Field(
        default=100_000, ge=1, description="The newest N validated LDOs a training snapshot takes."
    )
    max_reject_fraction: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,  # .nan would compare false with every share and so disable the check
        description="A snapshot fails when more than this share of records is malformed (a backend bug).",
    )
    local_path: str = Field(
        default=".edgeops/data/ldos", description="`--source dir` default: a folder of LDO JSON files."
    )
    cache_path: str = Field(
        default=".edgeops/cache/ldos",
        description="Downloaded LDO objects by ETag, so the next month fetches only what is new.",
    )
    val_fraction: float = Field(
        default=0.1,
        ge=0.0,
        le=0.5,
        description=(
            "Share of LDOs in the validation split (assigned by a hash of `ldo_id`: stable across months)."
        ),
    )
    test_fraction: float = Field(
        default=0.1,
        ge=0.0,
        le=0.5,
        description="Share of LDOs in the test split, on which candidate and fleet model are compared.",
    )

    @field_validator("ldo_store")
    @classmethod
    def _s3(cls, value: str) -> str:
        if not value.startswith("s3://") or len(value) <= len("s3://"):
            raise ValueError(f"{value!r} is not an s3://bucket/prefix URI")
        return value


class RingConfig(Strict):
    path: str = Field(
        description="The ring's Kustomize overlay folder; its `release.yaml` is the ring's release."
    )
    after: str | None = Field(
        default=None, description="The ring this one is promoted from; exactly one ring has none (the first)."
    )
    soak_hours: float = Field(
        default=24.0,
        ge=0.0,
        description="How long a release must run in this ring before it may be promoted to the next.",
    )
    # Waves (DESIGN.md, "Rings and waves"): a new version reaches the first share of the ring's nodes (a
    # stable hash of each node's name decides), then each next share by its own PR once the current wave has
    # soaked and its nodes' telemetry passes the gates. [100] is the whole ring at once.
    waves: list[float] = Field(
        default_factory=lambda: [100.0],
        description=(
            "Percent of the ring's nodes in each rollout wave, strictly increasing, the last 100 (e.g. "
            "`[5, 25, 100]`); each wave is its own PR (`edgeops promote`). The first ring's is `[100]`."
        ),
    )
    wave_soak_hours: float = Field(
        default=24.0,
        ge=0.0,
        description="How long each wave but the last must run before `edgeops promote` opens the next one.",
    )
    skip_waves: bool = Field(
        default=False,
        description=(
            "Whether `edgeops validate pr` accepts a hand-made PR that widens a rollout past the next wave."
        ),
    )
    swap_windows: list[str] = Field(
        default_factory=list,
        description=(
            "When the ring's nodes may swap to a new model, in each node's local time "
            "(`[DAYS ]HH:MM-HH:MM`, e.g. `Mon-Fri 22:00-04:00`); empty: any time. Copied into the release "
            "file (`rollout.windows`) by `edgeops promote`."
        ),
    )

    @field_validator("path")
    @classmethod
    def _ring_path(cls, value: str) -> str:
        # One spelling per folder: `./environments/fleet/` and `environments/fleet` are the same git path, and
        # `edgeops validate pr` matches the files a PR changes against it.
        normal = posixpath.normpath(value.strip())
        if not value.strip() or normal == "." or normal.startswith(("/", "../")) or normal == "..":
            raise ValueError(
                f"ring path {value!r} must be a folder inside the repository, relative to its root "
                "(e.g. environments/pilot)"
            )
        return normal

    @field_validator("waves")
    @classmethod
    def _waves(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("at least one wave is needed: [100] is the whole ring at once")
        for i, percent in enumerate(value):
            if not 0 < percent <= 100:
                raise ValueError(
                    f"wave {percent:g} is not a percent of the ring's nodes above 0, at most 100"
                )
            if i and percent <= value[i - 1]:
                raise ValueError(
                    f"waves must grow strictly ({value[i - 1]:g} then {percent:g}): each wave reaches "
                    "more nodes"
                )
        if value[-1] != 100:
            raise ValueError(f"the last wave must be 100 (the whole ring), not {value[-1]:g}")
        return value

    @field_validator("swap_windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for text in value:
            SwapWindow.parse(text)  # a ValueError naming the window and the expected form
        return value

    def next_wave(self, percent: float | None) -> float | None:
        """The wave after ``percent`` (None: the ring runs no partial wave), or None past the last."""
        current = 100.0 if percent is None else percent
        return next((w for w in self.waves if w > current), None)


class EvaluationGates(Strict):
    min_subset_accuracy: float = Field(
        default=0.90, ge=0.0, le=1.0, description="Candidate's subset accuracy on the test split, at least."
    )
    max_regression_vs_fleet: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="At most this much subset accuracy below the fleet model, on the same test split.",
    )
    min_recall: dict[str, float] = Field(
        default_factory=dict, description="Per failure mode, the candidate's recall at least."
    )
    max_fp_rate: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Share of healthy windows flagged, at most."
    )
    max_fn_rate: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Share of failing windows called healthy, at most."
    )


class TelemetryGates(Strict):
    min_reporting_fraction: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description=(
            "Share of the ring's (or the wave's) registered nodes (table `edge_devices`) reporting "
            "predictions of the release. Offline nodes count in the denominator, and an edge fleet has some "
            "offline at any time (a line down, a cabinet unplugged): 0.8 passes with 10% offline and catches "
            "a release that silences nodes."
        ),
    )
    min_validated_predictions: int = Field(
        default=200,
        ge=0,
        description="Operator-validated predictions needed before accuracy, FP and FN rates are evidence.",
    )
    min_accuracy: float = Field(
        default=0.90,
        ge=0.0,
        le=1.0,
        description="Share of validated predictions whose predicted modes equal the validated ones.",
    )
    max_fp_rate: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Validated-healthy windows flagged, at most."
    )
    max_fn_rate: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Validated-failing windows called healthy, at most."
    )
    max_error_rate: float = Field(
        default=0.01, ge=0.0, le=1.0, description="Share of predictions that failed on the node, at most."
    )
    max_p95_latency_ms: float = Field(
        default=50.0, gt=0.0, description="95th percentile of inference latency on the nodes, at most."
    )
    install_grace_hours: float = Field(
        default=1.0,
        ge=0.0,
        description=(
            "Time a wave's nodes have to start running the release; after it, wave nodes that report only "
            "another version count as stuck."
        ),
    )
    min_on_target_fraction: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description=(
            "Of a wave's nodes that report any predictions, the share that must report the release (fewer: "
            "stuck installs; `promote` refuses, `guard` rolls back)."
        ),
    )
    min_sample_nodes: int = Field(
        default=3,
        ge=1,
        description=(
            "Fewer of a wave's nodes reporting than this (or than the wave has, when it is smaller): "
            "`guard` does not judge stuck installs and `promote` refuses for lack of evidence."
        ),
    )


class GatesConfig(Strict):
    evaluation: EvaluationGates = Field(
        default_factory=EvaluationGates,
        description="Offline gates: the candidate vs the fleet model; `edgeops evaluate`, `publish`.",
    )
    telemetry: TelemetryGates = Field(
        default_factory=TelemetryGates,
        description=(
            "Online gates on a ring's telemetry: `edgeops promote` (must pass), `edgeops guard` (a breach "
            "opens a rollback PR)."
        ),
    )


class ReviewConfig(Strict):
    reviewers: list[str] = Field(
        default_factory=list, description="GitHub users requested on every release PR, on top of CODEOWNERS."
    )
    team_reviewers: list[str] = Field(
        default_factory=list, description="GitHub teams (`org/team`) requested on every release PR."
    )
    labels: list[str] = Field(
        default_factory=lambda: ["model-release"],
        description="Labels of every release PR (plus `ring:<ring>`).",
    )


class ForgeConfig(Strict):
    kind: Literal["github", "local"] = Field(
        default="local",
        description=(
            "`github`: PRs through the GitHub API (a GitHub App's token from `GITHUB_TOKEN`, or minted from "
            "`EDGEOPS_GITHUB_APP_ID` and its private key); `local`: a bare git remote on this machine plus "
            "PR records."
        ),
    )
    repository: str | None = Field(
        default=None, description="`owner/name` of the GitHub repository (kind `github`)."
    )
    base_branch: str = Field(
        default="main",
        description="The branch release PRs target and whose first-parent history is the rings' history.",
    )

    @model_validator(mode="after")
    def _github_needs_repo(self) -> ForgeConfig:
        if self.kind == "github" and not (
            self.repository and re.match(r"^[\w.-]+/[\w.-]+$", self.repository)
        ):
            raise ValueError("forge.kind 'github' needs forge.repository as 'owner/name'")
        return self


class SigningConfig(Strict):
    public_key: str = Field(
        default="environments/release-signing/release-signing.pub",
        description="The Ed25519 public key nodes and `edgeops verify` trust (PEM).",
    )


class CostConfig(Strict):
    gpu_hour_usd: float = Field(
        default=2.50, ge=0.0, description="Cost of one GPU-hour, for the cost line of the model card."
    )


class EdgeopsConfig(Strict):
    version: Literal[1] = Field(description="Version of this file's format.")
    training_config: str = Field(
        default="training/configs/default.yaml",
        description="The training config whose data interface (channels, window, labels) LDOs must match.",
    )
    store: StoreConfig = Field(default_factory=StoreConfig, description="Where model bundles are published.")
    data: DataConfig = Field(
        default_factory=DataConfig, description="Where LDOs come from and how snapshots are cut."
    )
    rings: dict[str, RingConfig] = Field(
        description="The rings, by name; promotion order is given by `after`."
    )
    gates: GatesConfig = Field(
        default_factory=GatesConfig, description="What a model must pass, offline and in a ring."
    )
    review: ReviewConfig = Field(
        default_factory=ReviewConfig, description="Who is asked to approve release PRs."
    )
    forge: ForgeConfig = Field(default_factory=ForgeConfig, description="Where pull requests live.")
    signing: SigningConfig = Field(
        default_factory=SigningConfig, description="The release signing key nodes trust."
    )
    cost: CostConfig = Field(default_factory=CostConfig, description="For the model card's cost line.")

    @model_validator(mode="after")
    def _ring_order(self) -> EdgeopsConfig:
        if not self.rings:
            raise ValueError("rings: at least one ring is needed")
        for name, ring in self.rings.items():
            if not RING_NAME.fullmatch(name):
                raise ValueError(f"rings.{name}: not a ring name: use {RING_NAME_RULE}")
            if ring.after is not None and ring.after not in self.rings:
                raise ValueError(
                    f"rings.{name}.after: no ring named {ring.after!r} (have {list(self.rings)})"
                )
        firsts = [n for n, r in self.rings.items() if r.after is None]
        if len(firsts) != 1:
            raise ValueError(f"rings: exactly one ring must have no 'after' (the first ring), found {firsts}")
        order = self.ring_order()
        if len(order) != len(self.rings):
            raise ValueError("rings: 'after' links must form one chain without cycles or branches")
        first = self.rings[order[0]]
        if first.waves != [100]:
            raise ValueError(
                f"rings.{order[0]}.waves: the first ring takes a new version whole (its nodes are the "
                "pilot), so its waves are [100]; give waves to the rings after it"
            )
        return self

    @property
    def first_ring(self) -> str:
        """The ring the training pipeline proposes to."""
        return self.ring_order()[0]

    @property
    def last_ring(self) -> str:
        """The ring the whole fleet runs: evaluation compares candidates with its release."""
        return self.ring_order()[-1]

    def ring(self, name: str) -> RingConfig:
        """The ring called ``name``; a ConfigError naming the rings there are otherwise."""
        if name not in self.rings:
            raise ConfigError(
                f"no ring named {name!r} in edgeops.yaml (rings: {', '.join(self.ring_order())})"
            )
        return self.rings[name]

    def next_ring(self, name: str) -> str | None:
        order = self.ring_order()
        self.ring(name)
        i = order.index(name)
        return order[i + 1] if i + 1 < len(order) else None

    def release_path(self, ring: str) -> str:
        """The ring's release file, relative to the repository root (a git path: ``/`` separated)."""
        return f"{self.ring(ring).path.rstrip('/')}/{RELEASE_FILENAME}"

    def ring_order(self) -> list[str]:
        """Rings in promotion order: the first ring, then each ring whose ``after`` is the previous one."""
        first = next((n for n, r in self.rings.items() if r.after is None), None)
        order: list[str] = []
        while first is not None and first not in order:
            order.append(first)
            nxt = [n for n, r in self.rings.items() if r.after == first]
            first = nxt[0] if len(nxt) == 1 else None
        return order


def find_config(explicit: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("EDGEOPS_CONFIG")
    if env:
        return Path(env)
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_FILENAME} in {here} or its parents: run edgeops from the repository, or pass "
        "--config PATH (or set EDGEOPS_CONFIG)"
    )


def load_config(explicit: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> EdgeopsConfig:
    return load_model(find_config(explicit, cwd=cwd), EdgeopsConfig)
