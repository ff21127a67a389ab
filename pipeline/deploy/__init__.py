"""Deploying a run: one model from pixels to probabilities, written in every format and checked against
``predict`` before it is published.

``formats``: one record per export format (a new format is one entry); ``exporting``: assemble, write, check;
``converting``: Keras to ONNX and TFLite, and their runtimes; ``check_photos``: the photos an export is checked
(and int8 calibrated) on; ``encoder_export``: a run whose base is an ONNX file; ``tolerances``: how far each
format may stray.
"""
