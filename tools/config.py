"""``edgeops.yaml``: the repository's configuration, parsed into typed, frozen models.

Found as ``--config PATH``, else ``$EDGEOPS_CONFIG``, else ``edgeops.yaml`` in the current directory or the
nearest parent that has one. Unknown keys and wrong types fail with the file, line and key path.
Secrets never live here: credentials come from the environment (AWS_*, EDGEOPS_PG_DSN, EDGEOPS_SIGNING_KEY).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tools.errors import ConfigError
from tools.typedyaml import Strict, load_model

__all__ = [
    "CONFIG_FILENAME",
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
_RING_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_STORE_URI = re.compile(r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file://.+)$")


class StoreConfig(Strict):
    bundles: str = "file://.edgeops/store"

    @field_validator("bundles")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not _STORE_URI.match(value):
            raise ValueError(f"{value!r} is not a store URI: use s3://bucket/prefix or file:///path")
        return value


class DataConfig(Strict):
    ldo_store: str = "s3://context-edge-ldos/ldos"
    snapshot_limit: int = Field(default=100_000, ge=1)
    max_reject_fraction: float = Field(default=0.01, ge=0.0, le=1.0)
    local_path: str = ".edgeops/data/ldos"
    cache_path: str = ".edgeops/cache/ldos"
    val_fraction: float = Field(default=0.1, ge=0.0, le=0.5)
    test_fraction: float = Field(default=0.1, ge=0.0, le=0.5)

    @field_validator("ldo_store")
    @classmethod
    def _s3(cls, value: str) -> str:
        if not value.startswith("s3://") or len(value) <= len("s3://"):
            raise ValueError(f"{value!r} is not an s3://bucket/prefix URI")
        return value


class RingConfig(Strict):
    path: str
    after: str | None = None
    soak_hours: float = Field(default=24.0, ge=0.0)


class EvaluationGates(Strict):
    min_subset_accuracy: float = Field(default=0.90, ge=0.0, le=1.0)
    max_regression_vs_fleet: float = Field(default=0.01, ge=0.0, le=1.0)
    min_recall: dict[str, float] = Field(default_factory=dict)
    max_fp_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    max_fn_rate: float = Field(default=0.05, ge=0.0, le=1.0)


class TelemetryGates(Strict):
    min_reporting_fraction: float = Field(default=0.9, ge=0.0, le=1.0)
    min_validated_predictions: int = Field(default=200, ge=0)
    min_accuracy: float = Field(default=0.90, ge=0.0, le=1.0)
    max_fp_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    max_fn_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    max_error_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    max_p95_latency_ms: float = Field(default=50.0, gt=0.0)


class GatesConfig(Strict):
    evaluation: EvaluationGates = Field(default_factory=EvaluationGates)
    telemetry: TelemetryGates = Field(default_factory=TelemetryGates)


class ReviewConfig(Strict):
    reviewers: list[str] = Field(default_factory=list)
    team_reviewers: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=lambda: ["model-release"])


class ForgeConfig(Strict):
    kind: Literal["github", "local"] = "local"
    repository: str | None = None
    base_branch: str = "main"

    @model_validator(mode="after")
    def _github_needs_repo(self) -> ForgeConfig:
        if self.kind == "github" and not (
            self.repository and re.match(r"^[\w.-]+/[\w.-]+$", self.repository)
        ):
            raise ValueError("forge.kind 'github' needs forge.repository as 'owner/name'")
        return self


class SigningConfig(Strict):
    public_key: str = "environments/release-signing/release-signing.pub"


class CostConfig(Strict):
    gpu_hour_usd: float = Field(default=2.50, ge=0.0)


class EdgeopsConfig(Strict):
    version: Literal[1]
    training_config: str = "training/configs/default.yaml"
    store: StoreConfig = Field(default_factory=StoreConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rings: dict[str, RingConfig]
    gates: GatesConfig = Field(default_factory=GatesConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    forge: ForgeConfig = Field(default_factory=ForgeConfig)
    signing: SigningConfig = Field(default_factory=SigningConfig)
    cost: CostConfig = Field(default_factory=CostConfig)

    @model_validator(mode="after")
    def _ring_order(self) -> EdgeopsConfig:
        if not self.rings:
            raise ValueError("rings: at least one ring is needed")
        for name, ring in self.rings.items():
            if not _RING_NAME.match(name):
                raise ValueError(f"rings.{name}: ring names are lower-case letters, digits and '-'")
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
        return self

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
