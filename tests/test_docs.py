"""The docs stay true to the code: the architecture names every package of tools/ and every CLI module."""

from __future__ import annotations

import re

from tests.conftest import REPO


def test_architecture_names_who_runs_each_package_and_every_cli_module() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    packages = sorted(p.name for p in (REPO / "tools").iterdir() if (p / "__init__.py").is_file())
    assert packages == ["artifacts", "cli", "core", "edge", "gitops", "kits"]
    for name in packages:
        assert f"`tools/{name}/`" in text, name
    commands = sorted(p.name for p in (REPO / "tools" / "cli").glob("[a-z]*.py"))
    assert len(commands) >= 9
    for name in commands:
        assert f"`{name}`" in text, name


def test_every_doc_linked_from_the_readme_exists() -> None:
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)]+)\)", readme)
    assert links, "the README links its docs"
    for link in links:
        assert (REPO / link).is_file(), link


def test_the_node_runbook_covers_every_failure_reason_of_the_updater() -> None:
    from tools.edge.updater import FAILURE_REASONS

    text = (REPO / "docs" / "runbooks.md").read_text()
    table = text[text.index("| reason | meaning | what to do |") :].split("\n\n")[0]
    listed = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert sorted(listed) == sorted(FAILURE_REASONS)
