"""The one exception a recipe or loader raises for an input that cannot become a sample."""

from __future__ import annotations


class Reject(Exception):
    """An input that goes to the reject list: ``reason`` is a short category, ``detail`` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Filtered(Exception):
    """A video frame the task's filter drops (not an unusable input): a counted row with its reason and stats."""

    def __init__(self, reason: str, stats: dict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stats = stats
