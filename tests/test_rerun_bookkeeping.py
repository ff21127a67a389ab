"""A rerun's bookkeeping, made cheap at 100k photos, decides exactly what it decided photo by photo: whole-column
path checks, the stat index compared column by column, and the garbage collector off only around it."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from pipeline import datasets, engines, extract, statindex
from pipeline.datasets import FileStat, path_problem, paths_problem

ODD_PATHS = ["a/b.jpg", "a//b.jpg", "/a.jpg", "a/", "", "a/./b", "a/../b", "..", ".", "a\\b", "a\x00b", "a.b/c..d/.e"]


@pytest.mark.parametrize("bad", [p for p in ODD_PATHS if path_problem(p)])
def test_a_column_check_names_the_first_bad_path_as_the_row_check_does(bad):
    assert paths_problem(["ok/1.jpg", bad, "ok/2.jpg", "a//z"]) == path_problem(bad)


def test_a_column_of_plain_paths_passes():
    assert paths_problem([p for p in ODD_PATHS if not path_problem(p)]) == "" and paths_problem([]) == ""


def index_of(records: dict, scanned_ns: int) -> statindex.StatIndex:
    paths = list(records)
    stats = {name: np.array([records[p][0][k] for p in paths], dtype)
             for k, (name, dtype) in enumerate(statindex.INTS.items())}
    return statindex.StatIndex(scanned_ns, paths, stats, [records[p][1] for p in paths])


def test_the_index_vouches_only_for_unchanged_old_entries_the_feature_file_agrees_with():
    old, now = 10 * statindex.GRANULARITY_NS, 100 * statindex.GRANULARITY_NS
    same = FileStat(5, old, old, 2**63 + 7)  # an inode past int64
    index = index_of({"a": (same, "1" * 64), "b": (same, "2" * 64), "c": (same, "3" * 64),
                      "d": (same, "4" * 64), "e": (FileStat(5, now, old, 9), "5" * 64)}, now)
    entries = [datasets.Entry("train", "x", "a", stat=same),
               datasets.Entry("train", "x", "b", stat=same._replace(inode=2**63 + 8)),  # replaced
               datasets.Entry("train", "x", "c", stat=same),  # the feature file says another hash
               datasets.Entry("train", "x", "d"),  # no stat data
               datasets.Entry("train", "x", "e", stat=FileStat(5, now, old, 9)),  # racy
               datasets.Entry("train", "x", "f", stat=same)]  # not listed
    recorded = {"a": "1" * 64, "b": "2" * 64, "c": "9" * 64, "d": "4" * 64, "e": "5" * 64, "f": "6" * 64}
    assert index.vouched(entries, recorded) == ({"a": "1" * 64}, 1)
    assert index.records["b"] == (tuple(same), "2" * 64)


def test_extract_pauses_the_collector_around_its_bookkeeping_only(tiny_data, fast_args, monkeypatch):
    seen = []  # whether the collector was on when the photos were hashed, then when the base was built
    hash_files, create = statindex.hash_files, engines.create

    def hashing(*args, **kwargs):
        seen.append(gc.isenabled())
        return hash_files(*args, **kwargs)

    def creating(*args, **kwargs):
        seen.append(gc.isenabled())
        return create(*args, **kwargs)

    monkeypatch.setattr(statindex, "hash_files", hashing)
    monkeypatch.setattr(engines, "create", creating)
    assert gc.isenabled()
    extract(tiny_data, **fast_args)
    assert seen == [False, True] and gc.isenabled()
