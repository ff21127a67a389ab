"""Real photos with real ImageNet weights from ../shared (skipped with a reason when absent)."""

from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline

from pipeline import load
from helpers import needs_shared


@needs_shared
def test_urban_rural_features_separate_the_classes(shared_extracts):
    s = shared_extracts("urban_rural", backbone="mobilenet_v2", image_size=160)
    assert s["splits"] == {"train": 72, "val": 20}
    assert s["computed"] == 91  # rural22 and rural8 are byte-identical: computed once, stored twice
    Xtr, ytr, classes = load(s["cache"], "train")
    Xva, yva, _ = load(s["cache"], "val")
    assert classes == ["rural", "urban"] and Xtr.shape == (72, 1280)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(Xtr, ytr)
    assert clf.score(Xva, yva) >= 0.95


@needs_shared
def test_hymenoptera_odd_files_are_reported(shared_extracts):
    s = shared_extracts("hymenoptera", backbone="mobilenet_025", image_size=96, batch_size=64)
    total = s["splits"]["train"] + s["splits"]["val"] + len(s["skipped"])
    assert total == 245 + 153
    assert "train/ants/ant photos.jpg" not in {x["path"] for x in s["skipped"]}
