"""The project context: the repository root and its parsed ``edgeops.yaml``, loaded once per command.

Every command that needs the repository asks for a :class:`Project` instead of finding and parsing
``edgeops.yaml`` itself; the CLI loads it at most once per invocation (``tools.cli._common.project``), and
relative paths of the config (data folders, the public key, a ring's overlay) resolve against ``root``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tools.core.config import EdgeopsConfig, RingConfig, find_config, load_config

__all__ = ["Project"]


@dataclass(frozen=True)
class Project:
    root: Path
    config_path: Path
    cfg: EdgeopsConfig

    @classmethod
    def load(cls, explicit: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Project:
        """``--config PATH``, else ``$EDGEOPS_CONFIG``, else ``edgeops.yaml`` here or in a parent."""
        path = find_config(explicit, cwd=cwd).resolve()
        return cls(path.parent, path, load_config(path))

    def path(self, relative: str | os.PathLike[str]) -> Path:
        """A path of the config, resolved against the repository root (an absolute one stays as it is)."""
        return self.root / relative

    def ring(self, name: str) -> RingConfig:
        return self.cfg.ring(name)

    @property
    def first_ring(self) -> str:
        return self.cfg.first_ring

    @property
    def last_ring(self) -> str:
        return self.cfg.last_ring

    def release_path(self, ring: str) -> str:
        """The ring's release file relative to the root, as git names it."""
        return self.cfg.release_path(ring)

    def release_file(self, ring: str) -> Path:
        """The ring's release file in this checkout."""
        return self.root / self.cfg.release_path(ring)

    @property
    def training_config_path(self) -> Path:
        return self.path(self.cfg.training_config)

    @property
    def public_key_path(self) -> Path:
        return self.path(self.cfg.signing.public_key)

    def store_uri(self, uri: str | None = None) -> str:
        """``uri``, else ``store.bundles``; a relative ``file://`` store resolves against the root."""
        store = uri or self.cfg.store.bundles
        if store.startswith("file://") and not store.startswith("file:///"):
            store = f"file://{self.root / store[len('file://') :]}"
        return store
