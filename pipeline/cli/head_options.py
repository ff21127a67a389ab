"""The heads' own options as click options: a command with ``cls=HeadOptionsCommand`` takes every option
a head declares (see :mod:`pipeline.heads._options`), built from the heads, defaults included."""

from __future__ import annotations

import click


class HeadOptionsCommand(click.Command):
    """A command that also takes every head's options. They are read from the heads (which imports
    scikit-learn) when click first needs this command's parameters, so ``transfer --help`` stays light.
    Each such option defaults to None, meaning "the head's default", which its help shows."""

    _heads_read = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._heads_read:
            self.params.extend(head_click_options())
            self._heads_read = True
        return super().get_params(ctx)


def head_click_options() -> list[click.Option]:
    """One click option per option name declared by any head, its help naming the heads that take it."""
    from ..heads import options

    by_name: dict[str, dict] = {}
    for head, declared in options().items():
        for o in declared:
            by_name.setdefault(o.name, {})[head] = o
    return [_click_option(name, takers) for name, takers in by_name.items()]


def _click_option(name: str, takers: dict) -> click.Option:
    first = next(iter(takers.values()))
    defaults = {head: _shown(o.default) for head, o in takers.items() if o.default is not None}
    shown = (f" [{next(iter(defaults.values()))}]" if len(set(defaults.values())) == 1
             else "".join(f" [{head}: {d}]" for head, d in defaults.items()))
    return click.Option(["--" + name.replace("_", "-")], type=_click_type(first), default=None,
                        help=f"{', '.join(takers)}: {first.help}.{shown}")


def _click_type(o) -> click.ParamType | type:
    if o.choices:
        return click.Choice(o.choices)
    if o.folder:
        return click.Path(file_okay=False)
    if o.low is not None or o.high is not None:
        bounded = click.IntRange if o.type is int else click.FloatRange
        return bounded(o.low, o.high, max_open=o.high_open)
    return o.type


def _shown(default) -> str:
    """A default as the command line writes it: ``256``, ``4096,4096``, ``0.001``."""
    return ",".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)
