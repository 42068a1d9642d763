"""Hugging Face Space / local entry point: `python app.py`.

Spaces import this module and look for the module-level `demo`.
Set COMPOSER_SD_MODEL to a Stable Diffusion hub id or folder to offer it in the picker.
"""
try:  # ZeroGPU wants `spaces` imported before anything touches CUDA; optional elsewhere.
    import spaces  # noqa: F401
except ImportError:
    pass

import sys

from composer.facade import ComposerError
from ui.layout import build_demo, launch_kwargs

try:
    demo = build_demo()
except ComposerError as err:     # e.g. COMPOSER_CLUSTER without Ray, or a cluster out of reach
    sys.exit(f"error: {err}")

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
