"""insightad edge runtime: score part images with an exported ONNX model, no torch needed.

``import insightad_edge`` stays light: onnxruntime and OpenCV load on first use of ``Detector``, with the settings
they read as they load made first (``config.before_libraries_load``).
"""
from __future__ import annotations

from .config import before_libraries_load
from .errors import ImageError, InsightadError, MetadataError, ModelError, NotInspectable

before_libraries_load()

__version__ = "0.2.0"
__all__ = ["Detector", "ImageError", "InsightadError", "MetadataError", "ModelError", "NotInspectable", "Result",
           "Verdict", "__version__", "watch"]


def __getattr__(name: str):
    if name in ("Detector", "Result"):
        from . import detector

        return getattr(detector, name)
    if name in ("watch", "Verdict"):
        from . import station

        return getattr(station, name)
    raise AttributeError(f"module 'insightad_edge' has no attribute {name!r}")
