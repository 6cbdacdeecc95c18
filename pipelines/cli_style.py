"""How the ``mtssl-data`` help screens look (apart from ``progress``: build workers never import typer)."""

from __future__ import annotations

from typer.core import TyperCommand, TyperGroup


class _PlainFlags:
    """Help screens without a ``<bool>`` type beside flags (``--help``, ``--overwrite``): they take no value."""

    def get_params(self, ctx):  # type: ignore[no-untyped-def]
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class HelpCommand(_PlainFlags, TyperCommand):
    """The command class of every ``mtssl-data`` command."""


class HelpGroup(_PlainFlags, TyperGroup):
    """The group class of ``mtssl-data`` and ``mtssl-data build``."""
