"""The training config: a flat, commented YAML file (``training/configs/default.yaml``), plus deltas.

The data-interface keys (channels, window, labels) decide what an LDO must look like to be accepted and
what the exported model takes; changing any of them changes the model interface and so its MAJOR version.
Unknown keys and wrong types fail with the key's path and line (tools.core.typedyaml).

Deltas, the way nanoGPT's configurator and torchtune's ``key=value`` overrides work: one base config and
small changes on top of it, validated by the same strict model as a full file.

- ``base: default.yaml`` in a config file (a path relative to that file; an absolute path works too):
  the file's keys replace the base's, key by key at the top level (a key whose value is a mapping in both
  would be merged the same way, a level down; lists and scalars are replaced whole). Bases chain; a cycle is
  an error. ``training/configs/demo.yaml`` and ``gpu.yaml`` are such deltas over ``default.yaml``.
- ``overrides``: ``"key=value"`` strings (``edgeops train|pipeline run --set epochs=5``), applied last, in
  order (a repeated key: the last one wins). The value is read as YAML, so ``lr=3e-4``, ``bf16=true`` and
  ``conv_channels=[16,32]`` are a float, a bool and a list; ``seed="7"`` is a string (and so an error).

An error names where its value came from: ``file:line`` for a key from a file (the base's file and line
when the key comes from the base), ``--set key=value`` for an override. What a run records (``run.json``,
the checkpoint) is the *effective* config, ``TrainingConfig.model_dump()``: every value, no ``base:``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from ruamel.yaml.error import YAMLError

from tools.core.errors import ConfigError
from tools.core.safeyaml import SafeYAML
from tools.core.typedyaml import Loc, Strict, parse_model, plain, read_mapping

__all__ = [
    "BASE_KEY",
    "DEFAULT_CONFIG",
    "DEMO_CONFIG",
    "SNAPSHOT_KEYS",
    "DataSpec",
    "TrainingConfig",
    "apply_overrides",
    "load_training_config",
    "parse_override",
]

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"
DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"  # the default, tuned for a few thousand LDOs
BASE_KEY = "base"  # a config file's base config, resolved here; never a key of TrainingConfig
# What `edgeops snapshot` reads from the training config: the data interface and the vocabulary capacities.
SNAPSHOT_KEYS = ("channels", "window", "sample_rate_hz", "labels", "product_vocab", "recipe_vocab",
                 "asset_vocab")  # fmt: skip


@dataclass(frozen=True)
class DataSpec:
    """What an LDO v1 record must carry to be usable with a given training config."""

    channels: tuple[str, ...]
    window: int
    labels: tuple[str, ...]
    sample_rate_hz: float


class TrainingConfig(Strict):
    # Bounds are field constraints, so an error names its key (and the line or the --set it came from).
    # data interface
    channels: list[str]
    window: int = Field(ge=1)
    sample_rate_hz: float = Field(gt=0.0)
    labels: list[str]
    # embedding vocabularies (capacity, the reserved "unknown" index 0 included)
    product_vocab: int = Field(default=100, ge=1)
    recipe_vocab: int = Field(default=50, ge=1)
    asset_vocab: int = Field(default=200, ge=1)
    embed_dim: int = Field(default=16, ge=1)
    seed: int = 0
    # model
    conv_channels: list[int] = Field(default_factory=lambda: [16, 32, 32])
    first_kernel: int = Field(default=8, ge=1)
    first_stride: int = Field(default=4, ge=1)
    hidden: int = Field(default=64, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    # optimisation
    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=3e-3, gt=0.0)
    min_lr_ratio: float = Field(default=0.05, ge=0.0, le=1.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    warmup_epochs: float = Field(default=1.0, ge=0.0)
    early_stop_patience: int = Field(default=5, ge=0)
    grad_clip: float = Field(default=1.0, ge=0.0)
    threshold_beta: float = Field(default=2.0, gt=0.0)
    threshold_max_fp_rate: float = Field(default=0.04, ge=0.0, le=1.0)
    # runtime
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    bf16: bool = True
    eval_batch_size: int = Field(default=4096, ge=1)

    @field_validator("channels", "labels")
    @classmethod
    def _unique_names(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("must list at least one name")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"names must be unique, repeated: {', '.join(dupes)}")
        return names

    @field_validator("conv_channels")
    @classmethod
    def _positive_channels(cls, counts: list[int]) -> list[int]:
        if not counts or min(counts) < 1:
            raise ValueError("must list at least one channel count, each at least 1")
        return counts

    def data_spec(self) -> DataSpec:
        return DataSpec(
            channels=tuple(self.channels),
            window=self.window,
            labels=tuple(self.labels),
            sample_rate_hz=self.sample_rate_hz,
        )


# --- base: and --set ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    """One source of values: a config file, or one override; ``where`` names the origin of each key path."""

    data: dict[str, Any]
    where: dict[Loc, str]


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)``, the value read as a YAML scalar or flow collection."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. --set epochs=5")
    if not key:
        raise ConfigError(f"--set {text}: the key before '=' is empty; expected KEY=VALUE")
    if key == BASE_KEY:
        raise ConfigError(f"--set {text}: `{BASE_KEY}` is read from a config file only, not from --set")
    try:
        value = plain(SafeYAML(typ="rt").load(raw))  # as bounded as a config file's values
    except YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"--set {text}: the value is not valid YAML: {detail}") from None
    return key, value


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top``'s keys replace ``base``'s; a key whose value is a mapping in both is merged the same way."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        out[key] = _merge(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return out


def apply_overrides(mapping: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A new mapping: ``mapping`` with each ``"key=value"`` applied in order (pure; validates nothing)."""
    if isinstance(overrides, str):
        raise TypeError("overrides: a sequence of 'key=value' strings, not one string")
    out = dict(mapping)
    for text in overrides:
        key, value = parse_override(text)
        out = _merge(out, {key: value})
    return out


def _has(data: Any, loc: Loc) -> bool:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return False
    return True


def _origin(layer: _Layer, loc: Loc) -> str | None:
    return next((layer.where[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in layer.where), None)


def _where(data: Any, layers: Sequence[_Layer], loc: Loc = ()) -> dict[Loc, str]:
    """Each key path of the merged ``data`` -> the origin text of the topmost layer that has it."""
    out: dict[Loc, str] = {}
    children: Iterable[tuple[str | int, Any]] = ()
    if isinstance(data, dict):
        children = data.items()
    elif isinstance(data, list):
        children = enumerate(data)
    for part, value in children:
        child = (*loc, part)
        origin = next((_origin(layer, child) for layer in reversed(layers) if _has(layer.data, child)), None)
        if origin is not None:
            out[child] = origin
        out.update(_where(value, layers, child))
    return out


def _file_layers(path: Path, chain: tuple[Path, ...] = ()) -> list[_Layer]:
    """``path`` and its bases, the deepest base first; ``chain``: the files that led here, resolved."""
    data, lines = read_mapping(path)
    where = {loc: f"{path}:{line}" for loc, line in lines.items() if line}
    layers: list[_Layer] = []
    if BASE_KEY in data:
        base = data.pop(BASE_KEY)
        at = where.get((BASE_KEY,), str(path))
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"{at}: {BASE_KEY}: expected the path of a config file, got {base!r}")
        base_path = path.parent / base  # an absolute `base` stays absolute
        if not base_path.is_file():
            raise ConfigError(f"{at}: {BASE_KEY}: {base_path}: no such config file")
        seen, target = (*chain, path.resolve()), base_path.resolve()
        if target in seen:
            cycle = " -> ".join(str(p) for p in (*seen[seen.index(target) :], target))
            raise ConfigError(f"{at}: {BASE_KEY}: {base} makes a cycle: {cycle}")
        layers = _file_layers(base_path, seen)
    layers.append(_Layer(data, {loc: w for loc, w in where.items() if loc[:1] != (BASE_KEY,)}))
    return layers


def load_training_config(path: Path | None = None, overrides: Sequence[str] = ()) -> TrainingConfig:
    """The effective training config: ``path`` (default ``default.yaml``) over its ``base:`` chain, then
    each ``"key=value"`` of ``overrides``, validated by the strict :class:`TrainingConfig`."""
    if isinstance(overrides, str):  # one "key=value" string would otherwise be read character by character
        raise TypeError("overrides: a sequence of 'key=value' strings, not one string")
    path = Path(path) if path is not None else DEFAULT_CONFIG
    layers = _file_layers(path)
    for text in overrides:
        key, value = parse_override(text)
        layers.append(_Layer({key: value}, {(key,): f"--set {text}"}))
    data: dict[str, Any] = {}
    for layer in layers:
        data = _merge(data, layer.data)
    return parse_model(data, TrainingConfig, source=str(path), where=_where(data, layers))
