"""Errors a user sees: each says what went wrong, where, and how to fix it."""


class OpenHCSError(Exception):
    """Base of every error this package raises on purpose (not a bug)."""


class FormatError(OpenHCSError):
    """A plate folder or image file cannot be read as any supported microscope format."""


class ConfigError(OpenHCSError):
    """The screen config has an unknown key, a wrong type or an impossible value."""


class PipelineError(OpenHCSError):
    """A pipeline file is not a valid pipeline (unknown function, code outside the allow-list...)."""


class ImageReadError(OpenHCSError):
    """An image file is truncated, corrupt or missing."""
