"""Hugging Face Space / local entry point: `python app.py`.

Spaces import this module and look for the module-level `demo`.
Set COMPOSER_SD_MODEL to a Stable Diffusion hub id or folder to offer it in the picker.
"""
try:  # ZeroGPU wants `spaces` imported before anything touches CUDA; optional elsewhere.
    import spaces  # noqa: F401
except ImportError:
    pass

from ui.layout import build_demo, launch_kwargs

demo = build_demo()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
