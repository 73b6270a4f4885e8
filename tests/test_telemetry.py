"""tools.gitops.telemetry: ring telemetry read from a real PostgreSQL server, and the promote/guard gates.

The reading tests build scenarios with known numbers (which node reports, how many false positives and
negatives, which latencies) and assert them exactly; the p95 is compared with numpy's linear percentile,
which is what ``percentile_cont`` computes. The gate tests need no database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from tools.artifacts.release import in_wave
from tools.core.config import TelemetryGates
from tools.core.errors import ServiceError
from tools.core.pg import connect
from tools.gitops.telemetry import (
    TELEMETRY_DDL,
    GateResult,
    PredictionRow,
    RingTelemetry,
    check_gates,
    check_on_target,
    ensure_schema,
    insert_predictions,
    passed,
    read_ring_telemetry,
    register_devices,
    render_gate_table,
    ring_devices,
    telemetry_from_rows,
    wave_members,
)

SINCE = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=24)
PILOT = [f"pilot-{i:02d}" for i in range(10)]
FLEET = [f"fleet-{i:02d}" for i in range(5)]


@pytest.fixture
def conn(pg_dsn: str) -> Iterator[Any]:
    connection = connect(pg_dsn)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def db(conn: Any) -> Any:
    """A connection to a database with the telemetry tables and the pilot and fleet rings registered."""
    ensure_schema(conn)
    register_devices(conn, {**dict.fromkeys(PILOT, "pilot"), **dict.fromkeys(FLEET, "fleet")})
    conn.commit()
    return conn


def at(i: int) -> datetime:
    """A moment inside the window, a different one per i."""
    return SINCE + timedelta(seconds=17 * i)


def read(conn: Any, *, ring: str = "pilot", version: str = "v2") -> RingTelemetry:
    return read_ring_telemetry(conn, ring=ring, version=version, since=SINCE, until=UNTIL)


# --- the scenario -------------------------------------------------------------------------------------


def scenario() -> tuple[list[PredictionRow], list[float]]:
    """Rows of release v2 on pilot-00..08 (pilot-09 does not report), with known counts.

    Returns the rows and the latencies percentile_cont must see (non-error rows with a latency).
    """
    rng = np.random.default_rng(7)
    reporting = PILOT[:9]
    specs: list[tuple[list[str], list[str] | None]] = []
    # 200 validated healthy windows, 6 of them flagged (false positives).
    specs += [(["overheat"], [])] * 6 + [([], [])] * 194
    # 100 validated failing windows: 4 missed (false negatives), 5 flagged with the wrong mode (wrong but
    # not missed), 3 with the right modes in another order (right), 88 exactly right.
    specs += [([], ["bearing"])] * 4
    specs += [(["overheat"], ["bearing"])] * 5
    specs += [(["bearing", "overheat"], ["overheat", "bearing"])] * 3
    specs += [(["bearing"], ["bearing"])] * 88
    # 50 predictions nobody validated (10 of them flagged).
    specs += [(["vibration"], None)] * 10 + [([], None)] * 40
    rows: list[PredictionRow] = []
    latencies: list[float] = []
    for i, (predicted, validated) in enumerate(specs):
        # Quarter milliseconds are exact in real (float4), so numpy sees exactly what PostgreSQL stores.
        latency = None if i % 25 == 0 else float(np.round(rng.gamma(4.0, 5.0) * 4) / 4)
        if latency is not None:
            latencies.append(latency)
        rows.append(PredictionRow(reporting[i % 9], "v2", at(i), predicted, validated, latency))
    # 7 inference errors, some carrying a label and a huge latency: neither may count anywhere but errors.
    rows += [
        PredictionRow(reporting[i % 9], "v2", at(400 + i), (), ["bearing"] if i < 3 else None, 9999.0, "OOM")
        for i in range(7)
    ]
    # Not counted: another release, and the edges of the window (until is exclusive). They come from
    # pilot-09, which must therefore still not count as reporting.
    rows += [PredictionRow("pilot-09", "v1", at(i), ["overheat"], [], 9999.0) for i in range(20)]
    rows += [
        PredictionRow("pilot-09", "v2", UNTIL, ["overheat"], [], 9999.0),
        PredictionRow("pilot-09", "v2", SINCE - timedelta(microseconds=1), ["overheat"], [], 9999.0),
        PredictionRow("pilot-09", "v2", UNTIL + timedelta(days=3), [], ["bearing"], 9999.0),
    ]
    return rows, latencies


@pytest.mark.postgres
def test_read_ring_telemetry_counts_exactly_what_the_scenario_holds(db: Any) -> None:
    rows, latencies = scenario()
    assert insert_predictions(db, rows) == len(rows)
    db.commit()

    t = read(db)

    assert (t.ring, t.version, t.since, t.until) == ("pilot", "v2", SINCE, UNTIL)
    assert (t.ring_nodes, t.reporting_nodes) == (10, 9)
    assert t.reporting_fraction == pytest.approx(0.9)
    # pilot-09 reported too, but another release: it counts as reporting, not as on the release.
    assert (t.reporting_any, t.on_target_fraction) == (10, pytest.approx(0.9))
    assert t.predictions == 300 + 50 + 7
    assert t.errors == 7
    assert t.error_rate == pytest.approx(7 / 357)
    assert t.validated == 300
    assert t.correct == 300 - 6 - 4 - 5
    assert t.accuracy == pytest.approx(285 / 300)
    assert (t.validated_healthy, t.false_positives) == (200, 6)
    assert t.fp_rate == pytest.approx(0.03)
    assert (t.validated_failing, t.false_negatives) == (100, 4)
    assert t.fn_rate == pytest.approx(0.04)
    assert len(latencies) == 350 - 14
    assert t.p95_latency_ms == pytest.approx(float(np.percentile(latencies, 95, method="linear")), abs=1e-9)
    assert t.p95_latency_ms is not None and t.p95_latency_ms < 9999.0


@pytest.mark.postgres
def test_the_in_process_computation_agrees_with_the_sql(db: Any) -> None:
    rows, _ = scenario()
    stray = [
        PredictionRow("fleet-00", "v2", at(1), [], [], 5.0),
        PredictionRow("nobody", "v2", at(2), [], []),
    ]
    early = [PredictionRow("pilot-00", "v2", SINCE - timedelta(seconds=1), ["overheating"], [], 1.0)]
    insert_predictions(db, rows + stray + early)
    db.commit()
    devices = {**dict.fromkeys(PILOT, "pilot"), **dict.fromkeys(FLEET, "fleet")}
    # The whole ring; a wave (members from both rings and one nobody registered); pilot-09 alone (it
    # reports only another release); nobody.
    waves = [None, [*PILOT[::2], "pilot-09", "fleet-00", "fleet-01", "nobody"], ["pilot-09"], []]
    for ring in ("pilot", "fleet"):
        for members in waves:
            in_sql = read_ring_telemetry(
                db, ring=ring, version="v2", since=SINCE, until=UNTIL, members=members
            )
            in_python = telemetry_from_rows(rows + stray + early, devices, ring=ring, version="v2",
                                            since=SINCE, until=UNTIL, members=members)  # fmt: skip
            sql, py = in_sql.to_dict(), in_python.to_dict()
            assert sql.pop("p95_latency_ms") == pytest.approx(
                py.pop("p95_latency_ms"), abs=1e-4
            )  # real/float
            assert sql == py, (ring, members)


@pytest.mark.postgres
def test_a_ring_is_judged_on_its_own_nodes_only(db: Any) -> None:
    # v2 on two pilot nodes and three fleet nodes, and on a node nobody registered.
    rows = [PredictionRow(d, "v2", at(i), [], [], 10.0) for i, d in enumerate(PILOT[:2] + FLEET[:3])]
    rows.append(PredictionRow("stray-node", "v2", at(99), [], None, 10.0))
    insert_predictions(db, rows)

    pilot = read(db, ring="pilot")
    fleet = read(db, ring="fleet")

    assert (pilot.ring_nodes, pilot.reporting_nodes) == (10, 2)
    assert (fleet.ring_nodes, fleet.reporting_nodes) == (5, 3)
    assert fleet.reporting_fraction == pytest.approx(0.6)
    # Each ring is judged on its own nodes: the stray node counts nowhere.
    assert (pilot.predictions, fleet.predictions) == (2, 3)


@pytest.mark.postgres
def test_a_wave_is_judged_on_its_members_and_stuck_nodes_report_another_version(db: Any) -> None:
    wave = PILOT[:4]
    rows = [PredictionRow(d, "v2", at(i), [], [], 10.0) for i, d in enumerate(wave[:2] + PILOT[5:])]
    rows += [PredictionRow(wave[2], "v1", at(50), [], [], 10.0)]  # stuck on v1; wave[3] is silent
    insert_predictions(db, rows)

    t = read_ring_telemetry(db, ring="pilot", version="v2", since=SINCE, until=UNTIL, members=wave + FLEET)
    # Fleet nodes are not pilot's: the wave has 4 registered nodes; 3 report, 2 of them v2.
    assert (t.ring_nodes, t.reporting_any, t.reporting_nodes, t.predictions) == (4, 3, 2, 2)
    assert (t.reporting_fraction, t.on_target_fraction) == (0.5, pytest.approx(2 / 3))
    whole = read(db)
    assert (whole.ring_nodes, whole.reporting_any, whole.reporting_nodes) == (10, 8, 7)
    assert ring_devices(db, "fleet") == FLEET and ring_devices(db, "canary") == []


def test_wave_members_are_the_nodes_the_hash_puts_in_the_wave() -> None:
    nodes = [f"edge-{i:03d}" for i in range(400)]
    five, quarter = wave_members(reversed(nodes), 5), wave_members(nodes, 25)
    assert five == sorted(n for n in nodes if in_wave(n, 5)) and 5 <= len(five) <= 40
    assert set(five) < set(quarter) and 60 <= len(quarter) <= 140  # the first wave's nodes stay in
    assert wave_members(nodes + nodes, 100) == wave_members(nodes, None) == nodes


@pytest.mark.postgres
def test_an_empty_window_has_counts_of_zero_and_no_rates(db: Any) -> None:
    t = read(db)
    assert (t.ring_nodes, t.reporting_nodes, t.predictions, t.validated, t.errors) == (10, 0, 0, 0, 0)
    assert t.reporting_fraction == 0.0
    assert (t.accuracy, t.fp_rate, t.fn_rate, t.error_rate, t.p95_latency_ms) == (None,) * 5

    nobody = read(db, ring="canary")
    assert (nobody.ring_nodes, nobody.reporting_fraction) == (0, None)


@pytest.mark.postgres
def test_only_errors_give_an_error_rate_of_one_and_no_latency(db: Any) -> None:
    insert_predictions(db, [PredictionRow(PILOT[0], "v2", at(i), (), [], 5.0, "timeout") for i in range(4)])
    t = read(db)
    assert (t.predictions, t.errors, t.error_rate, t.validated) == (4, 4, 1.0, 0)
    assert (t.accuracy, t.p95_latency_ms) == (None, None)


@pytest.mark.postgres
def test_rates_without_a_denominator_are_none_not_zero(db: Any) -> None:
    # Only validated-healthy windows: fp_rate is known, fn_rate is not.
    insert_predictions(db, [PredictionRow(PILOT[i], "v2", at(i), [], [], 1.0) for i in range(3)])
    t = read(db)
    assert (t.validated, t.accuracy, t.fp_rate, t.fn_rate) == (3, 1.0, 0.0, None)
    assert t.p95_latency_ms == pytest.approx(1.0)


@pytest.mark.postgres
def test_to_dict_is_json(db: Any) -> None:
    insert_predictions(db, [PredictionRow(PILOT[0], "v2", at(1), ["overheat"], ["overheat"], 12.5)])
    d = json.loads(json.dumps(read(db).to_dict()))
    assert d["since"] == SINCE.isoformat()
    assert d["reporting_fraction"] == pytest.approx(0.1)
    assert (d["accuracy"], d["p95_latency_ms"], d["fn_rate"], d["fp_rate"]) == (1.0, 12.5, 0.0, None)


@pytest.mark.postgres
def test_register_devices_moves_a_known_device_and_the_schema_is_idempotent(db: Any) -> None:
    ensure_schema(db)  # a second time: nothing to do, no error
    register_devices(db, {"pilot-00": "fleet", "new-node": "pilot"})
    with db.cursor() as cur:
        cur.execute("SELECT ring, count(*) FROM edge_devices GROUP BY ring ORDER BY ring")
        assert cur.fetchall() == [("fleet", 6), ("pilot", 10)]
    assert register_devices(db, {}) == 0
    assert insert_predictions(db, []) == 0


@pytest.mark.postgres
def test_the_ddl_matches_the_documented_columns(db: Any) -> None:
    with db.cursor() as cur:
        cur.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_name IN ('predictions', 'edge_devices') ORDER BY table_name, ordinal_position"
        )
        columns = cur.fetchall()
        cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'predictions'")
        indexes = " ".join(r[0] for r in cur.fetchall())
    assert columns == [
        ("edge_devices", "device_id", "text", "NO"),
        ("edge_devices", "ring", "text", "NO"),
        ("edge_devices", "registered_at", "timestamp with time zone", "NO"),
        ("predictions", "id", "bigint", "NO"),
        ("predictions", "device_id", "text", "NO"),
        ("predictions", "model_version", "text", "NO"),
        ("predictions", "predicted_at", "timestamp with time zone", "NO"),
        ("predictions", "latency_ms", "real", "YES"),
        ("predictions", "predicted", "ARRAY", "NO"),
        ("predictions", "validated_label", "ARRAY", "YES"),
        ("predictions", "error", "text", "YES"),
    ]
    assert "(model_version, predicted_at)" in indexes
    assert "CREATE TABLE IF NOT EXISTS" in TELEMETRY_DDL


@pytest.mark.postgres
def test_missing_tables_are_a_service_error_that_points_at_the_ddl(conn: Any, pg_dsn: str) -> None:
    with pytest.raises(ServiceError) as err:
        read(conn)
    message = str(err.value)
    assert "predictions, edge_devices" in message
    assert "TELEMETRY_DDL in tools/core/schema.py" in message
    assert pg_dsn not in message
    assert "dbname" not in message and "edgeops_test_" not in message

    # The check does not leave the caller's transaction aborted.
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE edge_devices (device_id text PRIMARY KEY, ring text NOT NULL)")
    with pytest.raises(ServiceError, match=r"missing from this database: predictions \("):
        read(conn)


@pytest.mark.postgres
def test_tables_without_the_expected_columns_are_a_service_error(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE edge_devices (device_id text PRIMARY KEY, ring text NOT NULL)")
        cur.execute("CREATE TABLE predictions (device_id text, model_version text, predicted_at timestamptz)")
    with pytest.raises(ServiceError, match="do not have the columns telemetry needs") as err:
        read(conn)
    assert "latency_ms" in str(err.value) or "predicted" in str(err.value)


def test_rows_and_windows_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="must be empty"):
        PredictionRow("n", "v2", SINCE, ["overheat"], None, 1.0, "crashed")
    with pytest.raises(ValueError, match="timezone-aware"):
        PredictionRow("n", "v2", datetime(2025, 3, 1), [])
    no_conn: Any = None
    with pytest.raises(ValueError, match="timezone-aware"):
        read_ring_telemetry(no_conn, ring="pilot", version="v2", since=datetime(2025, 3, 1), until=UNTIL)
    with pytest.raises(ValueError, match="empty telemetry window"):
        read_ring_telemetry(no_conn, ring="pilot", version="v2", since=UNTIL, until=SINCE)


@pytest.mark.postgres
def test_the_scenario_against_the_default_gates(db: Any) -> None:
    rows, _ = scenario()
    insert_predictions(db, rows)
    t = read(db)
    gates = TelemetryGates()

    promote = {r.name: r for r in check_gates(t, gates, purpose="promote")}
    # 7 errors in 357 predictions is 2 %: above the 1 % allowed, the only gate that fails.
    assert [n for n, r in promote.items() if not r.passed] == ["error_rate"]
    assert promote["error_rate"].detail == "error_rate 0.020 > 0.010 (7 of 357 predictions failed)"
    assert promote["reporting_fraction"].detail == (
        "reporting_fraction 0.900 >= 0.800 (9 of 10 pilot nodes reported)"
    )
    assert promote["fn_rate"].detail == "fn_rate 0.040 <= 0.050 (4 of 100 failing windows missed)"

    guard = check_gates(t, gates, purpose="guard")
    assert [r.name for r in guard if not r.passed] == ["error_rate"]
    assert not passed(guard)


# --- gates (no database) ------------------------------------------------------------------------------


GATES = TelemetryGates(
    min_reporting_fraction=0.9,
    min_validated_predictions=200,
    min_accuracy=0.9,
    max_fp_rate=0.05,
    max_fn_rate=0.05,
    max_error_rate=0.01,
    max_p95_latency_ms=50.0,
)


def good() -> RingTelemetry:
    return RingTelemetry(
        ring="pilot",
        version="v2",
        since=SINCE,
        until=UNTIL,
        ring_nodes=10,
        reporting_nodes=10,
        predictions=1000,
        validated=300,
        accuracy=0.95,
        fp_rate=0.02,
        fn_rate=0.03,
        errors=2,
        error_rate=0.002,
        p95_latency_ms=31.5,
    )


def silent() -> RingTelemetry:
    """``good()``'s ring with not one prediction reported."""
    return replace(
        good(), predictions=0, validated=0, accuracy=None, fp_rate=None, fn_rate=None, errors=0,
        error_rate=None, p95_latency_ms=None,
    )  # fmt: skip


def by_name(results: list[GateResult]) -> dict[str, GateResult]:
    return {r.name: r for r in results}


PROMOTE_GATES = [
    "reporting_fraction",
    "validated_predictions",
    "accuracy",
    "fp_rate",
    "fn_rate",
    "error_rate",
    "p95_latency_ms",
]


def test_good_telemetry_passes_every_promote_gate() -> None:
    results = check_gates(good(), GATES, purpose="promote")
    assert [r.name for r in results] == PROMOTE_GATES
    assert all(r.passed for r in results), results
    assert passed(results)
    r = by_name(results)
    assert r["validated_predictions"] == GateResult(
        "validated_predictions", 300, 200, True, "300 validated predictions >= 200"
    )
    assert r["p95_latency_ms"].detail == "p95_latency_ms 31.5 ms <= 50.0 ms"
    assert r["accuracy"].detail == "accuracy 0.950 >= 0.900"  # no counts on a hand-built RingTelemetry


def test_thresholds_themselves_pass() -> None:
    t = replace(
        good(),
        reporting_nodes=9,
        validated=200,
        accuracy=0.9,
        fp_rate=0.05,
        fn_rate=0.05,
        error_rate=0.01,
        p95_latency_ms=50.0,
    )
    assert passed(check_gates(t, GATES, purpose="promote"))


@pytest.mark.parametrize(
    ("gate", "change", "detail"),
    [
        (
            "reporting_fraction",
            {"reporting_nodes": 8},
            "reporting_fraction 0.800 < 0.900 (8 of 10 pilot nodes reported)",
        ),
        ("validated_predictions", {"validated": 199}, "199 validated predictions < 200"),
        (
            "accuracy",
            {"accuracy": 0.89, "correct": 267},
            "accuracy 0.890 < 0.900 (267 of 300 validated predictions right)",
        ),
        ("fp_rate", {"fp_rate": 0.06}, "fp_rate 0.060 > 0.050"),
        (
            "fn_rate",
            {"fn_rate": 17 / 210, "false_negatives": 17, "validated_failing": 210},
            "fn_rate 0.081 > 0.050 (17 of 210 failing windows missed)",
        ),
        ("error_rate", {"error_rate": 0.0101}, "error_rate 0.0101 > 0.0100 (2 of 1000 predictions failed)"),
        ("p95_latency_ms", {"p95_latency_ms": 50.04}, "p95_latency_ms 50.04 ms > 50.00 ms"),
    ],
)
def test_each_promote_gate_fails_on_its_own_breach(gate: str, change: dict[str, Any], detail: str) -> None:
    results = check_gates(replace(good(), **change), GATES, purpose="promote")
    failed = [r for r in results if not r.passed]
    assert [r.name for r in failed] == [gate]
    assert failed[0].detail == detail
    assert not passed(results)


@pytest.mark.parametrize(
    ("gate", "change", "detail"),
    [
        (
            "reporting_fraction",
            {"ring_nodes": 0, "reporting_nodes": 0},
            "reporting_fraction: no devices registered in ring 'pilot' (edge_devices)",
        ),
        ("accuracy", {"accuracy": None}, "accuracy: no validated predictions yet"),
        ("fp_rate", {"fp_rate": None}, "fp_rate: no validated healthy windows yet"),
        ("fn_rate", {"fn_rate": None}, "fn_rate: no validated failing windows yet"),
        ("error_rate", {"error_rate": None}, "error_rate: no predictions yet"),
        ("p95_latency_ms", {"p95_latency_ms": None}, "p95_latency_ms: no latency measured"),
    ],
)
def test_promote_fails_a_gate_without_evidence(gate: str, change: dict[str, Any], detail: str) -> None:
    results = by_name(check_gates(replace(good(), **change), GATES, purpose="promote"))
    assert (results[gate].passed, results[gate].value, results[gate].detail) == (False, None, detail)
    assert [n for n, r in results.items() if not r.passed] == [gate]


def test_promote_with_no_data_at_all_fails_everything() -> None:
    empty = replace(silent(), reporting_nodes=0)
    results = check_gates(empty, GATES, purpose="promote")
    assert not any(r.passed for r in results)
    assert by_name(results)["p95_latency_ms"].detail == "p95_latency_ms: no predictions yet"


def test_guard_judges_only_its_gates_and_passes_good_telemetry() -> None:
    results = check_gates(good(), GATES, purpose="guard")
    assert sorted(r.name for r in results) == sorted(
        ["accuracy", "fp_rate", "fn_rate", "error_rate", "p95_latency_ms"]
    )
    assert passed(results)


def test_guard_does_not_judge_labels_below_the_validated_minimum() -> None:
    # Terrible label metrics on too few validated predictions: not evidence enough to roll back...
    t = replace(good(), validated=120, accuracy=0.2, fp_rate=0.9, fn_rate=0.9, reporting_nodes=1)
    results = by_name(check_gates(t, GATES, purpose="guard"))
    for name in ("accuracy", "fp_rate", "fn_rate"):
        assert results[name].passed
        assert results[name].detail == "not judged: only 120 validated predictions (< 200)"
    assert passed(results.values())
    # ...but the same numbers fail promotion.
    assert {r.name for r in check_gates(t, GATES, purpose="promote") if not r.passed} == {
        "reporting_fraction",
        "validated_predictions",
        "accuracy",
        "fp_rate",
        "fn_rate",
    }


def test_guard_without_predictions_judges_nothing() -> None:
    t = silent()
    results = by_name(check_gates(t, GATES, purpose="guard"))
    assert passed(results.values())
    assert results["error_rate"].detail == "not judged: no predictions"
    assert results["p95_latency_ms"].detail == "not judged: no predictions"
    assert results["accuracy"].detail == "not judged: only 0 validated predictions (< 200)"


def test_guard_finds_breaches() -> None:
    t = replace(
        good(),
        fn_rate=17 / 210,
        false_negatives=17,
        validated_failing=210,
        error_rate=0.03,
        errors=30,
        p95_latency_ms=80.25,
        accuracy=0.7,
        fp_rate=0.2,
    )
    results = by_name(check_gates(t, GATES, purpose="guard"))
    assert {n for n, r in results.items() if not r.passed} == {
        "accuracy",
        "fp_rate",
        "fn_rate",
        "error_rate",
        "p95_latency_ms",
    }
    assert results["fn_rate"].detail == "fn_rate 0.081 > 0.050 (17 of 210 failing windows missed)"
    assert results["error_rate"].detail == "error_rate 0.030 > 0.010 (30 of 1000 predictions failed)"
    assert results["p95_latency_ms"].detail == "p95_latency_ms 80.2 ms > 50.0 ms"


def test_guard_with_no_validated_minimum_judges_labels_it_has() -> None:
    gates = GATES.model_copy(update={"min_validated_predictions": 0})
    t = replace(good(), validated=0, accuracy=None, fp_rate=None, fn_rate=None)
    results = by_name(check_gates(t, gates, purpose="guard"))
    assert passed(results.values())
    assert results["accuracy"].detail == "not judged: no validated predictions yet"


def test_unknown_purpose_is_refused() -> None:
    with pytest.raises(ValueError, match="purpose"):
        check_gates(good(), GATES, purpose="rollout")  # type: ignore[arg-type]


def test_the_stuck_install_gate_needs_a_sample_then_the_share_on_the_release() -> None:
    stuck = replace(good(), ring_nodes=10, reporting_nodes=6, reporting_any=8)
    result = check_on_target(stuck, GATES, purpose="promote")
    assert (result.name, result.passed, result.value) == ("on_target_fraction", False, 0.75)
    assert result.detail == ("on_target_fraction 0.750 < 0.900 (6 of 8 reporting wave nodes run v2, 2 stuck)")
    assert not check_on_target(stuck, GATES, purpose="guard").passed
    fine = replace(stuck, reporting_nodes=8)
    assert check_on_target(fine, GATES, purpose="promote").passed
    few = replace(stuck, reporting_nodes=0, reporting_any=2)  # below min_sample_nodes (3)
    assert not check_on_target(few, GATES, purpose="promote").passed
    not_judged = check_on_target(few, GATES, purpose="guard")
    assert not_judged.passed and not_judged.detail.startswith("not judged: only 2 of 10 pilot wave nodes")
    unknown = replace(stuck, reporting_any=None)  # built by hand without it: no evidence
    assert check_on_target(unknown, GATES, purpose="guard").passed
    assert not check_on_target(unknown, GATES, purpose="promote").passed
    with pytest.raises(ValueError, match="purpose"):
        check_on_target(stuck, GATES, purpose="deploy")  # type: ignore[arg-type]


def test_render_gate_table_is_a_markdown_table() -> None:
    results = check_gates(replace(good(), fn_rate=0.2), GATES, purpose="promote")
    results.append(GateResult("odd|name", 1.5, 2.0, True, "a | b"))
    lines = render_gate_table(results).splitlines()
    assert lines[0] == "| gate | value | threshold | result |"
    assert lines[1] == "| --- | ---: | ---: | --- |"
    assert len(lines) == 2 + len(results)
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert lines[2] == (
        "| `reporting_fraction` | 1.000 | >= 0.900 | ✅ reporting_fraction 1.000 >= 0.900 "
        "(10 of 10 pilot nodes reported) |"
    )
    assert lines[3] == "| `validated_predictions` | 300 | >= 200 | ✅ 300 validated predictions >= 200 |"
    assert lines[6] == "| `fn_rate` | 0.200 | <= 0.050 | ❌ fn_rate 0.200 > 0.050 |"
    assert lines[8] == "| `p95_latency_ms` | 31.5 ms | <= 50.0 ms | ✅ p95_latency_ms 31.5 ms <= 50.0 ms |"
    assert lines[9].endswith("| ✅ a \\| b |")
    assert "odd\\|name" in lines[9]
    none_row = render_gate_table([GateResult("accuracy", None, 0.9, False, "accuracy: no data")])
    assert "| `accuracy` | n/a | >= 0.900 | ❌ accuracy: no data |" in none_row
