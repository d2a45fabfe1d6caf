"""How ``--help`` shows a command: ``swarmd submit [OPTIONS] FILE``, and flags with no type.

typer marks a required argument as ``{file}`` in the usage line and gives every flag a
``<bool>`` type, though a flag takes no value. These command classes print arguments
by their upper-case names (``FILE``, optional ones as ``[FILE]``) and flags bare.
"""

from __future__ import annotations

from typing import Any

import typer.core


def _bare_flags(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", None) is None:
            param.metavar = ""  # shown as the flag's type: nothing
    return params


def _usage_pieces(command: Any, ctx: Any) -> list[str]:
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if param.param_type_name == "argument":
            name = str(param.metavar or param.name).upper()
            pieces.append(name if param.required else f"[{name}]")
    return pieces


class SwarmdCommand(typer.core.TyperCommand):
    """A command whose help shows ``FILE`` for an argument and nothing for a flag's type."""

    def get_params(self, ctx: Any) -> Any:
        return _bare_flags(list(super().get_params(ctx)))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _usage_pieces(self, ctx)


class SwarmdGroup(typer.core.TyperGroup):
    """The ``swarmd`` group, with its ``--version`` and ``--help`` shown as bare flags."""

    def get_params(self, ctx: Any) -> Any:
        return _bare_flags(list(super().get_params(ctx)))
