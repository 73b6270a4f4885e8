"""The docs stay true to the code: the list of unbuilt commands matches the CLI's."""

from __future__ import annotations

import re

from tests.conftest import REPO
from tools.cli import PLANNED


def test_architecture_lists_exactly_the_unbuilt_commands() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    para = text[text.index("Commands of the design that are not built yet") :].split("\n\n")[0]
    assert set(re.findall(r"`([a-z-]+)`", para)) == set(PLANNED)
    assert ("none are left" in para) == (not PLANNED)


def test_every_doc_linked_from_the_readme_exists() -> None:
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)]+)\)", readme)
    assert links, "the README links its docs"
    for link in links:
        assert (REPO / link).is_file(), link


def test_the_node_runbook_covers_every_failure_reason_of_the_updater() -> None:
    from tools.updater import FAILURE_REASONS

    text = (REPO / "docs" / "runbooks.md").read_text()
    table = text[text.index("| reason | meaning | what to do |") :].split("\n\n")[0]
    listed = re.findall(r"^\| `([a-z]+)` \|", table, flags=re.MULTILINE)
    assert sorted(listed) == sorted(FAILURE_REASONS)
