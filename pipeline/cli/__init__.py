"""The ``transfer`` command: thin wrappers over library functions. No TensorFlow import at top level.

Each ``pipeline/cli/<area>.py`` holds the commands of one area; they are registered below.
"""

from __future__ import annotations

import click

from .common import Group
from .audit import audit, report
from .extract import demo, extract, info
from .augment import finetune, preview
from .fixes import relabel
from . import train as stage_two


@click.group(cls=Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.version_option(package_name="transfer-pipeline")
def main(debug: bool) -> None:
    """Transfer learning from ImageNet backbones with a cache of features between two stages."""


for command in (extract, info, demo, audit, relabel, report):
    main.add_command(command)
for command in (preview, finetune):
    main.add_command(command)
for command in (stage_two.train, stage_two.compare, stage_two.predict, stage_two.export):
    main.add_command(command)
