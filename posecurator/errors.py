"""Errors shown to users as one line: the file (and line or joint) and what is wrong."""

from __future__ import annotations

import os


class PoseCuratorError(Exception):
    """Base class of every error posecurator raises on purpose (the CLI prints it as one line)."""


class DataError(PoseCuratorError, ValueError):
    """Bad input data: names the file, and the line or joint where that applies."""

    def __init__(self, path: str | os.PathLike | None, message: str, *, line: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.message = message
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class MappingError(DataError):
    """A skeleton cannot be mapped to the target layout (lists the source joint names)."""
