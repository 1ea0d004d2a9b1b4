"""The project's own error types: every failure a user can cause says which file, line or key."""
from __future__ import annotations


class BabelflowError(Exception):
    """Base of every error babelflow raises on purpose."""


class ConfigError(BabelflowError):
    """params.yaml (or an equivalent mapping) is invalid; the message names the file and key."""


class InputError(BabelflowError):
    """A corpus or model file is malformed. Carries the path and, where known, the 1-based line."""

    def __init__(self, path: object, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class SourceUnavailableError(BabelflowError):
    """A network source could not be reached (offline, refused, timed out)."""


class IntegrityError(BabelflowError):
    """A checksum or signature did not match: a download, a checkpoint, a release file."""
