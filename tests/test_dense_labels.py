"""The dense head takes any class labels, as scikit-learn classifiers do, and keeps them when saved."""

import numpy as np

from pipeline.heads import make_head


def test_dense_learns_any_labels_and_saves_them(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["cat", "dog", "eel"]), 20)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    X[np.arange(60), np.repeat([0, 1, 2], 20)] += 4.0
    head = make_head("dense", units="8", epochs=30, lr=1e-2).fit(X, y)
    assert list(head.classes_) == ["cat", "dog", "eel"] and head.score(X, y) >= 0.9
    head.save(tmp_path)
    np.testing.assert_array_equal(type(head).load(tmp_path, head.get_params()).predict(X), head.predict(X))
