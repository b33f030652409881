"""User-facing errors.

Every problem caused by what the user handed us (a file, a value, a model) raises a subclass of
:class:`AfterError` whose message names the file or value and says what was expected. The CLI turns
these into one clear line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class AfterError(Exception):
    """Base class of every error meant to be read by a user."""


class BadInputError(AfterError, ValueError):
    """A file or value the user gave cannot be used."""


class AudioFileError(BadInputError):
    """An audio file cannot be read, or holds unusable audio (empty, NaN, ...)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MidiFileError(BadInputError):
    """A MIDI file cannot be read, or holds no usable notes."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelFileError(AfterError):
    """A model, checkpoint or exported file is missing, of the wrong kind, or tampered with."""


class DatasetError(AfterError):
    """A dataset folder is missing, of an unknown format version, or lacks what a job needs."""
