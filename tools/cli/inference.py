"""``edgeops inference serve``: the reference inference service (docs/inference-contract.md). Its flags live
beside the service in ``tools.edge.inference`` (``python -m tools.edge.inference serve`` is the same command);
this module mounts them. It imports only the edge closure, so it runs where only the base dependencies are
installed."""

from __future__ import annotations

import argparse
from typing import Any

from tools.cli._common import Formatter
from tools.edge.inference import add_serve_arguments, serve_from_args


def cmd_serve(args: argparse.Namespace) -> int:
    return serve_from_args(args)


def register(sub: Any) -> None:
    inference = sub.add_parser("inference", help="the reference inference service (one per node)")
    inference_sub = inference.add_subparsers(dest="inference_command", metavar="ACTION", required=True)
    serve = inference_sub.add_parser(
        "serve",
        help="serve <root>/current/model.onnx over HTTP and follow the updater's swaps",
        description=(
            "Load the model <root>/current names in ONNX Runtime and serve POST /predict (every answer\n"
            "carries model_version), GET /healthz and GET /metrics. Watch `current` every --poll-interval\n"
            "seconds; a new version is loaded and golden-checked before it replaces the old one, and a\n"
            "failed load keeps the old one. POST /reload (the updater's --reload-url) means: look now."
        ),
        formatter_class=Formatter,
    )
    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)
