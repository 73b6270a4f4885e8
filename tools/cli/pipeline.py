"""``edgeops pipeline run|render|submit``: the training pipeline here (resumable), as Argo Workflows YAML
(hera), or on an Argo Server."""

from __future__ import annotations

import argparse
from typing import Any

from tools.cli._common import Formatter, add_overrides, positive_int, project
from tools.core.errors import EdgeopsError

STEPS = "snapshot, train, evaluate, export, publish, propose"  # pipelines/dag.py (checked by the runner)


def cmd_run(args: argparse.Namespace) -> int:
    from pipelines.runner import RunOptions, run_pipeline
    from tools.core.fsutil import output_folder

    run_dir = output_folder(args.run_dir, "--run-dir")
    return run_pipeline(
        RunOptions(
            run_dir=run_dir, config=args.config, training_config=args.training_config,
            overrides=tuple(args.overrides), source=args.source, data_path=args.data_path, cache=args.cache,
            limit=args.limit,
            store=args.store, ring=args.ring, nproc=args.nproc, until=args.until, only=args.only,
            force=tuple(args.force), skip_propose=args.skip_propose, echo=args.stream, log_json=args.log_json,
        )
    )  # fmt: skip


def cmd_render(args: argparse.Namespace) -> int:
    from pipelines.argo import render_files
    from tools.core.fsutil import output_folder

    out = output_folder(args.out, "--out") if args.out else project(args).root / "pipelines" / "argo"
    changed = render_files(out, check=args.check)
    if args.check:
        for path in changed:
            print(f"OUT OF DATE {path}")
        if changed:
            raise EdgeopsError(
                f"{len(changed)} rendered file(s) differ: run `edgeops pipeline render` and commit"
            )
        print(f"{out}: up to date")
        return 0
    print(f"{out}: {len(changed)} file(s) written" + "".join(f"\n  {p}" for p in changed))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from pipelines.submit import submit

    result = submit(
        server=args.server, namespace=args.namespace, cron=args.cron, run=args.run, parameters=args.param,
        verify_tls=not args.insecure_skip_verify,
    )  # fmt: skip
    for line in result.lines:
        print(line)
    return 0


def register(sub: Any) -> None:
    pipe = sub.add_parser("pipeline", help="run, render or submit the training pipeline")
    pipe_sub = pipe.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)
    prun = pipe_sub.add_parser(
        "run",
        help="run the pipeline here, resuming where it stopped",
        description=(
            f"Run the steps ({STEPS}) as edgeops subcommands on a run directory. The state file\n"
            "(RUN_DIR/pipeline-state.json) records each step's input and output hashes; run the same\n"
            "command again and steps whose inputs and outputs are unchanged are skipped, so a failed run\n"
            "resumes at the failed step. Each step's output is in RUN_DIR/logs/<step>.log.\n"
            "publish and propose need EDGEOPS_SIGNING_KEY (or _FILE); without it, stop with --until export."
        ),
        formatter_class=Formatter,
    )
    prun.add_argument(
        "--run-dir", metavar="DIR", required=True, help="the run directory (created if missing)"
    )
    prun.add_argument(
        "--source", choices=["dir", "pg+s3"], default="dir", help="where LDOs come from (default dir)"
    )
    prun.add_argument(
        "--data-path", metavar="DIR", help="dir: folder of LDO files (default: data.local_path)"
    )
    prun.add_argument(
        "--cache",
        metavar="DIR",
        help="pg+s3: the LDO object cache (default: data.cache_path); keep it across runs, outside the "
        "checkout, so that a month downloads only what is new",
    )
    prun.add_argument(
        "--limit", type=positive_int, help="newest N validated LDOs (default: data.snapshot_limit)"
    )
    prun.add_argument(
        "--config", dest="training_config", metavar="PATH",
        help="training config (default: edgeops.yaml's training_config)",
    )  # fmt: skip
    add_overrides(prun)
    prun.add_argument("--nproc", type=positive_int, default=1, help="train: DDP processes (default 1)")
    prun.add_argument("--store", metavar="URI", help="publish: bundle store (default: store.bundles)")
    prun.add_argument("--ring", help="propose: the ring to propose to (default: the first ring)")
    prun.add_argument("--until", metavar="STEP", help=f"stop after STEP ({STEPS})")
    prun.add_argument("--only", metavar="STEP", help="run just STEP (what each Argo task does)")
    prun.add_argument(
        "--force", metavar="STEP", action="append", default=[], help="run STEP even if unchanged (repeatable)"
    )
    prun.add_argument("--skip-propose", action="store_true", help="stop after publishing; open no PR")
    prun.add_argument("--stream", action="store_true", help="copy each step's output to stderr as it runs")
    prun.set_defaults(handler=cmd_run)

    prender = pipe_sub.add_parser(
        "render", help="write the Argo WorkflowTemplate and CronWorkflow YAML (hera) to pipelines/argo/"
    )
    prender.add_argument("--out", metavar="DIR", help="folder to write (default pipelines/argo)")
    prender.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when the files differ from a fresh render"
    )
    prender.set_defaults(handler=cmd_render)

    psub = pipe_sub.add_parser(
        "submit",
        help="send the WorkflowTemplate (and the CronWorkflow, or a run) to an Argo Server",
        description=(
            "Create the WorkflowTemplate, or update it when it exists (409 AlreadyExists -> PUT at the\n"
            "current resourceVersion); --cron does the same for the monthly CronWorkflow; --run submits a\n"
            "Workflow from the template now. The token comes from ARGO_TOKEN and is never logged."
        ),
        formatter_class=Formatter,
    )
    psub.add_argument("--server", metavar="URL", help="Argo Server (default: $ARGO_SERVER)")
    psub.add_argument("--namespace", metavar="NS", help="namespace (default: $ARGO_NAMESPACE, else argo)")
    psub.add_argument(
        "--template", action="store_true", help="send the WorkflowTemplate (always done; the default)"
    )
    psub.add_argument("--cron", action="store_true", help="also send the monthly CronWorkflow")
    psub.add_argument("--run", action="store_true", help="also submit a Workflow from the template now")
    psub.add_argument(
        "--param", metavar="NAME=VALUE", action="append", default=[], help="--run: a workflow parameter"
    )
    psub.add_argument("--insecure-skip-verify", action="store_true", help="do not verify the server's TLS")
    psub.set_defaults(handler=cmd_submit)
