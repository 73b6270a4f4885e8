"""The training pipeline's steps, in order: the one list the local runner and the Argo rendering share.

    snapshot ──► train ──► evaluate ──► export ──► publish ──► propose

Each step is an ``edgeops`` subcommand that reads and writes the run directory (``pipelines/runner.py``
says which files); each depends on the one before it. Standard library only, so the CLI can name the
steps without loading the training side.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STEPS", "STEP_NAMES", "Step", "step"]


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    gpu: bool  # runs on a GPU node on Argo (one nvidia.com/gpu, the GPU node selector)
    transient: bool  # talks to services (PostgreSQL, S3, the forge): retried on Argo when it fails


STEPS: tuple[Step, ...] = (
    Step("snapshot", "the newest validated LDOs into a reproducible snapshot", gpu=False, transient=True),
    Step("train", "train the failure-mode model on the snapshot", gpu=True, transient=False),
    Step(
        "evaluate", "score the candidate against the fleet model; apply the gates", gpu=False, transient=False
    ),
    Step("export", "ONNX (+ TensorRT where available), parity and latency", gpu=True, transient=False),
    Step("publish", "a signed, immutable bundle in the store", gpu=False, transient=True),
    Step("propose", "the release PR for the first ring", gpu=False, transient=True),
)
STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS)


def step(name: str) -> Step:
    for s in STEPS:
        if s.name == name:
            return s
    raise KeyError(name)
