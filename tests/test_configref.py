"""docs/configuration.md is generated from the typed config and stays current; every key is documented."""

from __future__ import annotations

import pytest
from pydantic import Field

from tests.conftest import REPO
from tools.core.config import EdgeopsConfig
from tools.core.configref import render_reference
from tools.core.typedyaml import Strict


def test_the_committed_reference_is_current() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == render_reference(), "run: edgeops config reference > docs/configuration.md"


def test_every_key_of_edgeops_yaml_is_in_the_reference() -> None:
    text = render_reference()
    for name in EdgeopsConfig.model_fields:
        assert f"| `{name}` |" in text
    for path in (
        "rings.<ring>.soak_hours",
        "gates.telemetry.max_p95_latency_ms",
        "forge.kind",
        "store.bundles",
    ):
        assert f"| `{path}` |" in text
    assert "| `gates.evaluation.min_subset_accuracy` | float | `0.9` | ≥ 0.0, ≤ 1.0 |" in text


def test_an_undocumented_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Sneaky(Strict):
        documented: int = Field(default=1, description="yes")
        undocumented: int = 2

    from tools.core import configref

    monkeypatch.setattr(configref, "EdgeopsConfig", Sneaky)
    with pytest.raises(ValueError, match=r"Sneaky\.undocumented has no description"):
        configref.render_reference()
