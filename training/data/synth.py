"""Deterministic synthetic LDO v1 records, for demos, tests and CI when no real fleet data is at hand.

    edgeops data synth --n 2000 --seed 0 --out data/ldos

writes ``data/ldos/<ldo_id>.json``, one LDO v1 document per file (bytes from :func:`training.data.ldo.dumps`),
exactly what the runtime backend's data ingestion stores. From Python::

    from training.data.synth import generate, write_dataset
    summary = write_dataset(Path("data/ldos"), n=2000, seed=0, spec=load_training_config().data_spec())

The data model is a small rotating-machine plant: 80 products, 40 recipes and 150 assets. Each recipe sets
the shaft speed and how hot it runs, each product sets the temperature and motor-current baselines, and each
asset has a fixed, seed-derived proneness to every failure mode. Labels are drawn independently per record,
and every failure mode present leaves a clear, distinct signature in the window (see ``_signals``), so a
model that sees the window and the context can learn all five modes. About 2% of records carry ids outside
those ranges, so the "unknown id" slot of the embeddings is exercised downstream.

Determinism: record ``i`` depends only on ``(seed, i, spec, start)`` (its own random stream,
``default_rng([seed, 1, i])``), so the same arguments give byte-identical files and the first ``k`` records
of ``n`` are the first ``k`` of any larger ``n``. The plant itself comes from a separate stream of the seed:
``first=k`` continues the same plant's record stream where an earlier call of ``k`` records stopped (the
next month of the same fleet), while another seed is another plant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from tools.core.fsutil import write_atomic
from training.config import DataSpec
from training.data import plants
from training.data.ldo import SCHEMA, dumps

__all__ = ["KNOWN_CHANNELS", "KNOWN_LABELS", "PLANTS", "SynthSummary", "generate", "write_dataset"]

PLANTS = plants.PLANTS  # the family: `default` is this module's physics, the others training/data/plants.py

# The physical signals and failure modes this generator models. A spec may list a subset of them in any
# order (records follow the spec's order); a name outside these has no physics behind it.
KNOWN_CHANNELS = ("vibration_x", "vibration_y", "temperature", "motor_current")
KNOWN_LABELS = ("bearing_wear", "misalignment", "overheating", "electrical_fault", "lubrication_loss")

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
SPACING_S, JITTER_S = 37, 30  # records every 37 s plus 0-29 s of jitter: timestamps strictly increase
N_DEVICES = 60  # edge-001 .. edge-060; each edge device watches a fixed set of assets
VALIDATED_RATE = 0.97  # the rest stand for records a person has not reviewed yet
PROGRESS_EVERY = 500

# Known id ranges (they fit the default embedding vocabularies, index 0 being "unknown") and the ranges
# the ~2% of "unknown context" records draw from instead.
N_PRODUCTS, N_RECIPES, N_ASSETS = 80, 40, 150
UNKNOWN_PRODUCTS, UNKNOWN_RECIPES, UNKNOWN_ASSETS = (90, 120), (45, 60), (160, 260)
UNKNOWN_CONTEXT_RATE = 0.02

# Base probability of each mode (KNOWN_LABELS order) before the plant's proneness multipliers. Chosen so
# that, averaged over the plant, each mode is present in ~12-14% of records and ~50% are all-healthy.
BASE_RATE = np.array([0.09, 0.09, 0.08, 0.08, 0.115])
MAX_RATE = 0.9
SEVERITY = (0.6, 1.4)  # every signature is scaled by uniform(0.6, 1.4): weakest still far above the noise

# Frequencies are designed for 100 Hz recordings (shaft 8-16 Hz, bearing resonance 36-44 Hz, electrical
# ripple 28-32 Hz). A slower recorder sees a proportionally slower plant so that nothing aliases past
# Nyquist and the signatures keep their relative places in the spectrum.
DESIGN_RATE_HZ = 100.0

# Separate random streams of one seed: the plant, and one stream per record (tags, not [seed] vs
# [seed, 0]: SeedSequence pads with zeros, so those two would be the same stream).
_RECORD_STREAM, _PLANT_STREAM = 1, 2


@dataclass(frozen=True)
class SynthSummary:
    n: int
    out_dir: Path
    label_counts: dict[str, int]  # records with each failure mode, in the spec's label order
    healthy: int  # records with no failure mode at all


@dataclass(frozen=True)
class _Plant:
    """Latent, seed-derived properties, indexed by id; tables reach into the unknown ranges too."""

    # per product
    temp_base: np.ndarray  # degC
    current_base: np.ndarray  # A
    electrical_prone: np.ndarray  # multiplier: some products load the drive harder
    # per recipe
    shaft_hz: np.ndarray
    hot_prone: np.ndarray  # multiplier: some recipes run hot
    # per asset
    bearing_prone: np.ndarray
    misalign_prone: np.ndarray
    drive_prone: np.ndarray
    lube_prone: np.ndarray
    vib_amp: np.ndarray  # shaft vibration amplitude, mm/s
    vib_noise: np.ndarray  # healthy sensor + structure noise, mm/s
    resonance_hz: np.ndarray  # where bearing defects ring


def _plant(seed: int) -> _Plant:
    rng = np.random.default_rng([seed, _PLANT_STREAM])
    n_prod, n_rec, n_asset = UNKNOWN_PRODUCTS[1] + 1, UNKNOWN_RECIPES[1] + 1, UNKNOWN_ASSETS[1] + 1

    def prone(size: int, share: float, factor: float) -> np.ndarray:
        # A minority of units is several times more prone than the rest: what an asset embedding can learn.
        return np.where(rng.random(size) < share, factor, 1.0)

    return _Plant(
        temp_base=rng.uniform(40.0, 70.0, n_prod),
        current_base=rng.uniform(5.0, 15.0, n_prod),
        electrical_prone=rng.uniform(0.7, 1.5, n_prod),
        shaft_hz=rng.uniform(8.0, 16.0, n_rec),
        hot_prone=prone(n_rec, 0.25, 3.5),
        bearing_prone=prone(n_asset, 0.20, 3.5),
        misalign_prone=prone(n_asset, 0.25, 3.0),
        drive_prone=prone(n_asset, 0.15, 4.0),
        lube_prone=rng.lognormal(0.0, 0.5, n_asset),
        vib_amp=rng.uniform(0.8, 1.2, n_asset),
        vib_noise=rng.uniform(0.04, 0.06, n_asset),
        resonance_hz=rng.uniform(36.0, 44.0, n_asset),
    )


def _context(rng: np.random.Generator) -> tuple[int, int, int]:
    product = int(rng.integers(1, N_PRODUCTS + 1))
    recipe = int(rng.integers(1, N_RECIPES + 1))
    asset = int(rng.integers(1, N_ASSETS + 1))
    unknown = rng.random() < UNKNOWN_CONTEXT_RATE
    which = int(rng.integers(1, 8))  # bit mask: which of the three ids is out of range (at least one)
    if unknown:
        if which & 1:
            product = int(rng.integers(UNKNOWN_PRODUCTS[0], UNKNOWN_PRODUCTS[1] + 1))
        if which & 2:
            recipe = int(rng.integers(UNKNOWN_RECIPES[0], UNKNOWN_RECIPES[1] + 1))
        if which & 4:
            asset = int(rng.integers(UNKNOWN_ASSETS[0], UNKNOWN_ASSETS[1] + 1))
    return product, recipe, asset


def _mode_rates(plant: _Plant, product: int, recipe: int, asset: int) -> np.ndarray:
    multipliers = np.array(
        [
            plant.bearing_prone[asset],
            plant.misalign_prone[asset],
            plant.hot_prone[recipe],
            plant.drive_prone[asset] * plant.electrical_prone[product],
            plant.lube_prone[asset],
        ]
    )
    rates: np.ndarray = np.minimum(BASE_RATE * multipliers, MAX_RATE)
    return rates


def _signals(
    rng: np.random.Generator,
    plant: _Plant,
    context: tuple[int, int, int],
    faults: np.ndarray,
    *,
    window: int,
    rate_hz: float,
) -> dict[str, np.ndarray]:
    """One window of the four physical channels; ``faults`` is the severity per mode (0 = absent).

    Random numbers are drawn in the same amounts whatever the labels, so the healthy part of a record
    does not shift when a fault is added.
    """
    product, recipe, asset = context
    bearing, misalign, overheat, electrical, lube = faults
    scale = min(1.0, rate_hz / DESIGN_RATE_HZ)
    t = np.arange(window) / rate_hz
    span = window / rate_hz
    tau = 2 * np.pi

    # Shaft vibration: the rotation line at f0 (a few % speed variation between records), a faint
    # 2x harmonic, and a circular orbit (y lags x by 90 degrees with equal amplitude) when healthy.
    f0 = plant.shaft_hz[recipe] * scale * (1 + rng.normal(0, 0.01))
    amp = plant.vib_amp[asset] * (1 + rng.normal(0, 0.05))
    phase, phase2 = rng.uniform(0, tau, 2)
    ratio = 1 + rng.normal(0, 0.03)
    # Misalignment: a strong 2x harmonic, and an elliptical, skewed orbit (x grows, y shrinks, y no
    # longer lags by exactly 90 degrees).
    h2 = amp * (0.08 + 0.6 * misalign)
    amp_x = amp * (1 + 0.3 * misalign)
    amp_y = amp * ratio * (1 - 0.25 * misalign)
    skew = 0.6 * misalign
    x = amp_x * np.sin(tau * f0 * t + phase) + h2 * np.sin(tau * 2 * f0 * t + phase2)
    y = amp_y * np.sin(tau * f0 * t + phase - np.pi / 2 + skew) + h2 * np.sin(
        tau * 2 * f0 * t + phase2 - skew
    )

    # Lubrication loss: friction raises broadband vibration noise on both axes.
    noise = plant.vib_noise[asset] + 0.2 * lube * amp
    x += rng.normal(0, noise, window)
    y += rng.normal(0, noise, window)

    # Bearing wear: the structure rings at the asset's resonance (36-44 Hz): a steady tone plus sparse
    # defect impacts that decay within a few samples, on both axes.
    f_res = plant.resonance_hz[asset] * scale
    res_phase = rng.uniform(0, tau, 2)
    impacts = np.zeros(window)
    starts = rng.integers(0, window, 4)
    heights = rng.uniform(0.6, 1.0, 4)
    for k in range(int(rng.integers(2, 5))):
        lag = t[starts[k] :] - t[starts[k]]
        impacts[starts[k] :] += heights[k] * np.exp(-lag / 0.03) * np.sin(tau * f_res * lag)
    x += bearing * (0.35 * np.sin(tau * f_res * t + res_phase[0]) + impacts)
    y += bearing * (0.30 * np.sin(tau * f_res * t + res_phase[1]) + 0.8 * impacts)

    # Temperature: the product's baseline, a per-record ambient offset and sensor noise. Overheating is a
    # rise across the window, centred so the mean stays put; lubrication loss is an offset with no trend.
    # Each mode thus owns one property (slope vs level) and they never mask each other.
    temperature = (
        plant.temp_base[product]
        + rng.normal(0, 0.5)
        + rng.normal(0, 0.05, window)
        + overheat * 6.0 * (t / span - 0.5)
        + lube * 6.0
    )

    # Motor current: the product's load, a small shaft-synchronous ripple and noise. An electrical fault
    # adds a fast ripple (28-32 Hz at 100 Hz) and a few spikes / dropouts, 1-3 samples each.
    base = plant.current_base[product]
    current = (
        base * (1 + rng.normal(0, 0.02))
        + 0.1 * np.sin(tau * f0 * t + phase)
        + rng.normal(0, 0.05, window)
        + electrical * 0.06 * base * np.sin(tau * rng.uniform(28.0, 32.0) * scale * t + rng.uniform(0, tau))
    )
    events = np.zeros(window)
    positions = rng.integers(0, window, 5)
    widths = rng.integers(1, 4, 5)
    signs = rng.choice([-1.0, 1.0], 5)
    for k in range(int(rng.integers(2, 6))):
        events[positions[k] : positions[k] + widths[k]] = signs[k] * 0.3 * base
    current += electrical * events

    return {"vibration_x": x, "vibration_y": y, "temperature": temperature, "motor_current": current}


def _record(
    i: int, seed: int, spec: DataSpec, plant: _Plant, start: datetime, *,
    other: tuple[str, plants.Baselines] | None,
) -> dict[str, Any]:  # fmt: skip
    rng = np.random.default_rng([seed, _RECORD_STREAM, i])
    product, recipe, asset = _context(rng)
    present = rng.random(len(KNOWN_LABELS)) < _mode_rates(plant, product, recipe, asset)
    # A mode the spec does not list is not simulated: it would be an unlabelled fault in the window.
    listed = np.array([name in spec.labels for name in KNOWN_LABELS])
    present &= listed
    severity = rng.uniform(*(SEVERITY if other is None else plants.SEVERITY_WIDE), len(KNOWN_LABELS))
    faults = present * severity
    if other is None:
        signals = _signals(
            rng, plant, (product, recipe, asset), faults, window=spec.window, rate_hz=spec.sample_rate_hz
        )
    else:
        signals = plants.signals(
            other[0], rng, other[1], (product, recipe, asset), faults, shaft_hz=float(plant.shaft_hz[recipe]),
            vib_amp=float(plant.vib_amp[asset]), vib_noise=float(plant.vib_noise[asset]), window=spec.window,
            rate_hz=spec.sample_rate_hz, scale=min(1.0, spec.sample_rate_hz / DESIGN_RATE_HZ),
        )  # fmt: skip
    created = start + timedelta(seconds=SPACING_S * i + int(rng.integers(0, JITTER_S)))
    validated = bool(rng.random() < VALIDATED_RATE)
    if other is not None:  # a person's labelling mistakes: 1% of records have one mode's label flipped
        wrong, which = rng.random() < plants.LABEL_NOISE, int(rng.integers(0, len(KNOWN_LABELS)))
        if wrong and listed[which]:
            present[which] = not present[which]

    # 5 decimals keep a file at ~5 KB; np.round divides an exact integer by 1e5, so each value prints as
    # its short decimal form (the same float Python's round() gives).
    values = np.round(np.stack([signals[name] for name in spec.channels]), 5)
    labels = dict(zip(KNOWN_LABELS, present.tolist(), strict=True))
    return {
        "schema": SCHEMA,
        "ldo_id": f"ldo-{seed}-{i:07d}" if other is None else f"ldo-{other[0]}-{seed}-{i:07d}",
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device_id": f"edge-{asset % N_DEVICES + 1:03d}",
        "context": {"product_id": product, "recipe_id": recipe, "asset_id": asset},
        "sensors": {
            "sample_rate_hz": float(spec.sample_rate_hz),
            "channels": list(spec.channels),
            "values": values.tolist(),
        },
        "labels": {name: int(labels[name]) for name in spec.labels},
        "validated": validated,
    }


def _check(n: int, seed: int, spec: DataSpec) -> None:
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    for kind, names, known in (
        ("channels", spec.channels, KNOWN_CHANNELS),
        ("labels", spec.labels, KNOWN_LABELS),
    ):
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(
                f"the synthetic generator cannot produce {kind} {unknown}: it models the physical "
                f"signals and failure modes {list(known)} only"
            )
    if spec.window < 1 or not spec.sample_rate_hz > 0:
        raise ValueError(
            f"window and sample rate must be positive, got {spec.window} at {spec.sample_rate_hz} Hz"
        )


def generate(
    n: int, seed: int, spec: DataSpec, *, start: datetime | None = None, first: int = 0,
    plant: str = "default",
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Yield records ``first`` .. ``first + n - 1`` as LDO v1 documents (plain dicts) for ``spec``, from
    ``plant`` (one of :data:`PLANTS`: other physics for the same modes, training/data/plants.py).

    The arguments are checked right away.
    """
    _check(n, seed, spec)
    if plant not in PLANTS:
        raise ValueError(f"unknown plant {plant!r}: one of {', '.join(PLANTS)}")
    if first < 0:
        raise ValueError(f"first must be non-negative, got {first}")
    if start is None:
        start = DEFAULT_START
    # created_at is always written in UTC with a 'Z'; a naive start is taken to be UTC already.
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    tables = _plant(seed)
    sizes = (len(tables.temp_base), len(tables.shaft_hz), len(tables.vib_amp))
    other = None if plant == "default" else (plant, plants.baselines(plant, seed, sizes))
    return (_record(i, seed, spec, tables, start, other=other) for i in range(first, first + n))


def write_dataset(
    out_dir: Path,
    n: int,
    seed: int,
    spec: DataSpec,
    *,
    first: int = 0,
    progress: Callable[[int], None] | None = None,
    plant: str = "default",
) -> SynthSummary:
    """Write ``n`` records as ``out_dir/<ldo_id>.json`` (created if missing) and count their labels.

    Each file appears whole or not at all (:func:`~tools.core.fsutil.write_atomic`), so a
    reader listing the directory mid-run, or after a crash, never sees half a record. No fsync per file:
    a lost file after a power cut is simply regenerated, and 100,000 fsyncs would dominate the run time.
    Files already in ``out_dir`` with other names are left alone.
    """
    out_dir = Path(out_dir)
    # generate() checks the arguments before anything touches the disk
    records = generate(n, seed, spec, first=first, plant=plant)
    out_dir.mkdir(parents=True, exist_ok=True)
    label_counts = dict.fromkeys(spec.labels, 0)
    healthy = 0
    written = 0
    for doc in records:
        write_atomic(out_dir / f"{doc['ldo_id']}.json", dumps(doc), durable=False)
        for name, value in doc["labels"].items():
            label_counts[name] += value
        healthy += not any(doc["labels"].values())
        written += 1
        if progress is not None and written % PROGRESS_EVERY == 0:
            progress(written)
    if progress is not None and (written % PROGRESS_EVERY != 0 or written == 0):
        progress(written)  # the final count, unless the loop just reported it
    return SynthSummary(n=written, out_dir=out_dir, label_counts=label_counts, healthy=healthy)
