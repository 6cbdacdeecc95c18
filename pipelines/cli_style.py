"""The ``mtssl-data`` help screens and error line: the house style every mtssl program shares (``mtssl.cli_style``)."""

from mtssl.cli_style import HelpCommand, HelpGroup, complete_from, fail, make_app

__all__ = ["HelpCommand", "HelpGroup", "complete_from", "fail", "make_app"]
