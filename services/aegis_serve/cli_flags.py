"""Command-line flags generated from the pydantic settings classes.

Each settings field becomes one flag (`max_batch_tokens` → `--max-batch-tokens`) whose help is
the field's description, its environment variable and its default, so a setting is declared
once. Flags not given stay unset (`argparse.SUPPRESS`): pydantic-settings then takes the
environment, then the default, and validates all of them the same way. A field marked
`json_schema_extra={"cli": False}` (a secret) has no flag.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

_SCALARS = (bool, int, float, str, Path)


def _members(annotation: Any) -> list[Any]:
    """The non-None members of a union (or the annotation itself), Annotated unwrapped."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return [m for a in get_args(annotation) if a is not type(None) for m in _members(a)]
    if hasattr(annotation, "__metadata__"):  # Annotated[T, ...]
        return _members(get_args(annotation)[0])
    return [annotation]


def flag_spec(field: FieldInfo) -> dict[str, Any]:
    """argparse keyword arguments for one settings field."""
    members = _members(field.annotation)
    if all(get_origin(m) is Literal for m in members):
        return {"choices": [c for m in members for c in get_args(m)]}
    if members == [bool]:
        return {"action": argparse.BooleanOptionalAction}
    if len(members) == 1 and get_origin(members[0]) is list:
        return {"type": str, "metavar": "A,B,..."}
    if len(members) == 1 and members[0] in _SCALARS:
        kind = members[0]
        return {"type": str if kind is Path else kind}
    raise TypeError(f"no flag type for {field.annotation!r}")


def _help(name: str, field: FieldInfo, env_prefix: str) -> str:
    parts = [field.description or ""]
    if field.is_required():
        parts.append("required")
    elif field.default_factory is None and field.default not in (None, "", [], ()):
        parts.append(f"default {field.default}")
    parts.append(f"env {env_prefix}{name.upper()}")
    return "; ".join(p for p in parts if p).replace("%", "%%")


def add_settings_flags(
    parser: argparse.ArgumentParser,
    settings: type[BaseSettings],
    exclude: tuple[str, ...] = (),
) -> None:
    """One flag per field of `settings` (except `exclude` and fields marked cli=False)."""
    env_prefix = settings.model_config.get("env_prefix", "")
    for name, field in settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if name in exclude or extra.get("cli") is False:
            continue
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=argparse.SUPPRESS,
            help=_help(name, field, env_prefix),
            **flag_spec(field),
        )


Command = Callable[[argparse.Namespace], int]


def run_command(
    parser: argparse.ArgumentParser, commands: Mapping[str, Command], argv: Sequence[str] | None
) -> int:
    """Parse `argv` and run the chosen sub-command (`dest="command"`); Ctrl-C exits 130."""
    ns = parser.parse_args(argv)
    try:
        return commands[ns.command](ns)
    except KeyboardInterrupt:
        return 130
