"""``make demo`` / ``edgeops demo``: a model's whole journey on embedded defaults, in a few minutes, on a CPU.

Two months of it: synthetic LDOs → PostgreSQL + S3 (throwaway servers, when they start) → snapshot → train
→ evaluate against the fleet model → export → publish a signed bundle → the pilot PR → approval and merge
→ Argo CD's sync (simulated: the ring built with kustomize at the merged commit) → the simulated fleet
converges → a simulated soak with pilot telemetry → the promotion PR → merge → the fleet converges. Then
the next month's model does the same, compared with the fleet's, but enters the fleet in waves (5%, 25%,
100% of its nodes, each wave a PR gated on that wave's own telemetry; the other nodes prefetch it), and is
rolled back by ``edgeops rollback``: the fleet returns to the previous model from its cache.

Everything happens in a fresh workspace folder (default ``.edgeops/demo``, ignored by git): the demo's own
git repository (a bare remote and a clone of it), store, fleet and report. The user's checkout and remotes
are never touched. What is simulated says so in the output (:mod:`pipelines.story`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tools.core.errors import EdgeopsError, ServiceError

__all__ = ["gate_margins", "run_demo"]

log = logging.getLogger("edgeops.demo")
_MARKER = ".edgeops-demo-workspace"


def _say(text: str = "") -> None:
    print(text, flush=True)


@contextmanager
def _step(title: str) -> Iterator[None]:
    _say(f"\n== {title}")
    start = time.monotonic()
    yield
    _say(f"   done in {time.monotonic() - start:.1f}s")


def _fresh_workspace(path: Path) -> Path:
    if path.exists():
        if not (path / _MARKER).exists() and any(path.iterdir()):
            raise EdgeopsError(
                f"{path} exists and is not a demo workspace; pass --workspace with a new or empty folder"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / _MARKER).write_text("created by `edgeops demo`; deleted and recreated on the next run\n")
    return path


def run_demo(
    *, workspace: Path, n: int, seed: int, config_path: str | None, nodes: int = 80, pilot: int = 6
) -> int:
    from tools.core.project import Project
    from tools.kits.devservices import ThrowawayPostgres, ThrowawayS3, patched_environ
    from training.config import load_training_config

    if n < 1:
        raise EdgeopsError(f"--n must be at least 1, got {n}")
    total_start = time.monotonic()
    project = Project.load(config_path)
    cfg_path, cfg = project.config_path, project.cfg
    tcfg = load_training_config(project.training_config_path)
    ws = _fresh_workspace(workspace)
    _say(f"edgeops demo: workspace {ws} (config {cfg_path}; rings {' -> '.join(cfg.ring_order())})")

    with ExitStack() as stack:
        services: dict[str, Any] = {}
        try:
            services["pg"] = stack.enter_context(ThrowawayPostgres())
            # Its own process: the server does not share the GIL with the 32 fetch threads of the snapshot.
            services["s3"] = stack.enter_context(ThrowawayS3(separate_process=True))
            stack.enter_context(patched_environ(services["s3"].endpoint.env()))
            pg = services["pg"]
            _say(
                f"   throwaway PostgreSQL {pg.version} on 127.0.0.1:{pg.port}, "
                f"S3 API at {services['s3'].endpoint.url}"
            )
        except ServiceError as exc:
            services.clear()
            _say(
                f"   no throwaway PostgreSQL + S3 here ({exc}): LDOs come from the folder, telemetry is "
                "in-process"
            )
        return _journey(
            ws,
            cfg_path,
            cfg,
            tcfg,
            n=n,
            seed=seed,
            services=services,
            nodes=nodes,
            pilot=pilot,
            started=total_start,
        )


def _data_round(
    ws: Path, cfg: Any, tcfg: Any, *, n: int, seed: int, services: dict[str, Any], month: int
) -> Path:
    """Synthesise ``n`` new LDOs, load them like the runtime backend, snapshot the newest ones."""
    from training.data.ldo import parse_ldo
    from training.data.seed import seed as seed_ldos
    from training.data.synth import write_dataset
    from training.snapshot import DirSource, LdoCache, PgS3Source, SnapshotOptions, build_snapshot

    spec = tcfg.data_spec()
    data_dir = ws / "ldos"
    before = len(list(data_dir.glob("*.json"))) if data_dir.is_dir() else 0
    options = SnapshotOptions(
        limit=cfg.data.snapshot_limit,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        max_reject_fraction=cfg.data.max_reject_fraction,
        vocab_sizes={
            "product_id": tcfg.product_vocab,
            "recipe_id": tcfg.recipe_vocab,
            "asset_id": tcfg.asset_vocab,
        },
    )
    with _step(f"Month {month}: {n} new LDO records from the field (synthetic plant, seed {seed})"):
        # The same plant every month: month 2 continues its record stream where month 1 stopped.
        summary = write_dataset(data_dir, n, seed, spec, first=before)
        _say(
            f"   {summary.n} new files in {data_dir} ({before + summary.n} in all); {summary.healthy} healthy"
        )
        if month == 1:
            for mode, count in summary.label_counts.items():
                _say(f"   {mode:<18} {count:>6}  ({count / n:.1%})")
        if not services:  # with services, the loader validates every file before it stores any
            new = [data_dir / f"ldo-{seed}-{i:07d}.json" for i in range(before, before + summary.n)]
            for path in new:
                parse_ldo(path.read_bytes(), spec, source=path.name)
            _say(f"   {len(new)} of {len(new)} new records valid (LDO v1 and the training config)")
    snapshot = ws / f"snapshot-{month}"
    if services:
        with _step("Load them into PostgreSQL + S3 as the runtime backend does; snapshot the newest"):
            first = seed_ldos(data_dir, spec, dsn=services["pg"].dsn, s3_uri=cfg.data.ldo_store)
            _say(f"   {first.total} of {first.total} records valid (LDO v1 and the training config)")
            _say(f"   first load:  {first.summary()}")
            if month == 1:  # loading is idempotent: the same files again change nothing
                again = seed_ldos(data_dir, spec, dsn=services["pg"].dsn, s3_uri=cfg.data.ldo_store)
                _say(f"   second load: {again.summary()}")
            cache = LdoCache(ws / "cache")
            for run in ("cold", "warm") if month == 1 else ("incremental",):
                start = time.monotonic()
                source = PgS3Source(dsn=services["pg"].dsn, s3_uri=cfg.data.ldo_store, cache=cache)
                snap = build_snapshot(source, snapshot, spec, options)
                _say(f"   {run}: {snap.summary()} ({time.monotonic() - start:.1f}s)")
    else:
        with _step("Snapshot the newest validated LDOs from the folder"):
            snap = build_snapshot(DirSource(data_dir), snapshot, spec, options)
            _say(f"   {snap.summary()}")
    return snapshot


def _model_round(  # noqa: PLR0917 (called twice, from one place)
    ws: Path,
    cfg: Any,
    snapshot: Path,
    run: Path,
    fleet_release: Path | None,
    public_key_path: Path,
    private_key: Any,
    store: str,
) -> dict[str, Any] | None:
    """Train, evaluate against the fleet model, export, publish. None when the candidate fails its gates."""
    from tools.artifacts.bundle import verify_bundle_uri
    from tools.core.signing import key_id, load_public_key
    from training.config import DEMO_CONFIG, load_training_config
    from training.evaluate import evaluate_run, load_fleet_model
    from training.export import export_run
    from training.publish import publish_run
    from training.train import train

    with _step(f"Train the failure-mode model on {snapshot.name} (CPU, training/configs/demo.yaml)"):
        result = train(snapshot, load_training_config(DEMO_CONFIG), run)
        test = result["metrics"].get("test", result["metrics"]["val"])
        seconds, params = result["timing"]["wall_seconds"], result["model"]["parameters"]
        _say(
            f"   {result['epochs_run']} epochs (best {result['best_epoch']}) in {seconds:.1f}s, "
            f"{params} parameters"
        )
        _say(
            f"   test split ({test['n']} windows): subset accuracy {test['subset_accuracy']:.3f} vs "
            f"{test['healthy_baseline_subset_accuracy']:.3f} for always-healthy; "
            f"FP rate {test['fp_rate']:.3f}, FN rate {test['fn_rate']:.3f}"
        )
    with _step("Evaluate against the fleet model on the same test split, export to ONNX, publish"):
        fleet = load_fleet_model(fleet_release, public_key_path) if fleet_release else None
        _say(
            f"   fleet model: {fleet.version + ' (verified from the fleet release)' if fleet else 'none yet'}"
        )
        report = evaluate_run(snapshot, run, cfg.gates.evaluation, fleet)
        for g in report["gates"]:
            value = "n/a" if g["value"] is None else g["value"]
            _say(
                f"   {'PASS' if g['passed'] else 'FAIL'} {g['name']:<28} {value!s:<9} "
                f"(threshold {g['threshold']})"
            )
        margins = gate_margins(report)
        weakest = min(margins, key=margins.__getitem__)
        _say(f"   weakest margin: {weakest} {margins[weakest]:+.3f}")
        export = export_run(run)
        lat, engine = export["latency_cpu_onnxruntime"]["batch_1"], export["engine"]
        _say(
            f"   ONNX parity max |diff| {export['parity']['max_abs_diff']:.1e}; CPU latency p50 "
            f"{lat['p50_ms']:.3f} ms at batch 1"
        )
        engine_text = "built" if engine.get("built") else f"not built ({engine['reason']})"
        _say(f"   TensorRT engine: {engine_text}")
        if not report["passed"]:
            _say("   not published: the candidate failed its gates (see above)")
            return None
        outcome = publish_run(run, store, private_key=private_key, gpu_hour_usd=cfg.cost.gpu_hour_usd)
        verified = verify_bundle_uri(outcome.uri, load_public_key(public_key_path))
        _say(f"   published {outcome.version} at {outcome.uri}")
        _say(
            f"   verified: {len(verified.files)} files match SHA256SUMS, signed by key {key_id(private_key)}"
        )
        return {"version": outcome.version, "uri": outcome.uri, "evaluation": report, "margins": margins}


def _promote(story: Any, at: datetime) -> Any:
    """`edgeops promote --from pilot` at ``at`` (the injected clock), every gate printed."""
    from tools.gitops.promotion import promote

    decision = promote(
        story.workspace(at),
        from_ring="pilot",
        dsn=story.dsn,
        telemetry_reader=story.telemetry_reader(),
        devices=story.devices(),
    )
    for g in decision.gates:
        _say(f"   {'PASS' if g.passed else 'FAIL'} {g.name:<26} {g.detail}")
    return decision


def gate_margins(report: dict[str, Any]) -> dict[str, float]:
    """How far each evaluated gate is from failing (positive: passed by that much), by gate name."""
    margins = {}
    for g in report["gates"]:
        if g["value"] is not None:
            above = g["value"] - g["threshold"]  # a min_ gate passes above its threshold, a max_ gate below
            margins[g["name"]] = round(above if g["name"].startswith("min_") else -above, 6)
    return margins


def _windows(snapshot: Path, tcfg: Any) -> tuple[dict[str, Any], Any]:
    """The test split's model inputs and labels, as numpy, for the simulated pilot predictions."""
    import torch

    from training.train import load_snapshot

    snap = load_snapshot(snapshot, tcfg.data_spec(), torch.device("cpu"))
    rows = snap.index(2)
    feed = {"sensors": snap.sensors[rows].numpy(), **{k: v[rows].numpy() for k, v in snap.ids.items()}}
    return feed, snap.labels[rows].numpy()


def _journey(
    ws: Path,
    cfg_path: Path,
    cfg: Any,
    tcfg: Any,
    *,
    n: int,
    seed: int,
    services: dict[str, Any],
    nodes: int,
    pilot: int,
    started: float,
) -> int:
    import numpy as np

    from pipelines.story import Story
    from tools.artifacts.release import load_release
    from tools.core.signing import generate_keypair, load_private_key
    from tools.gitops.promotion import promote, propose, rollback

    # A throwaway signing key for the demo only; a fork makes its own with `edgeops keygen`.
    private_pem, public_pem = generate_keypair()
    (ws / "demo-signing.pub").write_bytes(public_pem)
    key = load_private_key({"EDGEOPS_SIGNING_KEY": private_pem.decode()})
    store = f"file://{(ws / 'store').resolve()}"
    repo_root = Path(__file__).resolve().parents[1]
    story = Story(
        ws,
        repo_root,
        cfg_path,
        _say,
        nodes=nodes,
        pilot=pilot,
        dsn=services["pg"].dsn if services else None,
        min_validated=cfg.gates.telemetry.min_validated_predictions,
    )
    with _step("The release repository: a bare git remote and a clone (a stand-in for GitHub)"):
        story.create_repository(public_pem, store)
    soak = cfg.rings[cfg.ring_order()[0]].soak_hours
    versions: list[str] = []
    margins: dict[str, dict[str, float]] = {}

    for month in (1, 2):
        snapshot = _data_round(
            ws,
            cfg,
            tcfg,
            n=n,
            seed=seed,
            services=services,
            month=month,
        )
        fleet_release = story.work / cfg.release_path(cfg.last_ring)
        has_fleet = load_release(fleet_release) is not None
        model = _model_round(
            ws,
            cfg,
            snapshot,
            ws / f"run-{month}",
            fleet_release if has_fleet else None,
            story.work / cfg.signing.public_key,
            key,
            store,
        )
        if model is None:
            _say(
                f"\nedgeops demo: stopped after month {month}: its model failed the evaluation gates, so "
                "nothing"
                " was proposed (that is the gate working). A larger --n trains a better model."
            )
            return 0
        version = model["version"]
        versions.append(version)
        margins[version] = model["margins"]
        card = json.loads((Path(model["uri"][len("file://") :]) / "model.json").read_text())
        shutil.copy2(ws / f"run-{month}" / "MODEL_CARD.md", story.report / f"MODEL_CARD-{version}.md")
        shutil.copy2(ws / f"run-{month}" / "evaluation.json", story.report / f"evaluation-{version}.json")
        if (ws / f"run-{month}" / "plots").is_dir():
            shutil.copytree(
                ws / f"run-{month}" / "plots", story.report / f"plots-{version}", dirs_exist_ok=True
            )

        with _step(f"The pilot PR for {version} (`edgeops propose --ring pilot`), as its reviewer sees it"):
            proposal = propose(story.workspace(), ring="pilot", bundle_uri=model["uri"], private_key=key)
            story.show_pr(proposal.pr)
        with _step(f"Approve and merge #{proposal.pr.number}; Argo CD syncs the pilot ring"):
            merged = story.merge(proposal.pr)
            story.sync(
                "pilot",
                f"pilot-{version}",
                public_key=key.public_key(),
                interface=card["interface"],
                expect=version,
            )
            story.register_devices()
        with _step(f"Soak (simulated: {soak:g} h pass on an injected clock); pilot nodes report predictions"):
            feed, truth = _windows(snapshot, tcfg)
            thresholds = np.array([card["thresholds"][m] for m in card["labels"]], dtype=np.float32)
            count = story.report_predictions(
                "pilot", version, merged, soak, feed, truth, thresholds, list(card["labels"]), seed + month
            )
            where = (
                "written to PostgreSQL (table predictions)"
                if story.dsn
                else "kept in-process (no PostgreSQL)"
            )
            _say(f"   {count} predictions from the pilot nodes' own models, {where}")
        with _step(f"`edgeops promote --from pilot` at merge + {soak + 1:g} h"):
            clock = merged + timedelta(hours=soak + 1)
            early = promote(
                story.workspace(merged + timedelta(hours=1)),
                from_ring="pilot",
                dsn=story.dsn,
                dry_run=True,
                telemetry_reader=story.telemetry_reader(),
                devices=story.devices(),
            )
            failed = ", ".join(g.name for g in early.gates if not g.passed)
            _say(f"   (an hour after the merge it would be refused: {failed})")
            decision = _promote(story, clock)
            if decision.pr is None:
                _say(f"\nedgeops demo: {version} was not promoted ({decision.note}); the story stops here.")
                return 0
            story.show_pr(decision.pr, lines=12)
        with _step(f"Approve and merge #{decision.pr.number}; Argo CD syncs the fleet ring"):
            merged = story.merge(decision.pr)
            wave = decision.percent if decision.percent is not None and decision.percent < 100 else None
            phase = story.sync(
                "fleet",
                f"fleet-{version}" + (f"@{wave:g}" if wave is not None else ""),
                public_key=key.public_key(),
                interface=card["interface"],
                expect=version,
            )
        # The fleet in waves (edgeops.yaml rings.fleet.waves): each wave soaks, its own nodes report, and
        # `edgeops promote` opens the next wave's one-line PR when the wave passes its gates.
        wave_soak = cfg.rings[cfg.last_ring].wave_soak_hours
        while phase.percent is not None and phase.percent < 100:
            with _step(
                f"Wave {phase.percent:g}% soaks ({wave_soak:g} h, simulated); its {phase.in_wave} node(s) "
                "report; `edgeops promote --from pilot` opens the next wave"
            ):
                count = story.report_predictions(
                    "fleet", version, merged, wave_soak, feed, truth, thresholds, list(card["labels"]),
                    seed + month + int(phase.percent),
                )  # fmt: skip
                _say(f"   {count} predictions from the wave's nodes")
                decision = _promote(story, merged + timedelta(hours=wave_soak + 1))
                if decision.pr is None:
                    _say(
                        f"\nedgeops demo: the next wave of {version} was refused ({decision.note}); stopping."
                    )
                    return 0
                story.show_pr(decision.pr, lines=6)
            with _step(f"Approve and merge #{decision.pr.number}; Argo CD syncs the fleet ring"):
                merged = story.merge(decision.pr)
                phase = story.sync(
                    "fleet",
                    f"fleet-{version}@{decision.percent:g}",
                    public_key=key.public_key(),
                    interface=card["interface"],
                    expect=version,
                )

    with _step(
        f"Roll the fleet back: `edgeops rollback --ring fleet` returns it to {versions[0]} (the release's "
        f"`previous`) and records {versions[-1]} as revoked"
    ):
        back = rollback(story.workspace(), ring="fleet", reason="demo: the on-call engineer rolls back")
        _say(
            f"   {back.current} → {back.target}"
            + (f" (reverts {back.reverted[:12]})" if back.reverted else " (writes the previous release)")
        )
        story.show_pr(back.pr, lines=6)
        story.merge(back.pr)
        report = story.sync(
            "fleet",
            f"rollback-{versions[0]}",
            public_key=key.public_key(),
            interface=card["interface"],
            expect=versions[0],
        )
        _say(
            f"   served from each node's cache: {report.store_reads} store reads, median swap "
            f"{report.swap_median_seconds * 1000:.1f} ms"
        )

    story.write_report(cfg)
    total = time.monotonic() - started
    summary = {
        "seconds": round(total, 1),
        "versions": versions,
        "prs": [p.number for p in story.prs],
        "telemetry": "postgresql" if story.dsn else "in-process",
        "final_versions": story.fleet.versions() if story.fleet else {},
        "gate_margins": margins,
        # The kernel set the models trained with, as their run.json records it.
        "cpu_capability": json.loads((ws / "run-1" / "run.json").read_text())["source"]["cpu_capability"],
    }
    (story.report / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _say(
        f"\nedgeops demo: finished in {total:.1f}s. Two models ({', '.join(versions)}), "
        f"{len(story.prs)} pull requests, {len(story.phases)} rollouts; every simulated node ended each "
        "phase on the version its ring pins for its wave."
    )
    _say(f"Report: {story.report} (model cards, PR bodies, evaluations, plots, git-log.txt, fleet.json).")
    _say(
        "Simulated, and only that: the nodes (folders in one process), Argo CD's sync, the passing of the "
        "soak "
        "time, and which predictions operators validate."
    )
    return 0
