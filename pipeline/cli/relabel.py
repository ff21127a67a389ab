"""The fix-loop command: apply a reviewed fix list (from `transfer audit --fix-list`) to the photo folders."""

from __future__ import annotations

import click

from .common import emit, json_option


@click.command()
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.argument("fix_list", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Validate the list and print the moves without making them.")
@json_option
def relabel(data_dir: str, fix_list: str, dry_run: bool, as_json: bool) -> None:
    """Move the photos of a reviewed FIX_LIST between the class folders of DATA_DIR (or into _removed/)."""
    from ..audit.fixes import apply_fixes

    emit(apply_fixes(data_dir, fix_list, dry_run), as_json, _relabel_text)


def _relabel_text(r: dict) -> str:
    verb = "would move" if r["dry_run"] else "moved"
    lines = [f"{verb} {m['path']} -> {m['to']}" for m in r["moved"]]
    lines.append(f"{len(r['moved'])} file(s) {verb} in {r['data_dir']}"
                 + (" (dry run: nothing changed)" if r["dry_run"] else
                    f"; `transfer extract {r['data_dir']}` follows the moves without computing anything"))
    return "\n".join(lines)
