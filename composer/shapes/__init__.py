"""The embedded shapes model: procedural data (data.py), the denoiser and its
text encoder (model.py), training (train.py), the analytic judge (judge.py) and
the composition benchmark's task logic (evaluate.py). The engine adapter is
composer/models/shapes.py; docs/shapes.md describes the whole."""
