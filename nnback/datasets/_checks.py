"""Argument checks shared by the dataset modules.

Every message names the argument, says what was expected and shows what was given, so a
user can fix the call without reading the source.
"""

from __future__ import annotations

import numbers

from ..errors import InputError


def positive_int(name: str, value: object) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer, else raise.

    Parameters
    ----------
    name : str
        The argument's name, quoted in the error message.
    value : object
        What the caller passed.

    Returns
    -------
    int
        ``value`` converted to a Python ``int`` (NumPy integers are accepted).

    Raises
    ------
    InputError
        If ``value`` is not an integer (``bool`` included: ``True`` is an ``int`` in Python
        but never a sensible count) or is smaller than 1.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise InputError(f"{name} must be a positive int (>= 1), got {value}")
    return int(value)


def fraction(name: str, value: object, *, allow_zero: bool = True) -> float:
    """Return ``value`` as a ``float`` in ``[0, 1)`` (or ``(0, 1)``), else raise.

    Parameters
    ----------
    name : str
        The argument's name, quoted in the error message.
    value : object
        What the caller passed.
    allow_zero : bool, default True
        Whether 0 is accepted.

    Returns
    -------
    float
        ``value`` as a Python ``float``.

    Raises
    ------
    InputError
        If ``value`` is not a real number or lies outside the interval.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(
            f"{name} must be a fraction in [0, 1), got {value!r} ({type(value).__name__})"
        )
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise InputError(f"{name} must be a fraction in {interval}, got {value}")
    return float(value)
