"""File-system durability helpers shared by every writer that must not leave half-written state."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from tools.core.errors import EdgeopsError

__all__ = ["fsync_path", "output_folder", "replace_folder", "sha256_file", "write_atomic"]

_CHUNK = 1 << 20  # 1 MiB: large enough for hashlib's speed, small enough to stream any file


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory's fsync makes renames and new entries in it durable)."""
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str, *, tmp_prefix: str = ".", durable: bool = True) -> None:
    """Replace ``path`` with ``data`` whole or not at all: a uniquely named temporary file in the same folder
    (``<tmp_prefix><name>.<random>.tmp``, so concurrent writers never share one), fsync, rename over
    ``path``, fsync the folder.

    ``tmp_prefix`` lets a caller recognise its own leftovers (the updater's ``.tmp-``). ``durable=False``
    skips both fsyncs, for files that are cheap to make again after a power cut (caches, generated data):
    a reader still never sees half a file, but a crash may lose the newest ones.
    """
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{tmp_prefix}{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # what a plain open() gives under the usual umask; mkstemp's own is 0600
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_path(path.parent)


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes as 64 lowercase hex digits, read in 1 MiB chunks (any size, little
    memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def replace_folder(new: Path, out: Path) -> None:
    """Put the folder ``new`` at ``out`` (same parent file system): a rename when ``out`` is absent, else move
    the old one aside, rename ``new`` in and delete the old one; the parent is fsynced, so a crash leaves
    the old folder or the new one at ``out`` (at worst a ``.<name>.old-<pid>`` sibling to delete).
    ``new``'s own files must already be durable (fsynced) when it matters."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    moved = out.exists()
    if moved:
        os.replace(out, old)
    os.replace(new, out)
    fsync_path(out.parent)
    if moved:
        shutil.rmtree(old, ignore_errors=True)


def output_folder(path: Path | str, flag: str) -> Path:
    """``path``, given to an output-folder flag (``--out``), checked before anything is written to it: an
    :class:`EdgeopsError` saying what to do when it is a file, lies inside a file or is not writable. The
    folder itself is not made here (the writer makes it, so a command that fails first leaves nothing)."""
    out = Path(path)
    rule = "name a folder (it is created)"
    if out.is_symlink() and not out.exists():
        raise EdgeopsError(f"{flag} {out} is a link to nothing ({os.readlink(out)}); {rule}")
    if out.exists() and not out.is_dir():
        raise EdgeopsError(f"{flag} {out} is a file; {rule}")
    nearest = out.absolute()
    while not nearest.exists():
        nearest = nearest.parent
    if not nearest.is_dir():
        raise EdgeopsError(f"{flag} {out}: {nearest} is a file, so no folder can be made inside it; {rule}")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise EdgeopsError(
            f"{flag} {out}: this user cannot write in {nearest}; name a folder you can write in (it is made)"
        )
    return out
