"""Ingestion benchmark: the seed's sequential download loop vs `edgeops snapshot`, side by side.

    .venv/bin/python benchmarks/ingest.py                      # 20,000 LDOs, 20 ms per request, + memory
    .venv/bin/python benchmarks/ingest.py --n 2000 --memory-n 0  # a quick look

One run, one process for the clients, one S3 API server (moto, in its own process so that its work does not
share the benchmark's GIL) and one throwaway PostgreSQL server:

1. N synthetic LDOs are seeded into PostgreSQL + S3 (not timed as part of the comparison).
2. Latency: the server sleeps ``--latency-ms`` before every response (a WSGI middleware; this kernel has no
   netem). Its server is threaded, so a sleeping request does not hold up others, as with a real store.
3. Ours, cold: ``build_snapshot`` with an empty cache (concurrent GETs, validation, materialisation).
4. Ours, warm: the same with the cache from step 3 (no downloads).
5. Baseline, the seed's loop (shared/seeds/000, "Download LDO files from S3"): the index query, then one
   ``s3.download_file(bucket, key, path)`` per LDO, sequentially; ``download_file`` costs a HEAD and a GET.
   It runs last because it is bound by latency, not CPU: whatever else the machine does then barely moves it.
6. Memory: a 100,000-LDO snapshot in a child process; its peak RSS (``ru_maxrss``) is printed.

Targets (issue #3): cold >= 10x the baseline's objects/s; warm >= 20x faster than cold; peak < 2 GiB.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import psycopg2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tools.kits.devservices import ThrowawayPostgres, ThrowawayS3  # noqa: E402
from training.config import load_training_config  # noqa: E402
from training.data.seed import seed  # noqa: E402
from training.data.synth import write_dataset  # noqa: E402
from training.snapshot import INDEX_QUERY, LdoCache, PgS3Source, SnapshotOptions, build_snapshot  # noqa: E402


def seed_style_loop(dsn: str, bucket: str, limit: int, dest: Path) -> int:
    """The seed's code, kept as it was apart from the key (the seed assumed ``<ldo_id>.json`` at the root)."""
    conn = psycopg2.connect(dsn)
    cursor = conn.cursor()
    cursor.execute(INDEX_QUERY.replace("ldo_id, s3_key, etag, created_at", "ldo_id, s3_key"), (limit,))
    s3 = boto3.client("s3")
    n = 0
    for ldo_id, key in cursor:
        s3.download_file(bucket, key, str(dest / f"{ldo_id}.json"))
        n += 1
    conn.close()
    return n


def peak_rss_of_snapshot(n: int, work: Path) -> tuple[float, float]:
    """Peak RSS (MiB) of a child process that builds an n-LDO snapshot from a folder, and its wall time."""
    data = work / f"mem-{n}"
    if not data.exists():
        print(f"   generating {n} LDOs for the memory run...", flush=True)
        write_dataset(data, n, 5, load_training_config().data_spec())
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from training.config import load_training_config as l;"
        "from training.snapshot import DirSource, SnapshotOptions, build_snapshot as b;"
        "r = b(DirSource(Path(sys.argv[2])), Path(sys.argv[3]), l().data_spec(),"
        " SnapshotOptions(limit=10**7));"
        "print(r.rows)"
    )
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO), str(data), str(work / "mem-snap")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    rows = int(out.stdout.strip())
    if peak_kib <= before:
        print("   (ru_maxrss did not move: another child had a higher peak; the figure is an upper bound)")
    print(f"   snapshot of {rows} LDOs (from {n} files) built in {elapsed:.1f}s")
    return peak_kib / 1024, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="LDOs in the store (default 20000)")
    parser.add_argument(
        "--latency-ms", type=float, default=20.0, help="server delay per response (default 20)"
    )
    parser.add_argument("--workers", type=int, default=32, help="snapshot fetch concurrency (default 32)")
    parser.add_argument("--memory-n", type=int, default=100_000, help="LDOs for the memory run; 0 skips it")
    args = parser.parse_args()
    spec = load_training_config().data_spec()

    with (
        tempfile.TemporaryDirectory(prefix="edgeops-bench-") as tmp,
        ThrowawayPostgres() as pg,
        ThrowawayS3(latency_ms=args.latency_ms, separate_process=True) as s3server,
    ):
        work = Path(tmp)
        assert s3server.endpoint is not None
        os.environ.update(s3server.endpoint.env())
        bucket = "bench-ldos"
        url = s3server.endpoint.url
        print(f"== setup: {args.n} LDOs, S3 API server at {url} (+{args.latency_ms:g} ms per "
              f"response), PostgreSQL {pg.version}", flush=True)  # fmt: skip
        t = time.perf_counter()
        write_dataset(work / "ldos", args.n, 3, spec)
        seeded = seed(work / "ldos", spec, dsn=pg.dsn, s3_uri=f"s3://{bucket}/ldos", workers=64)
        print(f"   seeded {seeded.total} LDOs in {time.perf_counter() - t:.1f}s", flush=True)
        limit = args.n

        print(f"== edgeops snapshot, cold cache, {args.workers} workers", flush=True)
        cache = LdoCache(work / "cache")
        t = time.perf_counter()
        cold = build_snapshot(
            PgS3Source(dsn=pg.dsn, s3_uri=f"s3://{bucket}/ldos", cache=cache, workers=args.workers),
            work / "snap-cold", spec, SnapshotOptions(limit=limit),
        )  # fmt: skip
        cold_s = time.perf_counter() - t
        print(f"   {cold.summary()} in {cold_s:.1f}s", flush=True)

        print("== edgeops snapshot, warm cache", flush=True)
        t = time.perf_counter()
        warm = build_snapshot(
            PgS3Source(dsn=pg.dsn, s3_uri=f"s3://{bucket}/ldos", cache=cache, workers=args.workers),
            work / "snap-warm", spec, SnapshotOptions(limit=limit),
        )  # fmt: skip
        warm_s = time.perf_counter() - t
        print(f"   {warm.summary()} in {warm_s:.1f}s", flush=True)
        assert warm.fingerprint == cold.fingerprint and warm.downloaded == 0

        print(
            "== baseline, the seed's sequential s3.download_file loop (last: it is latency-bound)",
            flush=True,
        )
        dest = work / "seed-loop"
        dest.mkdir()
        t = time.perf_counter()
        n_seq = seed_style_loop(pg.dsn, bucket, limit, dest)
        seq_s = time.perf_counter() - t
        seq_rate = n_seq / seq_s
        print(f"   {n_seq} objects in {seq_s:.1f}s", flush=True)

        considered = cold.rows + cold.rejected
        cold_rate, warm_rate = considered / cold_s, considered / warm_s
        ratio_cold = cold_rate / seq_rate
        ratio_warm = cold_s / warm_s
        print()
        print(f"{'':28}{'objects':>9}{'seconds':>10}{'objects/s':>12}")
        print(f"{'seed loop (sequential)':28}{n_seq:>9}{seq_s:>10.1f}{seq_rate:>12.1f}")
        print(f"{'snapshot, cold':28}{considered:>9}{cold_s:>10.1f}{cold_rate:>12.1f}")
        print(f"{'snapshot, warm':28}{considered:>9}{warm_s:>10.1f}{warm_rate:>12.1f}")
        print()
        verdict = {True: "meets", False: "MISSES"}
        print(f"cold vs seed loop: {ratio_cold:5.1f}x  (target >= 10x: {verdict[ratio_cold >= 10]})")
        print(f"warm vs cold:      {ratio_warm:5.1f}x  (target >= 20x: {verdict[ratio_warm >= 20]})")

        if args.memory_n > 0:
            print(
                f"\n== memory: peak RSS of a {args.memory_n}-LDO snapshot (child process, folder source)",
                flush=True,
            )
            peak_mib, _ = peak_rss_of_snapshot(args.memory_n, work)
            print(f"peak RSS: {peak_mib:.0f} MiB  (target < 2048 MiB: {verdict[peak_mib < 2048]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
