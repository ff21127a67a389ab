"""Options declared once: a head's options come from its ``__init__``, shared flags from cli/common.py."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import click
import pytest
from click.testing import CliRunner

from helpers import make_folder
from pipeline import datasets, extract
from pipeline.cli import main
from pipeline.cli.train import compare, train
from pipeline.errors import PipelineError
from pipeline.heads import head_class, options
from pipeline.heads._options import Option, declared
from pipeline.runs import open_run
from pipeline.training import compare as compare_heads


def test_an_annotated_parameter_is_an_option_with_its_default_and_type():
    class Head:
        def __init__(self, k: Annotated[int, Option("neighbours", low=1)] = 5, seed: int = 0,
                     logs: Annotated[str | None, Option("log folder", folder=True)] = None):
            self.k, self.seed, self.logs = k, seed, logs

    k, logs = declared(Head)
    assert (k.name, k.type, k.default, k.low, k.help) == ("k", int, 5, 1, "neighbours")
    assert (logs.name, logs.type, logs.default, logs.folder) == ("logs", str, None, True)


def test_train_and_compare_take_every_head_option_with_the_head_default_in_its_help():
    ctx = click.Context(train)
    for command in (train, compare):
        flags = {p.name: p for p in command.get_params(ctx)}
        for head, declared_options in options().items():
            for o in declared_options:
                assert o.name in flags and flags[o.name].default is None, (head, o.name)
                assert head in flags[o.name].help
    dense = head_class("dense")()
    helps = {p.name: p.help for p in train.get_params(ctx)}
    assert f"[{dense.dropout}]" in helps["dropout"] and "[256]" in helps["units"]
    assert helps["class_weight"].startswith("logreg, dense, svm:")  # knn takes no class weights


def test_a_bad_head_option_value_is_refused_by_click_before_any_work():
    r = CliRunner().invoke(main, ["train", "missing.h5", "--head", "dense", "--dropout", "1.5"])
    assert r.exit_code == 2 and "--dropout" in r.output and "1.5" in r.output


def test_listing_the_commands_imports_no_scikit_learn_or_tensorflow():
    code = ("import sys, pipeline.cli; print([m for m in ('tensorflow', 'sklearn', 'keras') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1]).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    data = make_folder(root / "colors", {"train": 6, "val": 3})
    return extract(data, cache_dir=str(root / "cache"), backbone="mobilenet_025", image_size=32, weights="none",
                   batch_size=16)["cache"]


def test_compare_gives_each_head_the_options_it_declares(cache, tmp_path):
    r = CliRunner().invoke(main, ["compare", cache, "--heads", "logreg,knn", "--class-weight", "balanced",
                                  "--runs-root", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    params = {row["head"]: open_run(row["run_dir"]).config["params"] for row in json.loads(r.stdout)}
    assert params["logreg"]["class_weight"] == "balanced" and params["knn"]["class_weight"] is None
    with pytest.raises(PipelineError, match=r"none of the heads compared \(logreg, knn\) takes --units"):
        compare_heads(cache, ["logreg", "knn"], runs_root=tmp_path, options={"units": "8"})


def test_preview_carves_the_train_split_that_extract_carves(tmp_path):
    root = make_folder(tmp_path / "flat", {"": 12})  # class folders without splits
    carved = {e.path for e in datasets.scan(root, 0.25, 0.25).split("train")}
    args = ["preview", str(root), "--count", "24", "--image-size", "16", "--output", str(tmp_path / "g.png"),
            "--val-fraction", "0.25", "--json"]
    val_only = CliRunner().invoke(main, args)
    both = CliRunner().invoke(main, args + ["--test-fraction", "0.25"])
    assert val_only.exit_code == 0 and both.exit_code == 0, both.output
    assert {i["path"] for i in json.loads(both.stdout)["images"]} == carved
    assert {i["path"] for i in json.loads(val_only.stdout)["images"]} > carved  # test images shown as train
