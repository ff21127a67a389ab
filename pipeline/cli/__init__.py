"""The ``transfer`` command: thin wrappers over library functions. No TensorFlow import at top level.

Each ``pipeline/cli/<stage>.py`` holds the commands of one stage; they are registered below.
"""

from __future__ import annotations

import click

from . import audit, demo, extract, finetune, report, train
from .common import Group, show_library_warnings


@click.group(cls=Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.version_option(package_name="transfer-pipeline")
def main(debug: bool) -> None:
    """Transfer learning from ImageNet backbones with a cache of features between two stages."""
    show_library_warnings()


for command in (extract.extract, extract.info, extract.preview, train.train, train.compare, train.predict,
                train.export, finetune.finetune, audit.audit, report.report, demo.demo):
    main.add_command(command)
