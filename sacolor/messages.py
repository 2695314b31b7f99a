"""How a user's value appears in an error message: briefly, whatever it is.

A config or hints file can hold anything: a 400-digit number, 100 000 nested
lists, or a YAML alias bomb whose full ``repr`` would not fit in memory.
"""

from __future__ import annotations

import reprlib

_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxlist, _BRIEF.maxtuple, _BRIEF.maxdict = 2, 4, 4, 4
_BRIEF.maxstring = _BRIEF.maxother = 60
_BRIEF.maxlong = 40


def brief(value: object) -> str:
    """``repr(value)``, cut to a few dozen characters (nested containers become ``[...]``)."""
    return _BRIEF.repr(value)
