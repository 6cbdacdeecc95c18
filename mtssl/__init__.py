"""mtssl: multi-task self-supervised visual learning (Doersch & Zisserman, ICCV 2017).

Importing the package is cheap (no torch): ``mtssl.load_trunk`` imports the model only when called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_trunk"]


def __getattr__(name: str) -> Any:
    if name == "load_trunk":
        from mtssl.model.loading import load_trunk

        return load_trunk
    raise AttributeError(f"module 'mtssl' has no attribute {name!r}")
