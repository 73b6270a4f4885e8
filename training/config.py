"""The training config: a flat, commented YAML file (``training/configs/default.yaml``).

The data-interface keys (channels, window, labels) decide what an LDO must look like to be accepted and
what the exported model takes; changing any of them changes the model interface and so its MAJOR version.
Unknown keys and wrong types fail with the key's path and line (tools.typedyaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tools.typedyaml import Strict, load_model

__all__ = ["DEFAULT_CONFIG", "DEMO_CONFIG", "DataSpec", "TrainingConfig", "load_training_config"]

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"
DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"  # the default, tuned for a few thousand LDOs


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
    # model
    conv_channels: list[int] = Field(default_factory=lambda: [16, 32, 32])
    first_kernel: int = 8
    first_stride: int = 4
    hidden: int = 64
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    # optimisation
    epochs: int = 30
    batch_size: int = 256
    lr: float = Field(default=3e-3, gt=0.0)
    min_lr_ratio: float = Field(default=0.05, ge=0.0, le=1.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    warmup_epochs: float = Field(default=1.0, ge=0.0)
    early_stop_patience: int = 5
    grad_clip: float = Field(default=1.0, ge=0.0)
    threshold_beta: float = Field(default=2.0, gt=0.0)
    # runtime
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    bf16: bool = True
    eval_batch_size: int = 4096

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
        for key in ("window", "product_vocab", "recipe_vocab", "asset_vocab", "embed_dim", "first_kernel",
                    "first_stride", "hidden", "epochs", "batch_size", "eval_batch_size"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise ValueError("conv_channels must list at least one positive channel count")
        if self.early_stop_patience < 0:
            raise ValueError(f"early_stop_patience must be >= 0, got {self.early_stop_patience}")
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
