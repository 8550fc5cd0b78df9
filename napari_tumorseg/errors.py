"""Errors that carry a one-line message meant for the user.

The CLI prints ``str(err)`` and exits non-zero; widgets show it as a napari
notification. Anything else escaping is a bug.
"""

import re


class TumorSegError(Exception):
    """Bad input or a failed operation, explained in one line."""


class ReadError(TumorSegError):
    """A file or folder could not be read as imaging data."""


class WriteError(TumorSegError):
    """An output could not be written (exists, bad path, bad data)."""


# What may identify a patient in an exception text that is not ours: DICOM UIDs, dates and
# times (DA/DT/TM), person names in DICOM's "Family^Given" form, quoted header values.
_UID = re.compile(r"\b\d+(?:\.\d+){3,}\b")
_DATE = re.compile(r"\b(?:19|20)\d{2}[-/.]?[01]\d[-/.]?[0-3]\d(?:[T ]?\d{2}:?\d{2}(?::?\d{2})?)?\b")
_PN = re.compile(r"[^\s'\"=:,]*\^[^\s'\",)]*")
_TAG_VALUE = re.compile(r"(\(\s*[0-9A-Fa-f]{4}\s*,\s*[0-9A-Fa-f]{4}\s*\)[^\n]*?)([:=]\s*)([^\n]*)")


def first_line(err: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of a library's error text, for a one-line message.

    Libraries quote what they read (a DICOM header value, a UID, a date), so anything that
    could identify a patient is masked. An empty text gives the exception's type name.
    """
    text = str(err)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not line:
        return type(err).__name__ if isinstance(err, BaseException) else ""
    line = _TAG_VALUE.sub(r"\1\2…", line)
    line = _UID.sub("<uid>", line)
    line = _DATE.sub("<date>", line)
    line = _PN.sub("<name>", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"
