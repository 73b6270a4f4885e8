"""Write a copy of a training config with some values replaced, for a dispatched training run.

    .venv/bin/python .github/scripts/training_config.py training/configs/default.yaml --epochs 5 \\
        --out .edgeops/runs/123-1/training-config.yaml

train.yml's `epochs` input lands here: `edgeops pipeline run` takes a training config, not single knobs,
so the run gets a config of its own, uploaded with its artifacts. Round-trip YAML: the comments and the
key order survive, the diff against the original is the replaced lines. Only keys the config already has
can be replaced (a typo must not add an unknown key that training then rejects, or worse, ignores), and
the new value must be a positive integer like the old one. Tested in tests/test_workflows.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ruamel.yaml import YAML

__all__ = ["main", "override"]


def override(source: Path, out: Path, values: dict[str, int]) -> None:
    yaml = YAML()  # round-trip
    yaml.width = 4096  # never re-wrap a line the author wrote on one
    config = yaml.load(source.read_text())
    for key, value in values.items():
        if key not in config:
            raise SystemExit(f"{source}: has no `{key}` to replace")
        if not isinstance(config[key], int) or isinstance(config[key], bool) or value < 1:
            raise SystemExit(f"{source}: `{key}` must stay a positive integer (got {value})")
        config[key] = value
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        f.write(f"# {source} with {', '.join(f'{k}={v}' for k, v in values.items())} (train.yml dispatch)\n")
        yaml.dump(config, f)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path, help="the training config to start from")
    parser.add_argument("--epochs", type=int, required=True, help="upper bound on epochs")
    parser.add_argument("--out", type=Path, required=True, help="where to write the copy")
    args = parser.parse_args(argv)
    override(args.config, args.out, {"epochs": args.epochs})
    sys.stdout.write(f"{args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
