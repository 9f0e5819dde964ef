"""Option checks shared by the command-line modules (light: no library imports)."""

from __future__ import annotations

from collections.abc import Callable

import typer

__all__ = ["one_of"]


def one_of(option: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    """A typer callback accepting one of ``choices``; anything else is a usage error naming ``option``."""

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)
        return value

    return check
