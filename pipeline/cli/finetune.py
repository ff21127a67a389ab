"""Stage three command: finetune."""

from __future__ import annotations

import click

from .common import emit, json_option, runs_root_option, seed_option, stream_option, weights_dir_option


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="Dataset folder [default: the root recorded in the feature file].")
@click.option("--unfreeze", "unfreeze_top", type=click.IntRange(min=0), default=None,
              help="Train the top N layers of the base [default: its top third].")
@click.option("--unfreeze-from", default=None, help="Train every base layer from this one, e.g. block5_conv1 (VGG16).")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=1e-5, show_default=True, type=float, help="Adam learning rate.")
@click.option("--augment", "policy", default="default", show_default=True, help="Augmentation policy, or none.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--patience", default=3, show_default=True, type=click.IntRange(min=0), help="Epochs without progress on val.")
@click.option("--monitor", default="val_accuracy", show_default=True, type=click.Choice(["val_accuracy", "val_loss"]),
              help="What early stopping and the choice of the kept epoch look at.")
@seed_option()
@click.option("--run-dir", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Where to write the run [default: runs/<dataset>-<cache>-dense-finetuned-<time>].")
@runs_root_option
@weights_dir_option
@stream_option
@click.option("--dry-run", is_flag=True, help="Print the layer table and parameter counts; train nothing.")
@json_option
def finetune(run_dir: str, data_dir: str | None, unfreeze_top: int | None, unfreeze_from: str | None, epochs: int,
             lr: float, policy: str, batch_size: int, patience: int, monitor: str, seed: int, out_dir: str | None,
             runs_root: str, weights_dir: str | None, stream: bool | None, dry_run: bool, as_json: bool) -> None:
    """Stage three: fine-tune the top of the base with the dense head of RUN_DIR, end to end on the images."""
    from ..finetuning import finetune as run

    result = run(run_dir, data_dir=data_dir, unfreeze_top=unfreeze_top, unfreeze_from=unfreeze_from, epochs=epochs,
                 lr=lr, augment=policy, batch_size=batch_size, patience=patience, monitor=monitor, seed=seed,
                 out_dir=out_dir, runs_root=runs_root, weights_dir=weights_dir, dry_run=dry_run, stream=stream)
    emit(result, as_json, _table_text if dry_run else _finetune_text)


def _table_text(r: dict) -> str:
    lines = [f"{'layer':<32} {'type':<20} {'params':>12} {'trainable':>12}"]
    lines += [f"{x['name']:<32} {x['type']:<20} {x['params']:>12,} {x['trainable']:>12,}" for x in r["layers"]]
    lines.append(f"base: top {r['unfrozen']} of {len(r['base_layers'])} layers trainable"
                 + (f", from {r['first_unfrozen']}" if r["first_unfrozen"] else ""))
    lines += [f"Total params: {r['total_params']:,}", f"Trainable params: {r['trainable_params']:,}",
              f"Non-trainable params: {r['non_trainable_params']:,}"]
    return "\n".join(lines)


def _finetune_text(r: dict) -> str:
    kept = f"epoch {r['epoch_kept']}" if r["epoch_kept"] else f"the starting weights (no epoch beat them on {r['monitor']})"
    lines = [r["run_dir"], f"unfroze {r['unfrozen']} base layers ({r['trainable_params']:,} trainable params); "
             f"{r['epochs_trained']} epochs in {r['fit_seconds']:.0f} s, kept {kept}"]
    for split, m in r["metrics"].items():
        before = r["baseline"].get(split, {}).get("accuracy")
        lines.append(f"{split}: accuracy {m['accuracy']:.3f}" + (f" (frozen head {before:.3f})" if before is not None else ""))
    lines += [f"skipped {x['path']}: {x['reason']}" for x in r["skipped"]]
    return "\n".join(lines)
