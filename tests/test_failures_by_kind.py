"""Files from others, round two: failures are recorded by kind. A photo whose bytes cannot be decoded is
remembered (never read again until it changes); a failure of the machine (memory, I/O) is reported but retried
on the next run."""

from __future__ import annotations

import errno

import h5py
import pytest

from helpers import make_folder
from pipeline import extract, images


@pytest.fixture
def data(tmp_path):
    root = make_folder(tmp_path / "d", {"train": 3})
    (root / "train" / "red" / "notes.png").write_text("a text file saved as a photo")
    return root


def failing_once(monkeypatch, name: str, error: BaseException) -> list[str]:
    """Opening ``name`` raises ``error`` (as a machine short of memory, or a failing disk, would); every path
    opened is listed."""
    real, opened = images.Image.open, []

    def open_image(path, *args, **kwargs):
        opened.append(str(path))
        if str(path).endswith(name):
            raise error
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images.Image, "open", open_image)
    return opened


@pytest.mark.parametrize("error, reason", [(MemoryError(), "not enough memory"),
                                           (OSError(errno.EIO, "Input/output error"), "cannot read file")])
def test_a_failure_of_the_machine_is_retried_on_the_next_run(data, fast_args, monkeypatch, error, reason):
    failing_once(monkeypatch, "blue1.png", error)
    first = extract(data, **fast_args)
    assert {s["path"]: s["reason"] for s in first["skipped"]}["train/blue/blue1.png"].startswith(reason)
    with h5py.File(first["cache"], "r") as f:
        recorded = dict(zip(f["errors/path"].asstr()[()], f["errors/sha256"].asstr()[()]))
    assert recorded["train/blue/blue1.png"] == "" and recorded["train/red/notes.png"] != ""
    monkeypatch.undo()
    opened = failing_once(monkeypatch, "no such file", MemoryError())
    second = extract(data, **fast_args)
    assert second["computed"] == 1 and [s["path"] for s in second["skipped"]] == ["train/red/notes.png"]
    assert [p for p in opened if p.endswith(".png")] == [str(data / "train" / "blue" / "blue1.png")]


def test_a_photo_that_cannot_be_decoded_is_remembered(data, fast_args, monkeypatch):
    first = extract(data, **fast_args)
    assert [s["path"] for s in first["skipped"]] == ["train/red/notes.png"]
    opened = failing_once(monkeypatch, "no such file", MemoryError())
    second = extract(data, **fast_args)
    assert second["computed"] == 0 and opened == [] and [s["path"] for s in second["skipped"]] == ["train/red/notes.png"]
