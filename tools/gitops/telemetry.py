"""Ring telemetry: what a model release does on the nodes, read from the runtime backend's PostgreSQL.

``edgeops promote`` checks the pilot ring's telemetry against ``gates.telemetry`` of ``edgeops.yaml``
before it copies a release to the next ring; ``edgeops guard`` checks a ring already running a release and
opens a rollback PR when it breaches them. Both read the same numbers with :func:`read_ring_telemetry`
and judge them with :func:`check_gates`.

The runtime backend owns two tables (:data:`TELEMETRY_DDL` of tools/core/schema.py, applied by
``edgeops db migrate --telemetry``, creates them where it does not, and for the tests and the demo;
production has the backend's own):

``edge_devices`` -- the device registry, one row per node::

    device_id      text PRIMARY KEY
    ring           text NOT NULL           which ring the node belongs to (pilot, fleet, ...)
    registered_at  timestamptz NOT NULL    default now()

  The nodes of a ring are the denominator of the reporting fraction.

``predictions`` -- one row per inference a node ran::

    id               bigserial PRIMARY KEY
    device_id        text NOT NULL
    model_version    text NOT NULL          the release the node ran
    predicted_at     timestamptz NOT NULL
    latency_ms       real                   inference latency on the node (NULL if not measured)
    predicted        text[] NOT NULL        failure modes the model flagged; '{}' = healthy
    validated_label  text[] NULL            failure modes an operator confirmed; '{}' = confirmed healthy,
                                            NULL = not validated (yet)
    error            text NULL              non-NULL: inference failed on the node (predicted is '{}')

  indexed on ``(model_version, predicted_at)``: every read is one release over one time window.

A ring's telemetry for a release covers the predictions of that ``model_version`` with
``since <= predicted_at < until`` made by the ring's own nodes (``edge_devices``): once pilot and fleet
run the same version, each ring is judged on its nodes alone, and unregistered nodes count nowhere.
During a rollout in waves (DESIGN.md, "Rings and waves") a wave is judged on its own nodes: ``members``
narrows the ring to the given device ids (:func:`wave_members` picks them by the same hash the nodes use).
All of it is aggregated in SQL (one query, FILTER clauses and ``percentile_cont``); no prediction row is
pulled into Python. The definitions:

* ``ring_nodes``: devices registered in the ring (and among ``members``, when given);
  ``reporting_nodes``: those of them with predictions of the release in the window;
  ``reporting_fraction`` = reporting / ring nodes.
* ``reporting_any``: those of them with predictions of *any* version in the window. A node that reports
  but not the release is stuck on another model: ``on_target_fraction`` = reporting_nodes / reporting_any.
* Rows with an ``error`` count in ``predictions`` and ``errors`` only (``error_rate`` = errors /
  predictions); every other number is over the rows without an error.
* ``validated``: predictions with a ``validated_label``. ``accuracy``: the share of them whose predicted
  set equals the validated set (order and duplicates do not matter).
* ``fp_rate``: among validated-healthy predictions (``validated_label = '{}'``), the share that flagged a
  mode; ``fn_rate``: among validated-failing ones, the share that flagged none -- the definitions of
  ``training.metrics.evaluate``. Here they are None, not 0.0, when there is nothing to divide by.
* ``p95_latency_ms``: ``percentile_cont(0.95)`` over ``latency_ms`` (linear interpolation, like
  ``numpy.percentile(..., method="linear")``); NULL latencies are ignored.

Functions that take an open psycopg2 connection never commit: the caller owns the transaction (open one
with :func:`tools.core.pg.connect`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from tools.artifacts.release import in_wave
from tools.core.config import TelemetryGates
from tools.core.errors import ServiceError
from tools.core.schema import TELEMETRY_DDL

__all__ = [
    "TELEMETRY_DDL",
    "GateResult",
    "PredictionRow",
    "RingTelemetry",
    "check_gates",
    "check_on_target",
    "ensure_schema",
    "insert_predictions",
    "passed",
    "read_ring_telemetry",
    "register_devices",
    "render_gate_table",
    "ring_devices",
    "telemetry_from_rows",
    "wave_members",
]

Connection = psycopg2.extensions.connection


_TABLES = ("predictions", "edge_devices")

# One row, whatever the window holds: the aggregates over an empty window are 0 counts and a NULL p95.
# `members` NULL: the whole ring. reporting_any asks, per node, whether it reported anything in the window
# (an EXISTS on the (device_id, predicted_at) index stops at the first row).
_TELEMETRY_SQL = """\
WITH nodes AS (
    SELECT device_id FROM edge_devices
    WHERE ring = %(ring)s AND (%(members)s::text[] IS NULL OR device_id = ANY(%(members)s::text[]))
), w AS (
    SELECT p.device_id, p.latency_ms, p.predicted, p.validated_label, p.error IS NOT NULL AS failed
    FROM predictions p JOIN nodes d ON d.device_id = p.device_id
    WHERE p.model_version = %(version)s AND p.predicted_at >= %(since)s AND p.predicted_at < %(until)s
)
SELECT
    (SELECT count(*) FROM nodes) AS ring_nodes,
    (SELECT count(DISTINCT device_id) FROM w) AS reporting_nodes,
    (SELECT count(*) FROM nodes d WHERE EXISTS (
        SELECT 1 FROM predictions p
        WHERE p.device_id = d.device_id AND p.predicted_at >= %(since)s AND p.predicted_at < %(until)s
    )) AS reporting_any,
    count(*) AS predictions,
    count(*) FILTER (WHERE failed) AS errors,
    count(*) FILTER (WHERE NOT failed AND validated_label IS NOT NULL) AS validated,
    count(*) FILTER (WHERE NOT failed AND predicted @> validated_label AND predicted <@ validated_label)
        AS correct,
    count(*) FILTER (WHERE NOT failed AND cardinality(validated_label) = 0) AS validated_healthy,
    count(*) FILTER (WHERE NOT failed AND cardinality(validated_label) = 0 AND cardinality(predicted) > 0)
        AS false_positives,
    count(*) FILTER (WHERE NOT failed AND cardinality(validated_label) > 0) AS validated_failing,
    count(*) FILTER (WHERE NOT failed AND cardinality(validated_label) > 0 AND cardinality(predicted) = 0)
        AS false_negatives,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE NOT failed) AS p95_latency_ms
FROM w
"""


# --- schema and writers (tests, the demo) ---------------------------------------------------------------


def ensure_schema(conn: Connection) -> None:
    """Create the tables and indexes of :data:`TELEMETRY_DDL` where missing (does not commit)."""
    with conn.cursor() as cur:
        cur.execute(TELEMETRY_DDL)


@dataclass(frozen=True)
class PredictionRow:
    """One row of ``predictions`` (the ``id`` is the database's)."""

    device_id: str
    model_version: str
    predicted_at: datetime
    predicted: Sequence[str] = ()
    validated_label: Sequence[str] | None = None
    latency_ms: float | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        _aware("predicted_at", self.predicted_at)
        if self.error is not None and self.predicted:
            raise ValueError(
                f"prediction of {self.device_id} at {self.predicted_at.isoformat()} has an error, so its "
                f"predicted set must be empty, got {list(self.predicted)}"
            )


def insert_predictions(conn: Connection, rows: Iterable[PredictionRow], *, page_size: int = 1000) -> int:
    """Insert ``rows`` into ``predictions`` in batches (``execute_values``); returns how many. No commit."""
    values = [
        (
            r.device_id,
            r.model_version,
            r.predicted_at,
            r.latency_ms,
            list(r.predicted),
            None if r.validated_label is None else list(r.validated_label),
            r.error,
        )
        for r in rows
    ]
    if not values:
        return 0
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO predictions"
            " (device_id, model_version, predicted_at, latency_ms, predicted, validated_label, error)"
            " VALUES %s",
            values,
            template="(%s, %s, %s, %s, %s::text[], %s::text[], %s)",
            page_size=page_size,
        )
    return len(values)


def register_devices(conn: Connection, devices: Mapping[str, str]) -> int:
    """Register ``{device_id: ring}`` in ``edge_devices``; a known device moves to that ring. No commit."""
    values = sorted(devices.items())
    if not values:
        return 0
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO edge_devices (device_id, ring) VALUES %s"
            " ON CONFLICT (device_id) DO UPDATE SET ring = EXCLUDED.ring",
            values,
            page_size=1000,
        )
    return len(values)


# --- reading ------------------------------------------------------------------------------------------


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class RingTelemetry:
    """What one release did on one ring over ``[since, until)``; see the module docstring.

    The rates are None when there is nothing to divide by. The counts after ``p95_latency_ms`` (the
    numerators and denominators of the rates) are filled by :func:`read_ring_telemetry`; they only
    make gate details more telling and may be left None when a RingTelemetry is built by hand.
    ``reporting_any`` too: both readers fill it; None (built by hand) is "unknown", and the stuck-install
    gate then has no evidence.
    """

    ring: str
    version: str
    since: datetime
    until: datetime
    ring_nodes: int
    reporting_nodes: int
    predictions: int
    validated: int
    accuracy: float | None
    fp_rate: float | None
    fn_rate: float | None
    errors: int
    error_rate: float | None
    p95_latency_ms: float | None
    correct: int | None = field(default=None, kw_only=True)
    validated_healthy: int | None = field(default=None, kw_only=True)
    false_positives: int | None = field(default=None, kw_only=True)
    validated_failing: int | None = field(default=None, kw_only=True)
    false_negatives: int | None = field(default=None, kw_only=True)
    reporting_any: int | None = field(default=None, kw_only=True)

    @property
    def reporting_fraction(self) -> float | None:
        return _ratio(self.reporting_nodes, self.ring_nodes)

    @property
    def on_target_fraction(self) -> float | None:
        """Of the nodes that reported anything, the share that reported this release."""
        return None if self.reporting_any is None else _ratio(self.reporting_nodes, self.reporting_any)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ring": self.ring,
            "version": self.version,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "ring_nodes": self.ring_nodes,
            "reporting_nodes": self.reporting_nodes,
            "reporting_fraction": self.reporting_fraction,
            "reporting_any": self.reporting_any,
            "on_target_fraction": self.on_target_fraction,
            "predictions": self.predictions,
            "validated": self.validated,
            "accuracy": self.accuracy,
            "fp_rate": self.fp_rate,
            "fn_rate": self.fn_rate,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p95_latency_ms": self.p95_latency_ms,
            "correct": self.correct,
            "validated_healthy": self.validated_healthy,
            "false_positives": self.false_positives,
            "validated_failing": self.validated_failing,
            "false_negatives": self.false_negatives,
        }


def _aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(UTC)), got {value.isoformat()}")


def _pg_reason(exc: psycopg2.Error) -> str:
    lines = (exc.pgerror or str(exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _missing_tables(cur: psycopg2.extensions.cursor) -> list[str]:
    cur.execute("SELECT " + ", ".join(f"to_regclass('{t}') IS NULL" for t in _TABLES))
    row = cur.fetchone()
    assert row is not None
    return [t for t, missing in zip(_TABLES, row, strict=True) if missing]


def wave_members(devices: Iterable[str], percent: float | None) -> list[str]:
    """The ``devices`` in a wave of ``percent`` (None or 100: all of them), sorted: what a node decides for
    itself with the same hash (:func:`tools.artifacts.release.in_wave`)."""
    if percent is None or percent >= 100:
        return sorted(set(devices))
    return sorted({d for d in devices if in_wave(d, percent)})


def ring_devices(conn: Connection, ring: str) -> list[str]:
    """The device ids registered in ``ring`` (``edge_devices``), sorted."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT device_id FROM edge_devices WHERE ring = %s ORDER BY device_id", (ring,))
            return [row[0] for row in cur.fetchall()]
    except psycopg2.errors.UndefinedTable:
        raise ServiceError(
            "the runtime backend's device registry edge_devices is missing from this database (its schema "
            "is TELEMETRY_DDL in tools/core/schema.py; `edgeops db migrate --telemetry` creates it where the "
            "backend does not). Point --pg / EDGEOPS_PG_DSN at the backend's database."
        ) from None
    except psycopg2.Error as exc:
        raise ServiceError(f"reading the device registry from PostgreSQL failed: {_pg_reason(exc)}") from None


def read_ring_telemetry(
    conn: Connection, *, ring: str, version: str, since: datetime, until: datetime,
    members: Collection[str] | None = None,
) -> RingTelemetry:  # fmt: skip
    """Telemetry of ``version`` on ``ring`` over ``since <= predicted_at < until`` (timezone-aware).

    ``members``: only these device ids count (a wave's nodes); ``ring_nodes`` is then the number of them
    registered in the ring. None: the whole ring.
    """
    _aware("since", since)
    _aware("until", until)
    if not since < until:
        raise ValueError(f"empty telemetry window: since {since.isoformat()} >= until {until.isoformat()}")
    try:
        with conn.cursor() as cur:
            missing = _missing_tables(cur)
            if missing:
                raise ServiceError(
                    "the runtime backend's telemetry tables are missing from this database: "
                    f"{', '.join(missing)} (expected predictions and edge_devices; their schema is "
                    "TELEMETRY_DDL in tools/core/schema.py; `edgeops db migrate --telemetry` creates them "
                    "where the backend does not). Point --pg / EDGEOPS_PG_DSN at the backend's database."
                )
            params = {
                "ring": ring, "version": version, "since": since, "until": until,
                "members": None if members is None else sorted(set(members)),
            }  # fmt: skip
            cur.execute(_TELEMETRY_SQL, params)
            row = cur.fetchone()
    except (
        psycopg2.errors.UndefinedColumn,
        psycopg2.errors.UndefinedFunction,
        psycopg2.errors.DatatypeMismatch,
    ) as exc:
        raise ServiceError(
            "the runtime backend's predictions/edge_devices tables do not have the columns telemetry "
            f"needs (see TELEMETRY_DDL in tools/core/schema.py): {_pg_reason(exc)}"
        ) from None
    except psycopg2.Error as exc:
        raise ServiceError(f"reading telemetry from PostgreSQL failed: {_pg_reason(exc)}") from None
    assert row is not None  # an aggregate without GROUP BY always returns one row
    ring_nodes, reporting, reporting_any, predictions, errors, validated = row[:6]
    correct, healthy, fps, failing, fns, p95 = row[6:]
    return RingTelemetry(
        ring=ring,
        version=version,
        since=since,
        until=until,
        ring_nodes=ring_nodes,
        reporting_nodes=reporting,
        predictions=predictions,
        validated=validated,
        accuracy=_ratio(correct, validated),
        fp_rate=_ratio(fps, healthy),
        fn_rate=_ratio(fns, failing),
        errors=errors,
        error_rate=_ratio(errors, predictions),
        p95_latency_ms=None if p95 is None else float(p95),
        correct=correct,
        validated_healthy=healthy,
        false_positives=fps,
        validated_failing=failing,
        false_negatives=fns,
        reporting_any=reporting_any,
    )


def telemetry_from_rows(
    rows: Iterable[PredictionRow], devices: Mapping[str, str], *, ring: str, version: str, since: datetime,
    until: datetime, members: Collection[str] | None = None,
) -> RingTelemetry:  # fmt: skip
    """:func:`read_ring_telemetry`'s numbers computed in Python, for a demo without a PostgreSQL server.

    The same definitions as the SQL (tests/test_telemetry.py checks that both agree on the same rows).
    """
    nodes = {d for d, r in devices.items() if r == ring}
    if members is not None:
        nodes &= set(members)
    seen = [r for r in rows if since <= r.predicted_at < until and r.device_id in nodes]
    window = [r for r in seen if r.model_version == version]
    ok = [r for r in window if r.error is None]
    checked = [r for r in ok if r.validated_label is not None]
    healthy = [r for r in checked if not r.validated_label]
    failing = [r for r in checked if r.validated_label]
    correct = sum(1 for r in checked if set(r.predicted) == set(r.validated_label or ()))
    fps = sum(1 for r in healthy if r.predicted)
    fns = sum(1 for r in failing if not r.predicted)
    latencies = [r.latency_ms for r in ok if r.latency_ms is not None]
    errors = len(window) - len(ok)
    p95 = float(np.percentile(latencies, 95, method="linear")) if latencies else None
    return RingTelemetry(
        ring=ring, version=version, since=since, until=until, ring_nodes=len(nodes),
        reporting_nodes=len({r.device_id for r in window}), predictions=len(window), validated=len(checked),
        accuracy=_ratio(correct, len(checked)), fp_rate=_ratio(fps, len(healthy)),
        fn_rate=_ratio(fns, len(failing)), errors=errors, error_rate=_ratio(errors, len(window)),
        p95_latency_ms=p95, correct=correct, validated_healthy=len(healthy), false_positives=fps,
        validated_failing=len(failing), false_negatives=fns, reporting_any=len({r.device_id for r in seen}),
    )  # fmt: skip


# --- gates --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    name: str
    value: float | int | None
    threshold: float | int
    passed: bool
    detail: str


# Gates whose threshold is a minimum (the rest are maxima); the soak gates are promotion.py's.
_LOWER_BOUND = {
    "reporting_fraction", "validated_predictions", "accuracy", "on_target_fraction", "soak_hours",
    "wave_soak_hours", "source_wave",
}  # fmt: skip


def _pair(value: float, threshold: float, places: int) -> tuple[str, str]:
    """Both numbers with ``places`` decimals, or more where fewer would show different numbers as equal."""
    for p in range(places, 10):
        a, b = f"{value:.{p}f}", f"{threshold:.{p}f}"
        if a != b or value == threshold:
            return a, b
    return repr(value), repr(threshold)


def _judge(
    name: str, value: float, threshold: float, *, minimum: bool, counts: str = "", unit: str = ""
) -> GateResult:
    ok = value >= threshold if minimum else value <= threshold
    op = (">=" if ok else "<") if minimum else ("<=" if ok else ">")
    a, b = _pair(value, threshold, 1 if unit else 3)
    detail = f"{name} {a}{unit} {op} {b}{unit}" + (f" ({counts})" if counts else "")
    return GateResult(name, value, threshold, ok, detail)


def _of(num: int | None, den: int | None, what: str) -> str:
    return f"{num} of {den} {what}" if num is not None and den is not None else ""


def check_gates(
    t: RingTelemetry, gates: TelemetryGates, *, purpose: Literal["promote", "guard"]
) -> list[GateResult]:
    """Judge ``t`` against ``gates``.

    ``promote``: every gate must pass before the release moves on; a metric without data fails.
    ``guard``: a failed gate is a breach, a reason to roll back; missing evidence is not a breach, so the
    label-based gates (accuracy, fp_rate, fn_rate) are judged only from ``min_validated_predictions``
    validated predictions on, error rate and latency only when there are predictions.
    """
    if purpose not in ("promote", "guard"):
        raise ValueError(f"purpose must be 'promote' or 'guard', got {purpose!r}")
    promote = purpose == "promote"
    results: list[GateResult] = []

    def absent(name: str, threshold: float, why: str) -> None:
        if promote:
            results.append(GateResult(name, None, threshold, False, f"{name}: {why}"))
        else:
            results.append(GateResult(name, None, threshold, True, f"not judged: {why}"))

    if promote:
        frac = t.reporting_fraction
        if frac is None:
            absent(
                "reporting_fraction",
                gates.min_reporting_fraction,
                f"no devices registered in ring {t.ring!r} (edge_devices)",
            )
        else:
            counts = f"{t.reporting_nodes} of {t.ring_nodes} {t.ring} nodes reported"
            results.append(
                _judge("reporting_fraction", frac, gates.min_reporting_fraction, minimum=True, counts=counts)
            )
        need = gates.min_validated_predictions
        ok = t.validated >= need
        op = ">=" if ok else "<"
        results.append(
            GateResult(
                "validated_predictions",
                t.validated,
                need,
                ok,
                f"{t.validated} validated predictions {op} {need}",
            )
        )

    labels_judged = promote or t.validated >= gates.min_validated_predictions
    too_few = f"only {t.validated} validated predictions (< {gates.min_validated_predictions})"

    if not labels_judged:
        absent("accuracy", gates.min_accuracy, too_few)
    elif t.accuracy is None:
        absent("accuracy", gates.min_accuracy, "no validated predictions yet")
    else:
        results.append(
            _judge(
                "accuracy",
                t.accuracy,
                gates.min_accuracy,
                minimum=True,
                counts=_of(t.correct, t.validated, "validated predictions right"),
            )
        )

    if not labels_judged:
        absent("fp_rate", gates.max_fp_rate, too_few)
    elif t.fp_rate is None:
        absent("fp_rate", gates.max_fp_rate, "no validated healthy windows yet")
    else:
        counts = _of(t.false_positives, t.validated_healthy, "healthy windows flagged")
        results.append(_judge("fp_rate", t.fp_rate, gates.max_fp_rate, minimum=False, counts=counts))

    if not labels_judged:
        absent("fn_rate", gates.max_fn_rate, too_few)
    elif t.fn_rate is None:
        absent("fn_rate", gates.max_fn_rate, "no validated failing windows yet")
    else:
        counts = _of(t.false_negatives, t.validated_failing, "failing windows missed")
        results.append(_judge("fn_rate", t.fn_rate, gates.max_fn_rate, minimum=False, counts=counts))

    if t.error_rate is None:
        absent("error_rate", gates.max_error_rate, "no predictions" + (" yet" if promote else ""))
    else:
        counts = f"{t.errors} of {t.predictions} predictions failed"
        results.append(_judge("error_rate", t.error_rate, gates.max_error_rate, minimum=False, counts=counts))

    if t.p95_latency_ms is None:
        why = "no predictions" + (" yet" if promote else "") if t.predictions == 0 else "no latency measured"
        absent("p95_latency_ms", gates.max_p95_latency_ms, why)
    else:
        results.append(
            _judge("p95_latency_ms", t.p95_latency_ms, gates.max_p95_latency_ms, minimum=False, unit=" ms")
        )
    return results


def check_on_target(
    t: RingTelemetry, gates: TelemetryGates, *, purpose: Literal["promote", "guard"]
) -> GateResult:
    """The stuck-install gate: of the nodes in ``t`` that reported anything, the share on ``t.version``.

    ``t`` should start ``install_grace_hours`` after the wave did (the nodes' time to swap). With fewer
    than ``min_sample_nodes`` reporting, ``promote`` fails for lack of evidence and ``guard`` does not judge.
    """
    if purpose not in ("promote", "guard"):
        raise ValueError(f"purpose must be 'promote' or 'guard', got {purpose!r}")
    name, need = "on_target_fraction", gates.min_on_target_fraction
    sample = t.reporting_any or 0
    # A wave smaller than min_sample_nodes (a 5% wave of a 40-node ring) is judged on all of its nodes:
    # otherwise it could never be widened, nor its stuck installs caught.
    wanted = min(gates.min_sample_nodes, t.ring_nodes)
    if t.ring_nodes == 0:
        return GateResult(
            name, None, need, True, f"not judged: the wave reaches none of {t.ring}'s registered nodes"
        )
    if sample < wanted:
        why = (
            f"only {sample} of {t.ring_nodes} {t.ring} wave nodes reported since {t.since:%Y-%m-%d %H:%M} "
            f"(< min_sample_nodes {wanted})"
        )
        if purpose == "promote":
            return GateResult(name, None, need, False, f"{name}: {why}")
        return GateResult(name, None, need, True, f"not judged: {why}")
    frac = t.on_target_fraction
    assert frac is not None  # reporting_any >= min_sample_nodes >= 1
    stuck = sample - t.reporting_nodes
    counts = f"{t.reporting_nodes} of {sample} reporting wave nodes run {t.version}, {stuck} stuck"
    return _judge(name, frac, need, minimum=True, counts=counts)


def passed(results: Iterable[GateResult]) -> bool:
    """True when every gate passed (for guard: no breach)."""
    return all(r.passed for r in results)


def _cell(name: str, x: float | int | None) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    if name == "p95_latency_ms":
        return f"{x:.1f} ms"
    if math.isfinite(x):
        return f"{x:.3f}"
    return str(x)


def render_gate_table(results: Iterable[GateResult]) -> str:
    """A GitHub-markdown table of ``results`` (gate | value | threshold | result) for PR bodies."""
    lines = ["| gate | value | threshold | result |", "| --- | ---: | ---: | --- |"]
    for r in results:
        op = ">=" if r.name in _LOWER_BOUND else "<="
        mark = "✅" if r.passed else "❌"
        name, detail = (x.replace("|", "\\|").replace("\n", " ") for x in (r.name, r.detail))
        value, threshold = _cell(r.name, r.value), _cell(r.name, r.threshold)
        lines.append(f"| `{name}` | {value} | {op} {threshold} | {mark} {detail} |")
    return "\n".join(lines) + "\n"
