"""nnback: from-scratch neural networks on pluggable NumPy, Numba and CuPy backends.

Pick a backend with ``NNBACK_BACKEND=numba``, :func:`set_backend` or :func:`use_backend`.
"""

from __future__ import annotations

from .activations import LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .backends import (
    Backend,
    available_backends,
    backend_status,
    get_backend,
    set_backend,
    use_backend,
)
from .callbacks import Callback, EarlyStopping, History, LambdaCallback, ModelCheckpoint
from .conv_layers import AvgPool2D, Conv2D, Flatten, MaxPool2D, Reshape
from .distributed import Distributed
from .errors import (
    BackendUnavailableError,
    DistributedError,
    InputError,
    ModelFileError,
    NNBackError,
    TrainingError,
    UnknownBackendError,
)
from .estimators import MLPClassifier, MLPRegressor
from .initializers import Constant, Gaussian, GlorotUniform, He, Xavier, Zeros
from .layer_base import Layer
from .layers import Dense, Dropout
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
)
from .metrics import Accuracy, BinaryAccuracy, Metric, RegressionAccuracy
from .model import Sequential
from .optimizers import SGD, AdaGrad, Adam, Optimizer, RMSprop
from .serialization import load_model

__version__ = "0.1.0"

__all__ = [
    "SGD",
    "Accuracy",
    "AdaGrad",
    "Adam",
    "AvgPool2D",
    "Backend",
    "BackendUnavailableError",
    "BinaryAccuracy",
    "BinaryCrossentropy",
    "Callback",
    "CategoricalCrossentropy",
    "Constant",
    "Conv2D",
    "Dense",
    "Distributed",
    "DistributedError",
    "Dropout",
    "EarlyStopping",
    "Flatten",
    "Gaussian",
    "GlorotUniform",
    "He",
    "History",
    "InputError",
    "LambdaCallback",
    "Layer",
    "LeakyReLU",
    "MLPClassifier",
    "MLPRegressor",
    "Linear",
    "MaxPool2D",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "Metric",
    "ModelCheckpoint",
    "ModelFileError",
    "NNBackError",
    "Optimizer",
    "RMSprop",
    "ReLU",
    "RegressionAccuracy",
    "Reshape",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "TrainingError",
    "UnknownBackendError",
    "Xavier",
    "Zeros",
    "__version__",
    "available_backends",
    "backend_status",
    "get_backend",
    "load_model",
    "set_backend",
    "use_backend",
]
