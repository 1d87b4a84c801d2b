"""File names that are not valid UTF-8: a lossless text form for ids, manifests and reports.

On POSIX a file name is bytes. Python hands a name that is not valid UTF-8 (a Latin-1
``Müller/`` folder, ``bad\\xffname.png``) over as a ``str`` holding lone surrogates
(``surrogateescape``), which Parquet, CSV and JSON writers refuse. Such a name is stored in
an escaped form: each byte that is not UTF-8 becomes ``\\xNN`` and, in that name only, a
backslash becomes ``\\\\`` (``M\\xfcller/a.png``). Valid names are stored unchanged, so the
ids of ordinary files never change. :func:`fs_path` turns the escaped form back into the
real path when the file is opened again.

>>> text_path("/data/M\\udcfcller/a.png")
'/data/M\\\\xfcller/a.png'
>>> fs_path(text_path("/data/M\\udcfcller/a.png")) == "/data/M\\udcfcller/a.png"
True
>>> text_path("/data/ok.png")
'/data/ok.png'
"""

from __future__ import annotations

import os
import re

__all__ = ["fs_path", "text_message", "text_path"]

_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_path(path: str | os.PathLike[str]) -> str:
    """`path` as valid UTF-8 text: unchanged when it is, else escaped (module doc)."""
    s = os.fspath(path)
    if _is_text(s):
        return s
    out = []
    for ch in s:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:  # any other lone surrogate (a Windows name)
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def fs_path(text: str) -> str:
    """The real path of a :func:`text_path` string (which `os` and `open` accept).

    A string without a backslash, or a path that exists as written, is returned as is.
    """
    if "\\" not in text or os.path.lexists(text):
        return text

    def unescape(m: re.Match[str]) -> str:
        code = m.group(1)
        if code == "\\":
            return "\\"
        value = int(code[1:], 16)
        if code[0] == "x":
            return chr(0xDC00 + value) if value >= 0x80 else chr(value)
        return chr(value)

    return _ESCAPE.sub(unescape, text)


def text_message(message: str) -> str:
    """A message (an exception's text, which may quote a raw path) as valid UTF-8."""
    return message if _is_text(message) else text_path(message)
