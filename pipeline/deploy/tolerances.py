"""How far an exported model may stray from ``predict``: measured bounds in one place (no heavy imports, so the
CLI can list formats cheaply); the metrics are :mod:`pipeline.parity`'s.

Float files are held to :data:`TOLERANCES`, the largest probability difference against Keras; int8 files, whose probabilities move by up to 0.3 on
borderline photos, to :data:`INT8_MIN_TOP1`, the least top-1 agreement.

Examples
--------
>>> TOLERANCES["onnx"], INT8_MIN_TOP1
(0.0001, 0.9)
"""

# Measured: float32 files 1e-7 to 8e-6 (MobileNet, MobileNetV2, EfficientNetB0, VGG16, ResNet50); a .keras or
# SavedModel export computes predict's own graph (0 to 3e-7); float16 weights up to 0.025 (MobileNet alpha 0.25,
# logreg) and 0.050 (MobileNetV2 224, a dense head of 256 units, hymenoptera val): a borderline photo moves most.
TOLERANCES = {"keras": 1e-4, "savedmodel": 1e-4, "onnx": 1e-4, "tflite": 1e-4, "tflite-float16": 0.1}
# Measured on hymenoptera val: MobileNetV2 224 98.0 to 99.3%, MobileNet alpha 0.25 at 96 px 93 to 97.5%; a
# calibration of one class gave 48%.
INT8_MIN_TOP1 = 0.9
# predict rounds features the cache stores as float16 (--store-dtype float16, relative error 5e-4) and an exported
# model does not: measured 1.2e-4 in probability (MobileNet alpha 0.25, logreg, hymenoptera val).
FLOAT16_FEATURES = 1e-2
