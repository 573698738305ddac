"""Chapter 17: regression of a sine wave, 1-64-1 and 1-64-64-1 with a linear output.

:func:`one_hidden_layer` is the chapter's first attempt, :func:`two_hidden_layers` the
rest; ``optimizer`` takes the book's ``Optimizer_Adam`` arguments and ``weight_scale``
the factor of the weight draw (the chapter changes 0.01 to 0.1 late on). Run as a script:
``python ch17_regression.py [layers] [learning_rate] [decay] [weight_scale] [epochs]``.
"""

from __future__ import annotations

import sys

import numpy as np

from nnback.compat import nnfs
from nnback.compat.nnfs import (
    Activation_Linear,
    Activation_ReLU,
    Layer_Dense,
    Loss_MeanSquaredError,
    Optimizer_Adam,
    sine_data,
)


def report(epoch: int, accuracy, loss, data_loss, regularization_loss, optimizer) -> str:
    line = (
        f"epoch: {epoch}, acc: {accuracy:.3f}, loss: {loss:.3f} ("
        f"data_loss: {data_loss:.3f}, reg_loss: {regularization_loss:.3f}), "
        f"lr: {optimizer.current_learning_rate}"
    )
    print(line)
    return line


def one_hidden_layer(epochs: int = 10000, weight_scale: float = 0.01, **optimizer) -> list[str]:
    lines = []
    nnfs.init()
    Layer_Dense.weight_scale = weight_scale

    X, y = sine_data()
    dense1 = Layer_Dense(1, 64)
    activation1 = Activation_ReLU()
    dense2 = Layer_Dense(64, 1)
    activation2 = Activation_Linear()
    loss_function = Loss_MeanSquaredError()
    optimizer = Optimizer_Adam(**optimizer)
    accuracy_precision = np.std(y) / 250

    for epoch in range(epochs + 1):
        dense1.forward(X)
        activation1.forward(dense1.output)
        dense2.forward(activation1.output)
        activation2.forward(dense2.output)

        data_loss = loss_function.calculate(activation2.output, y)
        regularization_loss = loss_function.regularization_loss(
            dense1
        ) + loss_function.regularization_loss(dense2)
        loss = data_loss + regularization_loss

        predictions = activation2.output
        accuracy = np.mean(np.absolute(predictions - y) < accuracy_precision)
        if not epoch % 100:
            lines.append(report(epoch, accuracy, loss, data_loss, regularization_loss, optimizer))

        loss_function.backward(activation2.output, y)
        activation2.backward(loss_function.dinputs)
        dense2.backward(activation2.dinputs)
        activation1.backward(dense2.dinputs)
        dense1.backward(activation1.dinputs)

        optimizer.pre_update_params()
        optimizer.update_params(dense1)
        optimizer.update_params(dense2)
        optimizer.post_update_params()
    Layer_Dense.weight_scale = 0.01
    return lines


def two_hidden_layers(epochs: int = 10000, weight_scale: float = 0.01, **optimizer) -> list[str]:
    lines = []
    nnfs.init()
    Layer_Dense.weight_scale = weight_scale

    X, y = sine_data()
    dense1 = Layer_Dense(1, 64)
    activation1 = Activation_ReLU()
    dense2 = Layer_Dense(64, 64)
    activation2 = Activation_ReLU()
    dense3 = Layer_Dense(64, 1)
    activation3 = Activation_Linear()
    loss_function = Loss_MeanSquaredError()
    optimizer = Optimizer_Adam(**optimizer)
    accuracy_precision = np.std(y) / 250

    for epoch in range(epochs + 1):
        dense1.forward(X)
        activation1.forward(dense1.output)
        dense2.forward(activation1.output)
        activation2.forward(dense2.output)
        dense3.forward(activation2.output)
        activation3.forward(dense3.output)

        data_loss = loss_function.calculate(activation3.output, y)
        regularization_loss = (
            loss_function.regularization_loss(dense1)
            + loss_function.regularization_loss(dense2)
            + loss_function.regularization_loss(dense3)
        )
        loss = data_loss + regularization_loss

        predictions = activation3.output
        accuracy = np.mean(np.absolute(predictions - y) < accuracy_precision)
        if not epoch % 100:
            lines.append(report(epoch, accuracy, loss, data_loss, regularization_loss, optimizer))

        loss_function.backward(activation3.output, y)
        activation3.backward(loss_function.dinputs)
        dense3.backward(activation3.dinputs)
        activation2.backward(dense3.dinputs)
        dense2.backward(activation2.dinputs)
        activation1.backward(dense2.dinputs)
        dense1.backward(activation1.dinputs)

        optimizer.pre_update_params()
        optimizer.update_params(dense1)
        optimizer.update_params(dense2)
        optimizer.update_params(dense3)
        optimizer.post_update_params()
    Layer_Dense.weight_scale = 0.01
    return lines


if __name__ == "__main__":
    args = sys.argv[1:]
    program = one_hidden_layer if args[:1] == ["1"] else two_hidden_layers
    settings = dict(zip(("learning_rate", "decay"), map(float, args[1:3]), strict=False))
    scale = float(args[3]) if len(args) > 3 else 0.01
    program(int(args[4]) if len(args) > 4 else 10000, scale, **settings)
