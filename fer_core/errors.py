"""Errors a user can read. Each subclasses ValueError so callers can catch them together."""


class FerError(ValueError):
    """Base class of every error fer_core raises on purpose."""


class InvalidImageError(FerError):
    """The input is not an image we can read (or is too large to read safely)."""


class DatasetError(FerError):
    """The dataset path, layout or a row/file inside it is wrong."""


class WeightsError(FerError):
    """A weights file or its model card is missing, corrupt or does not match."""
