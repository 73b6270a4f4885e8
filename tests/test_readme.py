"""The shell blocks the docs mark as runnable run as written (README.md, docs/*.md).

A block is runnable when the line before its opening fence is ``<!-- runnable … -->``. It runs in bash
with ``set -euo pipefail`` in the repository root, with the virtualenv's ``edgeops`` on PATH, as a user
who ran ``make test`` would.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EDGEOPS, REPO

_BLOCK = re.compile(r"<!-- runnable[^>]*-->\n```(?:sh|bash)\n(.*?)```", re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for i, match in enumerate(_BLOCK.finditer(doc.read_text())):
            found.append((f"{doc.relative_to(REPO)}#{i + 1}", match.group(1)))
    return found


def test_the_readme_marks_a_runnable_block() -> None:
    assert any(name.startswith("README.md") for name, _ in _blocks())


@pytest.mark.parametrize(("name", "script"), _blocks(), ids=[name for name, _ in _blocks()])
def test_runnable_block_runs_as_written(name: str, script: str) -> None:
    env = {**os.environ, "PATH": f"{Path(EDGEOPS).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("EDGEOPS_CONFIG", None)
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{name} failed:\n{script}\n--- stdout\n{result.stdout[-2000:]}\n--- stderr\n{result.stderr[-2000:]}"
    )
