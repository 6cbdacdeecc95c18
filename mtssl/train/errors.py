"""Errors the trainer reports as one line (no torch import, so the CLI can catch them cheaply)."""


class SaveError(OSError):
    """A checkpoint or trunk that could not be written (full disk, permissions): nothing half-written kept."""
