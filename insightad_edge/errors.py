"""Typed errors with messages a line worker can act on, and the exit codes the command-line tools turn them into."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNUSABLE = 0, 1, 2, 3
EXIT_CODES_HELP = (
    "Exit codes: 0 every item done; 1 some item failed or was not inspectable (its row says why), or none was "
    "found; 2 usage error (bad option, missing folder, missing extra, port in use); 3 the model or data "
    "cannot be used."
)


class InsightadError(Exception):
    """Base class for every error insightad raises on purpose."""


class ModelError(InsightadError):
    """The model file is missing, not an ONNX model, or cannot be honoured."""


class MetadataError(ModelError):
    """The model's embedded metadata is absent, malformed or of an unknown schema."""


class DataError(InsightadError):
    """A training or evaluation data folder cannot be used (missing, empty, too few images)."""


class ImageError(InsightadError):
    """An input image could not be decoded or is unusable."""


class NotInspectable(ImageError):
    """The frame decodes, but it does not show a part the model knows how to judge (empty fixture, part cut
    by the border, far too dark or bright, another scale): no verdict, and the reason says why.
    The message always starts with "not inspectable: ", so a row or an answer says which kind of failure it
    is; ``reason`` is the rest. ``stats`` holds what was measured on the frame, when it got that far."""

    def __init__(self, reason: str, stats=None):
        super().__init__(f"not inspectable: {reason}")
        self.reason, self.stats = reason, stats
