"""``edgeops fleet-sim`` and ``edgeops demo``: the fleet simulator and the end-to-end demo (development
kits; not needed to ship or run a model)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tools.cli._common import non_negative_int, positive_int
from tools.core.errors import EdgeopsError


def cmd_fleet_sim(args: argparse.Namespace) -> int:
    try:
        from tools.kits.fleetsim import main as fleetsim_main
    except ImportError as exc:  # it builds tiny ONNX models, so it needs onnx (the `training` extra)
        raise EdgeopsError(
            f"fleet-sim needs the onnx package ({exc}); install with `pip install '.[training]'`"
        ) from None

    return fleetsim_main(args.passthrough)


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(
        workspace=Path(args.workspace),
        n=args.n,
        seed=args.seed,
        config_path=args.config,
        nodes=args.nodes,
        pilot=args.pilot,
    )


def register(sub: Any) -> None:
    # fleet-sim: its own parser (python -m tools.kits.fleetsim) takes every flag, --help included.
    fleet_sim = sub.add_parser(
        "fleet-sim", help="simulate N nodes rolling out, promoting and rolling back releases", add_help=False
    )
    fleet_sim.set_defaults(handler=cmd_fleet_sim, passthrough_command=True)

    demo = sub.add_parser(
        "demo",
        help="run the main job end to end on embedded defaults (what exists so far)",
        description="Run every stage built so far in a fresh workspace; say what was and was not done.",
    )
    demo.add_argument("--workspace", default=".edgeops/demo", help="workspace folder (default .edgeops/demo)")
    demo.add_argument(
        "--n", type=positive_int, default=4000, help="synthetic LDOs per month, for two months (default 4000)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--nodes", type=positive_int, default=80, help="simulated edge nodes (default 80)")
    demo.add_argument("--pilot", type=non_negative_int, default=6, help="of which pilot nodes (default 6)")
    demo.set_defaults(handler=cmd_demo)
