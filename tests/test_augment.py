"""Augmentation policies, reproducible views, and augmented views in the feature cache."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import SHARED_DATA, SHARED_WEIGHTS, make_folder, needs_shared
from pipeline import FeatureFile, PipelineError, extract
from pipeline.augment import augment_view, describe, layers, parse
from pipeline.cli import main


def test_policy_text_is_canonical_and_default_expands():
    assert str(parse("default")) == "flip=horizontal,rotate=0.1,zoom=0.2"
    assert str(parse(" flip , rotate=0.10,brightness ")) == "flip=horizontal,rotate=0.1,brightness=0.2"
    assert str(parse("default,hue=0.05,shift")) == "flip=horizontal,rotate=0.1,zoom=0.2,hue=0.05,shift=0.1"
    assert str(parse("none")) == "none" and not parse("") and not parse(None)
    assert describe("flip=both", 7) == "flip=both;seed=7" and describe("none", 7) == "none"


@pytest.mark.parametrize("text, words", [
    ("flop", ["unknown augmentation 'flop'", "Did you mean flip?"]),
    ("rotate=abc", ["rotate takes a number"]),
    ("zoom=1", ["zoom must be above 0 and below 1"]),
    ("brightness=-0.1", ["brightness must be above 0"]),
    ("flip,default", ["names flip twice"]),
    ("flip=diagonal", ["flip=horizontal, flip=vertical or flip=both"]),
])
def test_bad_policies_say_what_to_write(text, words):
    with pytest.raises(PipelineError) as err:
        parse(text)
    assert all(w in str(err.value) for w in words)


def test_every_step_is_a_keras_preprocessing_layer():
    names = [type(layer).__name__ for layer in layers("flip,rotate,zoom,brightness,contrast,hue,shift")]
    assert names == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomBrightness", "RandomContrast",
                     "RandomHue", "RandomTranslation"]


def test_views_differ_from_the_original_and_are_reproducible():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    policy = "rotate=0.2,zoom=0.3,brightness=0.3,shift=0.2"
    a = augment_view(image, policy, "ab" * 32, 1, seed=0)
    assert a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(a, augment_view(image, policy, "ab" * 32, 1, seed=0))
    assert not np.array_equal(a, image)
    assert not np.array_equal(a, augment_view(image, policy, "ab" * 32, 2, seed=0))
    assert not np.array_equal(a, augment_view(image, policy, "ab" * 32, 1, seed=1))


def test_flip_only_mirrors():
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    outs = {augment_view(image, "flip", "cd" * 32, v).tobytes() for v in range(1, 12)}
    assert outs == {image.tobytes(), image[:, ::-1].tobytes()}


def test_extract_stores_k_views_of_train_only_and_adding_views_computes_only_new_ones(tiny_data, fast_args):
    s = extract(tiny_data, augment=2, augment_policy="flip,rotate=0.2", seed=3, **fast_args)
    assert s["splits"] == {"train": 36, "val": 6, "test": 4} and s["computed"] == 46
    assert Path(s["cache"]).name.startswith("vgg16-32-avg-random-aug")
    with FeatureFile(s["cache"]) as f:
        assert f.config["augment"] == "flip=horizontal,rotate=0.2;seed=3"
        assert f.column("train", "view").tolist()[:6] == [0, 1, 2, 0, 1, 2]
        assert set(f.column("val", "view")) == {0} and set(f.column("test", "view")) == {0}
        assert f.load("train", originals_only=True)[0].shape[0] == 12

    more = extract(tiny_data, augment=3, augment_policy="flip,rotate=0.2", seed=3, **fast_args)
    assert more["cache"] == s["cache"]
    assert more["computed"] == 12 and more["splits"]["train"] == 48

    other_seed = extract(tiny_data, augment=3, augment_policy="flip,rotate=0.2", seed=4, **fast_args)
    plain = extract(tiny_data, **fast_args)
    assert len({s["cache"], other_seed["cache"], plain["cache"]}) == 3
    assert plain["splits"]["train"] == 12 and not Path(plain["cache"]).name.count("aug")


def test_extract_rejects_bad_augment_settings(tiny_data, fast_args):
    with pytest.raises(PipelineError, match="needs a policy"):
        extract(tiny_data, augment=1, augment_policy="none", **fast_args)
    with pytest.raises(PipelineError, match="unknown augmentation"):
        extract(tiny_data, augment=1, augment_policy="flip,blur", **fast_args)


def test_cli_extract_augment_options(tmp_path):
    data = make_folder(tmp_path / "d", {"train": 2, "val": 1})
    args = ["extract", str(data), "--backbone", "mobilenet_025", "--image-size", "32", "--weights", "none",
            "--cache-dir", str(tmp_path / "c"), "--json"]
    ok = CliRunner().invoke(main, args + ["--augment", "1", "--augment-policy", "flip,zoom=0.1", "--seed", "5"])
    assert ok.exit_code == 0, ok.output
    assert '"train": 8' in ok.output
    bad = CliRunner().invoke(main, args + ["--augment", "1", "--augment-policy", "spin"])
    assert bad.exit_code == 2 and "unknown augmentation 'spin'" in bad.output


@needs_shared
def test_real_views_change_features_reproducibly_and_originals_match_the_plain_cache(tmp_path):
    root = tmp_path / "photos"
    for label in ("ants", "bees"):
        (root / "train" / label).mkdir(parents=True)
        for src in sorted((SHARED_DATA / "hymenoptera" / "train" / label).glob("*.jpg"))[:2]:
            (root / "train" / label / src.name).symlink_to(src)
    args = dict(backbone="mobilenet_v2", image_size=96, weights_dir=str(SHARED_WEIGHTS), batch_size=8)
    a = extract(root, augment=2, seed=1, cache_dir=str(tmp_path / "a"), **args)
    b = extract(root, augment=2, seed=1, cache_dir=str(tmp_path / "b"), **args)
    plain = extract(root, cache_dir=str(tmp_path / "p"), **args)
    with FeatureFile(a["cache"]) as fa, FeatureFile(b["cache"]) as fb, FeatureFile(plain["cache"]) as fp:
        Xa, Xb, Xp = fa.features("train")[()], fb.features("train")[()], fp.features("train")[()]
        views = fa.column("train", "view")
    np.testing.assert_allclose(Xa, Xb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(Xa[views == 0], Xp, rtol=1e-5, atol=1e-5)
    gaps = [np.abs(Xa[i] - Xa[i - views[i]]).mean() / np.abs(Xa[i - views[i]]).mean()
            for i in np.flatnonzero(views > 0)]
    assert min(gaps) > 0.02
