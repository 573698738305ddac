"""Whether ``fit`` runs captured or eager steps (:mod:`nnback.step_plan`), and why: ``fit``'s
``capture`` argument, else the ``NNBACK_CAPTURE`` environment variable, then the backend."""

from __future__ import annotations

import os
from typing import Any

from .errors import InputError

__all__ = ["CAPTURE_ENV", "capture_requested", "describe_step_mode"]

CAPTURE_ENV = "NNBACK_CAPTURE"


def capture_requested(capture: bool | None) -> tuple[bool, str]:
    """Whether captured steps are wanted, and why: ``fit``'s argument, else the environment.

    ``NNBACK_CAPTURE=0`` turns them off, ``1`` (or unset) uses them where supported.
    """
    if capture is not None:
        if not isinstance(capture, bool):
            raise InputError(f"capture: expected True, False or None, got {capture!r}")
        return capture, f"fit(capture={capture})"
    value = os.environ.get(CAPTURE_ENV, "").strip().lower()
    if value in ("", "1", "on", "true", "yes"):
        return True, "the default"
    if value in ("0", "off", "false", "no"):
        return False, f"{CAPTURE_ENV}={value}"
    raise InputError(f"{CAPTURE_ENV}={value!r}: expected 0 (eager steps) or 1 (captured steps)")


def describe_step_mode(backend: Any) -> str:
    """What ``fit`` will run on ``backend`` (for ``nnback info``): captured or eager, and why."""
    try:
        wanted, why = capture_requested(None)
    except InputError as exc:
        return f"eager ({exc})"
    if not wanted:
        return f"eager ({why})"
    reason = backend.capture_unavailable()
    if reason is None:
        return f"captured: each full-size step replays a CUDA graph ({CAPTURE_ENV}=0 to turn off)"
    return f"eager ({reason})"
