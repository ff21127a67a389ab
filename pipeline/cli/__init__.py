"""The ``transfer`` command: thin wrappers over library functions. No TensorFlow import at top level.

Each ``pipeline/cli/<stage>.py`` holds the commands of one stage; every click command defined in one of
:data:`STAGES` is registered, so adding a command is writing it in the module of its stage.
"""

from __future__ import annotations

import click

from . import audit, demo, extract, finetune, relabel, report, train
from .common import Group, show_library_warnings

STAGES = (extract, train, finetune, audit, relabel, report, demo)


@click.group(cls=Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.version_option(package_name="transfer-pipeline")
def main(debug: bool) -> None:
    """Transfer learning from ImageNet backbones with a cache of features between two stages."""
    show_library_warnings()


for stage in STAGES:
    for command in vars(stage).values():
        if isinstance(command, click.Command) and command.callback.__module__ == stage.__name__:
            main.add_command(command)
