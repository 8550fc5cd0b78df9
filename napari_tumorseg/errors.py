"""Errors that carry a one-line message meant for the user.

The CLI prints ``str(err)`` and exits non-zero; widgets show it as a napari
notification. Anything else escaping is a bug.
"""


class TumorSegError(Exception):
    """Bad input or a failed operation, explained in one line."""


class ReadError(TumorSegError):
    """A file or folder could not be read as imaging data."""


class WriteError(TumorSegError):
    """An output could not be written (exists, bad path, bad data)."""
