"""Typed errors with messages a line worker can act on; only the CLI turns them into exit codes."""


class InsightadError(Exception):
    """Base class for every error insightad raises on purpose."""


class ModelError(InsightadError):
    """The model file is missing, not an ONNX model, or cannot be honoured."""


class MetadataError(ModelError):
    """The model's embedded metadata is absent, malformed or of an unknown schema."""


class ImageError(InsightadError):
    """An input image could not be decoded or is unusable."""
