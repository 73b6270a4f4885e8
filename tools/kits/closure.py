"""The edge closure: the distributions the model-updater's image installs, found from installed metadata.

    python -m tools.kits.closure                       # the base dependencies' closure, with sizes
    python -m tools.kits.closure --requirement pydantic --requirement PyGithub   # any set, e.g. the old base
    python -m tools.kits.closure --venv DIR            # a venv with that closure and this checkout's tools/

The base dependencies of ``pyproject.toml`` are what a node needs; their closure is what pip resolves for
``pip install .`` in ``tools/edge/Dockerfile``. This module walks the same graph from the metadata of the
installed distributions (``Requires-Dist``, environment markers evaluated, extras not taken), so the closure
and its size are known without a network or a Docker daemon. ``--venv`` builds a fresh virtual environment
(no pip, no system site-packages) whose site-packages links exactly those distributions and ``tools/``:
tests/test_closure.py runs the updater there, which proves the edge runs on the base set alone.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker  # pip's own marker rules; onnxruntime needs packaging

from tools.core.errors import EdgeopsError

__all__ = ["Closure", "base_requirements", "closure", "make_venv"]

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
PROJECT = "edgeops"
TOOLS = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    """PEP 503 normalised name: ``PyGithub`` and ``pygithub``, ``ruamel.yaml`` and ``ruamel-yaml`` match."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str | None:
    """The distribution a ``Requires-Dist`` line names when it applies here without extras; else None."""
    text, _, marker = spec.partition(";")
    if marker.strip():
        # A requirement behind `extra == ...` never applies: no extras are installed on a node.
        if "extra" in marker:
            return None
        if not Marker(marker.strip()).evaluate():
            return None
    match = _NAME.match(text)
    return canonical(match.group(1)) if match else None


def base_requirements(project: str = PROJECT) -> list[str]:
    """The project's ``dependencies`` (no extras), read from its installed metadata."""
    try:
        requires = metadata.requires(project) or []
    except metadata.PackageNotFoundError:
        raise EdgeopsError(f"{project} is not installed here: run `make setup` first") from None
    return sorted({n for n in map(_requirement_name, requires) if n})


@dataclass(frozen=True)
class Closure:
    distributions: dict[str, metadata.Distribution]  # canonical name -> installed distribution

    def names(self) -> list[str]:
        return sorted(self.distributions)

    def files(self) -> list[Path]:
        """Every installed file of the closure (from each RECORD), scripts outside site-packages excluded."""
        out: list[Path] = []
        for dist in self.distributions.values():
            for entry in dist.files or []:
                if entry.parts and entry.parts[0] == "..":
                    continue
                out.append(Path(str(dist.locate_file(entry))))
        return out

    def size(self) -> int:
        """Bytes on disk of the closure's installed files."""
        return sum(p.stat().st_size for p in self.files() if p.is_file())


def closure(requirements: Iterable[str]) -> Closure:
    """The installed distributions ``requirements`` pull in, transitively; a missing one is an error."""
    found: dict[str, metadata.Distribution] = {}
    todo = [canonical(r) for r in requirements]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise EdgeopsError(f"{name} is required but not installed here: run `make setup` first") from None
        found[name] = dist
        todo.extend(n for n in map(_requirement_name, dist.requires or []) if n and n not in found)
    return Closure(found)


def make_venv(folder: Path, dists: Closure) -> Path:
    """A virtual environment at ``folder`` with exactly ``dists`` and this checkout's ``tools`` package.

    ``python -m venv --without-pip`` (so not even pip is there), then each distribution's top-level files
    (packages, modules, ``.dist-info``, shared-library folders such as ``numpy.libs``) are linked into its
    site-packages. Returns the venv's python.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    site = Path(purelib)
    tops: set[Path] = set()
    for dist in dists.distributions.values():
        for entry in dist.files or []:
            if entry.parts and entry.parts[0] != "..":
                tops.add(Path(str(dist.locate_file(entry.parts[0]))))
    for top in sorted(tops):
        if top.exists() and not (site / top.name).exists():
            (site / top.name).symlink_to(top)
    (site / "tools").symlink_to(TOOLS)
    return python


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.kits.closure", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--requirement", "-r", action="append", metavar="NAME",
        help="a distribution to start from (repeatable; default: the project's base dependencies)",
    )  # fmt: skip
    parser.add_argument("--venv", metavar="DIR", type=Path, help="also build a venv with the closure there")
    args = parser.parse_args(argv)
    try:
        dists = closure(args.requirement or base_requirements())
        for name in dists.names():
            dist = dists.distributions[name]
            size = Closure({name: dist}).size()
            print(f"{name:<28} {dist.version:<14} {_mib(size):>10}")
        print(f"{len(dists.distributions)} distributions, {_mib(dists.size())} installed")
        if args.venv:
            python = make_venv(args.venv, dists)
            print(f"venv: {python}")
    except EdgeopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
