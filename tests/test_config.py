"""edgeops.yaml and the training config: typed, strict, and errors that name the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from tools.config import EdgeopsConfig, find_config, load_config
from tools.errors import ConfigError
from training.config import load_training_config

CONFIG_TEXT = (REPO / "edgeops.yaml").read_text()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgeops.yaml"
    path.write_text(text)
    return path


def test_repository_config_parses_with_ring_order() -> None:
    cfg = load_config(REPO / "edgeops.yaml")
    assert isinstance(cfg, EdgeopsConfig)
    assert cfg.ring_order() == ["pilot", "fleet"]
    assert cfg.rings["pilot"].soak_hours == 24.0
    assert cfg.gates.evaluation.min_subset_accuracy == 0.90
    assert set(cfg.gates.evaluation.min_recall) == set(load_training_config().labels)


def test_unknown_key_names_line_path_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG_TEXT.replace("    soak_hours: 24 ", "    soak_hour: 24 "))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "soak_hour:" in text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:{line}: rings.pilot.soak_hour: unknown key (did you mean 'soak_hours'?)" in message
    assert "allowed keys here: path, after, soak_hours" in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "min_accuracy: 0.90",
            "min_accuracy: high",
            "gates.telemetry.min_accuracy: input should be a valid number",
        ),
        (
            "snapshot_limit: 100000",
            'snapshot_limit: "100000"',
            "data.snapshot_limit: input should be a valid integer",
        ),
        ("version: 1", "version: 2", "version: input should be 1"),
        ("kind: local", "kind: gitlab", "forge.kind: input should be 'github' or 'local'"),
        ("bundles: file://.edgeops/store", "bundles: ftp://x", "is not a store URI"),
        ("max_fp_rate: 0.05               #", "max_fp_rate: 1.5               #", "less than or equal to 1"),
        ("    after: pilot", "    after: canary", "rings.fleet.after: no ring named 'canary'"),
    ],
)
def test_wrong_values_are_rejected_with_the_key_path(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in CONFIG_TEXT
    path = write(tmp_path, CONFIG_TEXT.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nrings: {pilot: {path: p, colour: red}}\nstore: {bundle: x}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "2 problems" in message
    assert f"{path}:2: rings.pilot.colour: unknown key" in message
    assert f"{path}:3: store.bundle: unknown key (did you mean 'bundles'?)" in message


def test_ring_chain_must_have_one_start(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nrings:\n  a: {path: x, after: b}\n  b: {path: y, after: a}\n")
    with pytest.raises(ConfigError, match="exactly one ring must have no 'after'"):
        load_config(path)


def test_malformed_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "version: 1\nrings: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_config_is_found_upwards_and_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, CONFIG_TEXT)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.delenv("EDGEOPS_CONFIG", raising=False)
    assert find_config(cwd=deep) == path
    monkeypatch.setenv("EDGEOPS_CONFIG", "/elsewhere/edgeops.yaml")
    assert find_config(cwd=deep) == Path("/elsewhere/edgeops.yaml")
    monkeypatch.delenv("EDGEOPS_CONFIG")
    lonely = Path("/")
    with pytest.raises(ConfigError, match="pass --config PATH"):
        find_config(cwd=lonely)


def test_training_config_is_strict(tmp_path: Path) -> None:
    cfg = load_training_config()
    assert cfg.channels == ["vibration_x", "vibration_y", "temperature", "motor_current"]
    assert cfg.window == 128
    text = (REPO / "training/configs/default.yaml").read_text()
    bad = tmp_path / "t.yaml"
    bad.write_text(text.replace("window: 128", "window: 128.0"))
    with pytest.raises(ConfigError, match=r"window: input should be a valid integer"):
        load_training_config(bad)
    bad.write_text(text + "learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat: unknown key"):
        load_training_config(bad)
    bad.write_text(text.replace("labels: [bearing_wear,", "labels: [overheating,"))
    with pytest.raises(ConfigError, match="repeated: overheating"):
        load_training_config(bad)


@pytest.mark.parametrize(
    ("name", "changed"),
    [("gpu.yaml", {"epochs", "batch_size", "lr"}),
     ("demo.yaml", {"epochs", "batch_size", "early_stop_patience"})],
)  # fmt: skip
def test_other_training_configs_keep_the_production_interface(name: str, changed: set[str]) -> None:
    """A model trained with another config must still fit the nodes: same data interface, same model."""
    default = load_training_config().model_dump()
    other = load_training_config(REPO / "training/configs" / name).model_dump()
    assert {key for key in default if default[key] != other[key]} == changed
