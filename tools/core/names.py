"""The names the delivery contract shares, each written once: versions, interface and file digests, bundle
file names and ring names.

Every pattern is compiled with ``re.ASCII`` (``\\d`` alone accepts every Unicode digit, which ``int()`` then
reads: "v1" + ARABIC-INDIC DIGIT ONE + ".0" would parse as v11.0) and meant for ``fullmatch`` (``$`` alone
accepts a trailing newline). This module needs nothing but the standard library, so the edge (the updater,
the release and bundle readers) and ``edgeops.yaml``'s schema (:mod:`tools.core.config`) share it.
"""

from __future__ import annotations

import re

__all__ = [
    "FILE_NAME",
    "FILE_NAME_RULE",
    "INTERFACE",
    "RING_NAME",
    "RING_NAME_RULE",
    "SHA256_HEX",
    "VERSION",
    "VERSION_RE",
]

# A model version: v<major>.<minor>, no leading zeros (v2.1, v10.0).
VERSION_RE = r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)$"
VERSION = re.compile(VERSION_RE, re.ASCII)

# A file's sha256: 64 lowercase hex digits (bundle SHA256SUMS, release `files`).
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$", re.ASCII)

# A model interface (training.interface.interface_hash): sha256:<64 lowercase hex>.
INTERFACE = re.compile(r"^sha256:[0-9a-f]{64}$", re.ASCII)

# A bundle file name: a plain name that is safe as an S3 key, on every file system, in a SHA256SUMS line
# and as a file on a node. "." and ".." match the pattern: callers refuse them by name.
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$", re.ASCII)
FILE_NAME_RULE = "a plain name of letters, digits, '.', '_', '+' and '-' (no '/'), such as model.onnx"

# A ring name becomes a folder, a git branch component (release/<ring>/<version>) and a Kubernetes label
# value (context-edge.io/ring=<ring>: at most 63 characters, alphanumeric at both ends): the strictest of
# them, and short enough to leave room in branch and resource names.
RING_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,29}[a-z0-9])?$", re.ASCII)
RING_NAME_RULE = (
    "at most 31 lower-case letters, digits and '-', starting with a letter and ending with a letter or digit "
    "(such as pilot or fleet)"
)
