"""Job summaries of the training and promotion workflows, rendered from the files `edgeops` writes.

    python .github/scripts/summary.py train RUN_DIR/run >> "$GITHUB_STEP_SUMMARY"
    python .github/scripts/summary.py promote DECISION.json --exit-code N >> "$GITHUB_STEP_SUMMARY"

``train`` renders the run folder's ``evaluation.json`` (candidate vs the fleet model on the same test
split, and every evaluation gate), what was published (``published.json``) and the model card
(``MODEL_CARD.md``), and says so plainly when the run stopped before a file was written. ``promote``
renders the decision that ``edgeops promote --json`` printed and maps the command's exit code to the
workflow's: 1 with a decision is a refusal (the gates said no: the job stays green, the summary says why),
1 without one is an error. Standard library only, so it runs before and without the project's
virtualenv. Tested in tests/test_workflows.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "promote_summary", "train_summary"]

_METRICS = [
    ("subset_accuracy", "subset accuracy"),
    ("fp_rate", "FP rate (healthy flagged)"),
    ("fn_rate", "FN rate (failing missed)"),
    ("macro_f1", "macro F1"),
]


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _gate_rows(gates: list[dict[str, Any]]) -> list[str]:
    rows = ["| gate | threshold | value | result |", "|---|---|---|---|"]
    for g in gates:
        result = "pass" if g.get("passed") else "**FAIL**"
        rows.append(
            f"| `{_cell(g.get('name'))}` | {_number(g.get('threshold'))} | {_number(g.get('value'))} "
            f"| {result}: {_cell(g.get('detail', ''))} |"
        )
    return rows


def train_summary(run_dir: Path, *, reason: str = "") -> str:
    lines = ["## Training run", ""]
    if reason:
        lines += [f"Reason: {_cell(reason)}", ""]
    lines += [f"Run folder: `{run_dir}`", ""]
    evaluation_path = run_dir / "evaluation.json"
    if not evaluation_path.is_file():
        lines.append(
            f"No `evaluation.json` in `{run_dir}`: the run stopped before `edgeops evaluate` finished. "
            "The job log says where."
        )
        return "\n".join(lines) + "\n"
    evaluation = json.loads(evaluation_path.read_text())
    candidate = evaluation.get("candidate") or {}
    fleet = evaluation.get("fleet") or {}
    fleet_metrics = fleet.get("metrics") or {}
    fleet_name = f"fleet {fleet['version']}" if fleet.get("version") else "fleet"
    lines += [
        f"### Metrics on the {evaluation.get('split', 'test')} split ({evaluation.get('n', '?')} windows)",
        "",
        f"| metric | candidate | {fleet_name} | change |",
        "|---|---|---|---|",
    ]
    for key, label in _METRICS:
        new, old = candidate.get(key), fleet_metrics.get(key)
        change = "first release" if not fleet_metrics else "—"
        if isinstance(new, int | float) and isinstance(old, int | float):
            change = f"{new - old:+.4f}"
        lines.append(f"| {label} | {_number(new)} | {_number(old)} | {change} |")
    verdict = "all passed" if evaluation.get("passed") else "FAILED: nothing is published"
    lines += ["", f"### Evaluation gates ({verdict})", "", *_gate_rows(evaluation.get("gates") or []), ""]
    published_path = run_dir / "published.json"
    if published_path.is_file():
        published = json.loads(published_path.read_text())
        lines += [f"Published **{published['version']}** at `{published['bundle']}`.", ""]
    else:
        lines += ["Nothing published by this run.", ""]
    card_path = run_dir / "MODEL_CARD.md"
    if card_path.is_file():
        card = card_path.read_text().rstrip()
        lines += ["<details><summary>Model card</summary>", "", card, "", "</details>"]
    return "\n".join(lines) + "\n"


def promote_summary(decision_path: Path, exit_code: int) -> tuple[str, int]:
    """The summary, and the exit code the workflow step should end with."""
    try:
        decision = json.loads(decision_path.read_text())
    except (OSError, ValueError):
        decision = None
    if not isinstance(decision, dict) or "allowed" not in decision:
        text = (
            f"## Promotion\n\n`edgeops promote` failed (exit {exit_code}) before it reached a decision. "
            "The job log says why.\n"
        )
        return text, exit_code or 1
    gates = decision.get("gates") or []
    route = f"{decision.get('version') or '(no release)'} {decision.get('from')} → {decision.get('to')}"
    if not gates:
        verdict = "nothing to do"
    elif decision.get("allowed"):
        verdict = f"allowed: PR #{decision['pr']}" if decision.get("pr") else "allowed"
    else:
        verdict = "refused: no PR opened"
    lines = [f"## Promotion {_cell(route)}: {verdict}", ""]
    if decision.get("note"):
        lines += [_cell(decision["note"]), ""]
    if gates:
        lines += _gate_rows(gates)
    refused = exit_code == 1 and bool(gates) and not decision.get("allowed")
    return "\n".join(lines) + "\n", 0 if refused else exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    train = sub.add_parser("train", help="summary of a training run folder")
    train.add_argument("run_dir", type=Path)
    train.add_argument("--reason", default="")
    promote = sub.add_parser("promote", help="summary of `edgeops promote --json`")
    promote.add_argument("decision", type=Path)
    promote.add_argument("--exit-code", type=int, required=True, help="the exit code of edgeops promote")
    args = parser.parse_args(argv)
    if args.what == "train":
        sys.stdout.write(train_summary(args.run_dir, reason=args.reason))
        return 0
    text, code = promote_summary(args.decision, args.exit_code)
    sys.stdout.write(text)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
