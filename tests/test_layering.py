"""The delivery side never imports torch (DESIGN.md): it runs on CPU runners and on edge nodes.

Two checks: no module in tools/ imports torch, training or pipelines at module level (read from the
source), and importing every tools module, then running delivery-side commands, leaves torch unloaded
(checked in a fresh interpreter).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN_ROOTS = {"torch", "training", "pipelines", "pickle"}


def module_level_imports(tree: ast.Module) -> set[str]:
    roots: set[str] = set()
    for node in tree.body:  # only top-level statements: lazy imports inside CLI handlers are allowed
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_tools_modules_do_not_import_torch_training_or_pipelines_at_module_level() -> None:
    offenders = {}
    for path in sorted((REPO / "tools").rglob("*.py")):
        bad = module_level_imports(ast.parse(path.read_text(), str(path))) & FORBIDDEN_ROOTS
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert offenders == {}


def test_no_module_anywhere_imports_torch_inside_tools_at_runtime() -> None:
    code = (
        "import importlib, pkgutil, sys, tools\n"
        "for m in pkgutil.walk_packages(tools.__path__, 'tools.'):\n"
        "    importlib.import_module(m.name)\n"
        "from tools.cli import main\n"
        "assert main(['config', 'check']) == 0\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'pipelines'))\n"
        "print('LOADED', loaded)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "LOADED []" in result.stdout


def test_importing_every_tools_module_loads_neither_torch_nor_the_training_side() -> None:
    """Each delivery-side module on its own (no CLI handler run): not even training's light modules load."""
    code = (
        "import importlib, pkgutil, sys, tools\n"
        "for m in pkgutil.walk_packages(tools.__path__, 'tools.'):\n"
        "    importlib.import_module(m.name)\n"
        "loaded = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'training', 'pipelines'))\n"
        "print('LOADED', loaded)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "LOADED []" in result.stdout


LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_the_import_contracts_hold() -> None:
    result = subprocess.run([str(LINT_IMPORTS)], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 5 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("tools/edge/updater.py", "import tools.core.config", "the edge closure"),
        ("tools/artifacts/bundle.py", "import github", "the edge closure"),
        ("tools/gitops/policy.py", "import tools.edge.updater", "tools: cli above kits"),
        ("tools/core/store.py", "import tools.artifacts.bundle", "tools: cli above kits"),
        ("tools/gitops/promotion.py", "import training.config", "only the CLI (inside its handlers)"),
        ("training/evaluate.py", "import tools.gitops.promotion", "training imports only tools.core"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    """The contracts bite: a copy of the source with one forbidden import fails lint-imports, naming it."""
    for package in ("tools", "training", "pipelines"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path)
    with (tmp_path / module).open("a") as f:
        f.write(f"\n{line}  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = result.stdout[result.stdout.index("Broken contracts") :]
    assert broken in report
    assert module.removesuffix(".py").replace("/", ".") in report
