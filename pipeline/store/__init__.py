"""The HDF5 feature file: layout, part files, segments, atomic commit, writer lock, readers.

Layout (see ``cache/README.md``)::

    /                 attrs: the whole config (backbone, weights_sha256, input_size, pooling, ...)
    /classes          (C,) utf-8
    /<split>/features (N, ...) float32 or float16, chunked by rows (a whole file)
    /<split>/labels   (N,) int32 index into /classes
    /<split>/paths    (N,) utf-8, relative to the dataset root
    /<split>/sha256   (N,) the image's content hash
    /<split>/view     (N,) 0 = the image itself, k > 0 = its k-th augmented view
    /errors/{path,sha256,reason}  inputs that could not be read

A segmented file (``layout_version`` 2) is a manifest instead: no ``/<split>/features``, but
``/<split>/segment`` and ``/<split>/row`` saying where each row's features live among the segment files
listed in ``/segments/{file,group,rows}`` (in ``<file>.segments/``).

The ``runtimes`` attribute names the runtimes that computed the rows; it is not part of the config's
fingerprint: features from either runtime agree within a tolerance and share one file.

Writers never touch the published file: finished batches land as part files (renamed into place), and a commit
writes its new rows as one immutable segment plus a small manifest beside the old one and ``os.replace``s it
(the first version is written whole).
"""

from .layout import CHUNK_ROWS, SHA, STR, Key, Row, attrs_problem, layout_problem, recorded_runtimes
from .parts import Parts, part_problem
from .reading import FeatureFile, load
from .writing import FeatureCache, writer_lock

__all__ = ["CHUNK_ROWS", "SHA", "STR", "FeatureCache", "FeatureFile", "Key", "Parts", "Row", "attrs_problem",
           "layout_problem", "load", "part_problem", "recorded_runtimes", "writer_lock"]
