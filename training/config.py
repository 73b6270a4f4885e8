"""The training config: a flat, commented YAML file (``training/configs/default.yaml``).

The data-interface keys (channels, window, labels) decide what an LDO must look like to be accepted and
what the exported model takes; changing any of them changes the model interface and so its MAJOR version.
Unknown keys and wrong types fail with the key's path and line (tools.typedyaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import field_validator, model_validator

from tools.typedyaml import Strict, load_model

__all__ = ["DEFAULT_CONFIG", "DataSpec", "TrainingConfig", "load_training_config"]

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


@dataclass(frozen=True)
class DataSpec:
    """What an LDO v1 record must carry to be usable with a given training config."""

    channels: tuple[str, ...]
    window: int
    labels: tuple[str, ...]
    sample_rate_hz: float


class TrainingConfig(Strict):
    # data interface
    channels: list[str]
    window: int
    sample_rate_hz: float
    labels: list[str]
    # embedding vocabularies (capacity, the reserved "unknown" index 0 included)
    product_vocab: int = 100
    recipe_vocab: int = 50
    asset_vocab: int = 200
    embed_dim: int = 16
    seed: int = 0

    @field_validator("channels", "labels")
    @classmethod
    def _unique_names(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("must list at least one name")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"names must be unique, repeated: {', '.join(dupes)}")
        return names

    @model_validator(mode="after")
    def _positive(self) -> TrainingConfig:
        for key in ("window", "product_vocab", "recipe_vocab", "asset_vocab", "embed_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if not self.sample_rate_hz > 0:
            raise ValueError(f"sample_rate_hz must be positive, got {self.sample_rate_hz}")
        return self

    def data_spec(self) -> DataSpec:
        return DataSpec(
            channels=tuple(self.channels),
            window=self.window,
            labels=tuple(self.labels),
            sample_rate_hz=self.sample_rate_hz,
        )


def load_training_config(path: Path | None = None) -> TrainingConfig:
    return load_model(path or DEFAULT_CONFIG, TrainingConfig)
