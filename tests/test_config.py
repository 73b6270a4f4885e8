"""edgeops.yaml and the training config: typed, strict, and errors that name the file, line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO
from tools.core.config import EdgeopsConfig, find_config, load_config
from tools.core.errors import ConfigError
from training.config import apply_overrides, load_training_config, parse_override

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


def test_waves_and_their_gates_have_defaults_and_the_fleet_rolls_out_in_three() -> None:
    cfg = load_config(REPO / "edgeops.yaml")
    pilot, fleet = cfg.rings["pilot"], cfg.rings["fleet"]
    assert (pilot.waves, pilot.skip_waves, pilot.swap_windows) == ([100], False, [])
    assert (fleet.waves, fleet.wave_soak_hours) == ([5, 25, 100], 24.0)
    assert [fleet.next_wave(p) for p in (None, 5, 10, 25, 100)] == [None, 25, 25, 100, None]
    t = cfg.gates.telemetry
    assert (t.install_grace_hours, t.min_on_target_fraction, t.min_sample_nodes) == (1.0, 0.9, 3)


@pytest.mark.parametrize(
    ("waves", "expected"),
    [
        ("[]", "rings.fleet.waves: at least one wave is needed"),
        ("[5, 5, 100]", "rings.fleet.waves: waves must grow strictly (5 then 5)"),
        ("[25, 5, 100]", "waves must grow strictly (25 then 5)"),
        ("[0, 100]", "wave 0 is not a percent of the ring's nodes above 0, at most 100"),
        ("[5, 150]", "wave 150 is not a percent"),
        ("[5, 50]", "the last wave must be 100 (the whole ring), not 50"),
        ("[5, x]", "rings.fleet.waves[1]: input should be a valid number"),
    ],
)
def test_malformed_waves_are_rejected_with_the_key(tmp_path: Path, waves: str, expected: str) -> None:
    old = "    waves: [5, 25, 100]\n"
    assert old in CONFIG_TEXT
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, CONFIG_TEXT.replace(old, f"    waves: {waves}\n")))
    assert expected in str(info.value)


def test_the_first_ring_takes_a_version_whole_and_windows_must_parse(tmp_path: Path) -> None:
    pilot_waves = CONFIG_TEXT.replace("    # waves: [100]  ", "    waves: [10, 100]")
    with pytest.raises(ConfigError, match=r"rings\.pilot\.waves: the first ring takes a new version whole"):
        load_config(write(tmp_path, pilot_waves))
    bad = CONFIG_TEXT.replace(
        "    swap_windows: []", "    swap_windows: ['Mon-Fri 22:00-04:00', '25:00-26:00']"
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, bad))
    assert "rings.fleet.swap_windows: swap window '25:00-26:00': 25:00 is not a time of day" in str(
        info.value
    )
    good = CONFIG_TEXT.replace("    swap_windows: []", "    swap_windows: ['Mon-Fri 22:00-04:00']")
    assert load_config(write(tmp_path, good)).rings["fleet"].swap_windows == ["Mon-Fri 22:00-04:00"]


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


# --- training config deltas: `base:` and `--set` ------------------------------------------------------------

CONFIGS = REPO / "training" / "configs"
DEFAULT_TEXT = (CONFIGS / "default.yaml").read_text()


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(text))


@pytest.mark.parametrize(
    ("name", "changes"),
    [("demo.yaml", {"epochs": 80, "batch_size": 128, "early_stop_patience": 8}),
     ("gpu.yaml", {"epochs": 50, "batch_size": 1024, "lr": 0.006})],
)  # fmt: skip
def test_the_shipped_deltas_are_default_yaml_plus_their_keys(name: str, changes: dict[str, object]) -> None:
    """demo.yaml and gpu.yaml say `base: default.yaml` and only what differs (values as before the split)."""
    assert (CONFIGS / name).read_text().count("\nbase: default.yaml\n") == 1
    default = load_training_config(CONFIGS / "default.yaml").model_dump()
    assert load_training_config(CONFIGS / name).model_dump() == {**default, **changes}


def test_a_base_chain_equals_the_full_file_it_replaces(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "full.yaml").write_text(DEFAULT_TEXT)
    (tmp_path / "mid.yaml").write_text("base: full.yaml\nepochs: 7\nconv_channels: [8, 16]\n")
    leaf = tmp_path / "sub" / "leaf.yaml"
    leaf.write_text("# relative to this file\nbase: ../mid.yaml\nlr: 0.001\nepochs: 9\n")
    # the same config written out in full, as configs were before `base:`
    flat = tmp_path / "flat.yaml"
    flat.write_text(DEFAULT_TEXT.replace("epochs: 30 ", "epochs: 9 ").replace("lr: 0.003 ", "lr: 0.001 ")
                    .replace("conv_channels: [16, 32, 32]", "conv_channels: [8, 16]"))  # fmt: skip
    assert flat.read_text() != DEFAULT_TEXT
    assert load_training_config(leaf) == load_training_config(flat)
    assert load_training_config(leaf).epochs == 9  # the nearer file wins
    absolute = tmp_path / "abs.yaml"
    absolute.write_text(f"base: {CONFIGS / 'demo.yaml'}\n")
    assert load_training_config(absolute) == load_training_config(CONFIGS / "demo.yaml")


def test_errors_point_at_the_file_and_line_the_value_came_from(tmp_path: Path) -> None:
    base, delta = tmp_path / "base.yaml", tmp_path / "delta.yaml"
    base.write_text(DEFAULT_TEXT.replace("hidden: 64 ", "hidden: wide "))
    delta.write_text("base: base.yaml\n\nepochs: 3.5\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_training_config(delta)
    message = str(info.value)
    assert message.startswith(f"{delta}: 3 problems:")
    assert f"{base}:{line_of(base, 'hidden:')}: hidden: input should be a valid integer" in message
    assert f"{delta}:3: epochs: input should be a valid integer" in message
    assert f"{delta}:4: learning_rate: unknown key" in message
    # a key the delta replaces is not checked in its base's form
    delta.write_text("base: base.yaml\nhidden: 32\n")
    assert load_training_config(delta).hidden == 32


def test_an_override_changes_a_value_and_is_read_as_yaml() -> None:
    default = load_training_config()
    cfg = load_training_config(
        overrides=["epochs=5", "lr=3e-4", "conv_channels=[16,32]", "bf16=false", "device=cpu", "epochs=6"]
    )
    assert (cfg.epochs, cfg.lr, cfg.conv_channels, cfg.bf16, cfg.device) == (6, 3e-4, [16, 32], False, "cpu")
    assert cfg.model_dump() == {**default.model_dump(), "epochs": 6, "lr": 3e-4, "conv_channels": [16, 32],
                                "bf16": False, "device": "cpu"}  # fmt: skip
    demo = load_training_config(CONFIGS / "demo.yaml", overrides=["epochs=2"])
    assert (demo.epochs, demo.batch_size) == (2, 128)  # over the file's effective config, base included
    assert parse_override(" seed = 7") == ("seed", 7)
    assert parse_override("labels=[a, b]") == ("labels", ["a", "b"])
    assert parse_override("note=a=b") == ("note", "a=b")  # the first '=' splits
    mapping = {"epochs": 30, "lr": 0.003}
    assert apply_overrides(mapping, ["epochs=5", "hidden=8"]) == {"epochs": 5, "lr": 0.003, "hidden": 8}
    assert mapping == {"epochs": 30, "lr": 0.003}  # pure


def test_an_unknown_override_key_names_it_and_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError) as info:
        load_training_config(overrides=["epochs=5", "batchsize=64"])
    message = str(info.value)
    assert message.startswith("--set batchsize=64: batchsize: unknown key (did you mean 'batch_size'?)")
    assert "allowed keys here: channels, window" in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [("epochs=five", "--set epochs=five: epochs: input should be a valid integer (got str 'five')"),
     ("epochs=0", "--set epochs=0: epochs: input should be greater than or equal to 1"),
     ("compile=yes", "--set compile=yes: compile: input should be a valid boolean"),
     ("seed=\"7\"", "--set seed=\"7\": seed: input should be a valid integer (got str '7')"),
     ("conv_channels=[16, x]", "--set conv_channels=[16, x]: conv_channels[1]: input should be a valid int"),
     ("device=gpu", "--set device=gpu: device: input should be 'auto', 'cpu' or 'cuda'")],
)  # fmt: skip
def test_a_wrongly_typed_override_names_the_key(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_training_config(overrides=[override])
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(
    ("override", "expected"),
    [("epochs", "--set epochs: expected KEY=VALUE"),
     ("=5", "--set =5: the key before '=' is empty"),
     ("base=other.yaml", "--set base=other.yaml: `base` is read from a config file only"),
     ("conv_channels=[16,", "--set conv_channels=[16,: the value is not valid YAML")],
)  # fmt: skip
def test_a_malformed_override_is_a_config_error_naming_it(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_override(override)
    assert str(info.value).startswith(expected)
    with pytest.raises(ConfigError, match="^" + re.escape(expected)):
        load_training_config(overrides=[override])


def test_a_cycle_or_a_missing_base_fails_clearly(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text("base: b.yaml\nepochs: 1\n")
    b.write_text("base: c.yaml\n")
    c.write_text("epochs: 2\nbase: a.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_training_config(a)
    ra, rb, rc = a.resolve(), b.resolve(), c.resolve()  # the chain is shown resolved
    assert str(info.value) == f"{c}:2: base: a.yaml makes a cycle: {ra} -> {rb} -> {rc} -> {ra}"
    a.write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="makes a cycle"):
        load_training_config(a)
    a.write_text("epochs: 1\nbase: nope.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_training_config(a)
    assert str(info.value) == f"{a}:2: base: {tmp_path / 'nope.yaml'}: no such config file"
    a.write_text("base: [default.yaml]\n")
    with pytest.raises(ConfigError) as info:
        load_training_config(a)
    assert str(info.value).startswith(f"{a}:1: base: expected the path of a config file")


def test_the_data_interface_is_written_once_in_training_configs() -> None:
    """default.yaml holds the data interface and the vocabularies; the other configs inherit them."""
    keys = ("channels", "window", "sample_rate_hz", "labels", "product_vocab", "recipe_vocab", "asset_vocab")
    for key in keys:
        holders = sorted(p.name for p in CONFIGS.glob("*.yaml") if re.search(rf"(?m)^{key}:", p.read_text()))
        assert holders == ["default.yaml"], key
    others = [p for p in CONFIGS.glob("*.yaml") if p.name != "default.yaml"]
    assert len(others) >= 2 and all(re.search(r"(?m)^base: default\.yaml$", p.read_text()) for p in others)
