"""Errors the user sees as one line (the CLI prints them without a traceback)."""


class HvemuError(Exception):
    """A problem with the user's input or configuration: printed as `hvemu: <message>`."""


class ImageError(HvemuError):
    """A guest image that is missing, malformed, for another machine, or too large."""
