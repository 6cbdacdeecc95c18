"""The ``mtssl-data`` help screens: the house style every mtssl program shares (``mtssl.cli_style``)."""

from mtssl.cli_style import HelpCommand, HelpGroup, make_app

__all__ = ["HelpCommand", "HelpGroup", "make_app"]
