"""The exceptions nnback raises for problems a user can fix.

Each is a subclass of a built-in exception (so ``except ValueError`` keeps working) and of
:class:`NNBackError` (so the command line can print any of them as one line).
"""

from __future__ import annotations


class NNBackError(Exception):
    """Base class of every error nnback raises on purpose."""


class InputError(NNBackError, ValueError):
    """An argument has the wrong type, shape, range or value."""


class UnknownBackendError(NNBackError, ValueError):
    """A backend name that is not in the registry."""


class BackendUnavailableError(NNBackError, RuntimeError):
    """A registered backend that cannot load here (missing package, no GPU, ...)."""


class TrainingError(NNBackError, RuntimeError):
    """Training cannot continue (for example the loss became NaN or infinite).

    ``epoch`` and ``step`` (1-based) say where it happened, when it happened in a step.
    """

    def __init__(self, message: str, *, epoch: int | None = None, step: int | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step


class DistributedError(TrainingError):
    """Data-parallel training cannot go on: another MPI rank failed, or the ranks differ."""


class ModelFileError(NNBackError, ValueError):
    """A saved model file is truncated, corrupted, of another format or of a newer version."""
