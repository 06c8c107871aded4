"""Old option spellings, accepted for one release with a deprecation message on stderr.

A verb that renamed an option registers the old spelling once, where the verb is added to
its Typer app::

    app.command("predict", cls=renamed_options({"--checkpoint": "--model"}))(predict)

The old spelling is no option of the command (``--help`` shows only the new one, and an
epilog lists the old ones). Before Click parses the command line, every old spelling is
replaced by the new one and ``warning: --checkpoint is deprecated; use --model (accepted
until the next release)`` goes to stderr; the value is then checked by the new option (its
type, minimum and choices) and the command code sees one parameter. ``positional=
"--manifest"`` does the same for a value once given as a positional argument
(``medfleet data validate M`` -> ``--manifest M``).

Typer 0.20 has no per-spelling deprecation (Click 8.2+ can mark a whole option deprecated,
not one of its names, and Typer's ``Option`` does not pass that through), hence this class.

Example:
    >>> translate_args(["--resamples", "200", "--seed=1"], {"--resamples": "--n-resamples"})
    (['--n-resamples', '200', '--seed=1'], ['--resamples is deprecated; use --n-resamples'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import click
from typer.core import TyperCommand

REMOVAL = "accepted until the next release"


def translate_args(
    args: Sequence[str],
    renamed: Mapping[str, str],
    *,
    positional: str | None = None,
    value_options: frozenset[str] = frozenset(),
) -> tuple[list[str], list[str]]:
    """Command-line tokens with old option spellings replaced, and one notice per old spelling.

    Args:
        args: The tokens after the verb.
        renamed: Old spelling -> new spelling (``--resamples`` -> ``--n-resamples``).
        positional: New option that takes a value once given as a positional argument, or
            ``None`` when the command takes no such value.
        value_options: Spellings of the options that take a value (their next token is a
            value, never a positional argument).

    Returns:
        The translated tokens and the deprecation notices (without ``warning:``).

    Example:
        >>> translate_args(["-m", "x.yaml", "--real=y"], {"--real": "--manifest"})
        (['-m', 'x.yaml', '--manifest=y'], ['--real is deprecated; use --manifest'])
        >>> translate_args(["m.yaml", "--format", "json"], {}, positional="--manifest",
        ...                value_options=frozenset({"--format"}))[0]
        ['--manifest', 'm.yaml', '--format', 'json']
    """
    out: list[str] = []
    notices: list[str] = []
    expect_value = False
    only_positional = False
    for token in args:
        if expect_value:
            out.append(token)
            expect_value = False
            continue
        if not only_positional and token == "--":
            only_positional = True
            if positional is None:
                out.append(token)
            continue
        if not only_positional and token.startswith("-") and token != "-":
            name, sep, value = token.partition("=")
            if name in renamed:
                notice = f"{name} is deprecated; use {renamed[name]}"
                if notice not in notices:
                    notices.append(notice)
                name = renamed[name]
            out.append(name + sep + value)
            expect_value = not sep and name in value_options
            continue
        if positional is None:
            out.append(token)
            continue
        name = positional.lstrip("-")
        notice = f"a positional {name} is deprecated; use {positional} {name.upper()}"
        if notice not in notices:
            notices.append(notice)
        out.extend([positional, token])
    return out, notices


class RenamedOptionsCommand(TyperCommand):
    """A Typer command that still accepts the old spellings of its renamed options.

    Subclasses made by :func:`renamed_options` set :attr:`renamed` and :attr:`positional`.
    """

    renamed: ClassVar[Mapping[str, str]] = {}
    positional: ClassVar[str | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build the command; its help epilog lists the old spellings."""
        super().__init__(*args, **kwargs)
        if self.epilog is None and (self.renamed or self.positional):
            old = [f"{o} (now {n})" for o, n in self.renamed.items()]
            if self.positional:
                name = self.positional.lstrip("-")
                old.append(f"a positional {name} (now {self.positional} {name.upper()})")
            listed = ", ".join(old)
            self.epilog = f"Deprecated spellings, accepted until the next release: {listed}."

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Replace old spellings (one notice each on stderr), then parse as usual."""
        if self.renamed or self.positional:
            args, notices = translate_args(
                args,
                self.renamed,
                positional=self.positional,
                value_options=self._value_options(),
            )
            if self.positional:
                self._refuse_twice(args)
            if not ctx.resilient_parsing:
                for notice in notices:
                    click.echo(f"warning: {notice} ({REMOVAL})", err=True)
        return super().parse_args(ctx, args)

    def _value_options(self) -> frozenset[str]:
        names: set[str] = set()
        for param in self.params:
            if isinstance(param, click.Option) and not (param.is_flag or param.count):
                names.update(param.opts)
        return frozenset(names)

    def _refuse_twice(self, args: list[str]) -> None:
        given = [a for a in args if a.partition("=")[0] == self.positional]
        option = next(p for p in self.params if self.positional in getattr(p, "opts", ()))
        shorts = [o for o in option.opts if not o.startswith("--")]
        given += [a for a in args if a in shorts]
        if len(given) > 1:
            raise click.UsageError(f"give {self.positional} once")


def renamed_options(
    renamed: Mapping[str, str] | None = None, *, positional: str | None = None
) -> type[RenamedOptionsCommand]:
    """The command class for ``app.command(cls=...)`` that accepts these old spellings.

    Args:
        renamed: Old spelling -> new spelling of each renamed option.
        positional: The option a value once given as a positional argument now goes to.

    Returns:
        A :class:`RenamedOptionsCommand` subclass.

    Example:
        >>> cls = renamed_options({"--resamples": "--n-resamples"})
        >>> cls.renamed["--resamples"]
        '--n-resamples'
    """
    attributes = {"renamed": dict(renamed or {}), "positional": positional}
    return type("RenamedOptionsCommand", (RenamedOptionsCommand,), attributes)


def old_spellings(command: click.Command) -> dict[str, str]:
    """Old spelling -> new spelling of every renamed option of ``command`` (empty if none).

    Example:
        >>> old_spellings(click.Command("x"))
        {}
    """
    if isinstance(command, RenamedOptionsCommand):
        return dict(command.renamed)
    return {}
