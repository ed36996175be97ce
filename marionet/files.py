"""Writing outputs atomically: a hidden temporary beside the target, renamed onto it when complete;
reading a safetensors file with a one-line error.

A failed or interrupted write leaves nothing at the target and never replaces what was there.

    with Staged(path) as tmp:            # a file; Staged(path, directory=True) for a folder
        write_something(tmp)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

from marionet.errors import MarionetError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Staged:
    """A temporary file (or folder) ``tmp`` beside ``path``; ``publish()`` renames it onto ``path``,
    ``discard()`` removes it. As a context manager: publish on success, discard on any exception.

    An existing folder at ``path`` is replaced by a staged folder (moved aside, then deleted); a
    caller that must protect a folder checks it before publishing."""

    def __init__(self, path, directory: bool = False):
        self.path = Path(path)
        self.directory = directory
        prefix, suffix = f".{self.path.name}.", ".tmp"
        # folders made for the target go again if it is discarded
        self.made = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if directory:
                self.tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=self.path.parent))
                os.chmod(self.tmp, 0o777 & ~_umask())  # mkdtemp makes private folders
            else:
                fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=self.path.parent)
                os.close(fd)
                self.tmp = Path(tmp)
                os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files
        except OSError as e:
            raise MarionetError(f"{self.path}: cannot write here ({e.strerror or e})") from None
        self.done = False

    def publish(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            if self.directory and self.path.is_dir() and not self.path.is_symlink():
                # A folder cannot be renamed over a non-empty one: move the old one aside first.
                old = self.path.parent / f".{self.path.name}.{secrets.token_hex(4)}.old"
                os.replace(self.path, old)
                try:
                    os.replace(self.tmp, self.path)
                except OSError:
                    os.replace(old, self.path)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.tmp, self.path)
        except OSError as e:
            self._remove()
            raise MarionetError(f"{self.path}: cannot write here ({e.strerror or e})") from None

    def discard(self) -> None:
        """Remove the temporary, and the folders made for it; never raises."""
        if not self.done:
            self.done = True
            self._remove()
            for folder in self.made:
                try:
                    folder.rmdir()
                except OSError:  # not empty, or already gone
                    break

    def _remove(self) -> None:
        try:
            if self.tmp.is_dir():
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                self.tmp.unlink(missing_ok=True)
        except OSError:  # e.g. its folder was removed meanwhile: nothing left to clean
            pass

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.publish()
        else:
            self.discard()


def atomic_write(path, write) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it onto ``path``."""
    with Staged(path) as tmp:
        write(tmp)


def atomic_write_text(path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def check_writable(path) -> None:
    """MarionetError unless ``path`` could be created: its nearest existing ancestor is a writable folder.
    Checked before long work, so that an unwritable output fails at once; nothing is created."""
    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise MarionetError(f"{path}: cannot write here ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MarionetError(f"{path}: cannot write here ({parent} is not writable)")


def read_safetensors(path) -> tuple[dict, dict[str, str]]:
    """(tensors, metadata) of a safetensors file (tensors only: nothing in it can run); a one-line
    MarionetError if it is missing or corrupt."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MarionetError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError) as e:
        raise MarionetError(f"{path}: corrupt safetensors file ({str(e).splitlines()[0][:150]})") from None
