"""The embedded shapes model: procedural data (data.py), the denoiser and its
text encoder (model.py), training (train.py) and the analytic judge (judge.py).
It imports nothing above it: the engine adapter is composer/models/shapes.py and
the evaluation harness that drives the engine is composer/evaluation.py;
docs/shapes.md describes the whole."""
