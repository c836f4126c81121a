"""sha256 of model files and of whole model folders.

A sentence-transformers model is a folder: weights, but also the tokenizer, its
vocabulary and configs, any of which changes what the model computes. Hashing only the
weights let a swapped tokenizer pass as the verified encoder, so a folder's identity is
the digest of every file in it: the ``sha256sum`` line of each file (``<hex>  <relative
path>``), in sorted path order, hashed once more. The same number comes out of::

    cd FOLDER && find -L . -type f -printf '%P\\n' | LC_ALL=C sort \\
        | xargs -d '\\n' sha256sum | sha256sum

(``agentflow models hash FOLDER`` prints it too). Symbolic links are followed, because a
Hugging Face snapshot folder is made of links to its blobs; what counts is the content
a loader would read under each name.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path

__all__ = ["folder_digest", "folder_manifest", "manifest_digest", "sha256_file"]

_hashed: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    """sha256 of a file, streamed; remembered per process for an unchanged (size, mtime),
    so a second load in the same process does not hash 250 MB again."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _hashed:
            return _hashed[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    with _lock:
        _hashed[key] = digest.hexdigest()
    return _hashed[key]


def folder_manifest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (links followed), by POSIX relative path."""
    manifest: dict[str, str] = {}
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in names:
            path = Path(root) / name
            if path.is_file():  # a dangling link or a socket is no file a loader reads
                manifest[path.relative_to(folder).as_posix()] = sha256_file(path)
    return manifest


def manifest_digest(manifest: Mapping[str, str]) -> str:
    """The folder digest of a manifest: sha256 of its ``sha256sum`` lines in path order."""
    lines = "".join(f"{manifest[rel]}  {rel}\n" for rel in sorted(manifest))
    return hashlib.sha256(lines.encode()).hexdigest()


def folder_digest(folder: Path) -> str:
    """The digest of every file in ``folder`` (see the module docstring)."""
    return manifest_digest(folder_manifest(folder))
