"""*Neural Networks from Scratch*, chapter 16: binary logistic regression on two spirals.

The book's program with only its imports changed; run it on any backend:

    NNBACK_BACKEND=numba python examples/nnfs_ch16_binary_logistic_regression.py

``nnfs.init()`` puts the compat module in book mode: the spirals and the initial weights
are the book's (NumPy's global state, seed 0), and on the numpy backend every printed line
equals what the book's own code prints under plain NumPy on the same machine. The book
itself prints validation 0.945 / 0.207; plain NumPy here ends at 0.920 / 0.237 (float32
``exp``/``log`` rounding differs between NumPy builds). On numba and cupy the same draws
run through nnback's fused float32 ops, so the figures drift within a few hundred epochs.
"""

from __future__ import annotations

import numpy as np
from _common import Timer, parser, report, setup

from nnback.compat import nnfs
from nnback.compat.nnfs import (
    Activation_ReLU,
    Activation_Sigmoid,
    Layer_Dense,
    Loss_BinaryCrossentropy,
    Optimizer_Adam,
    spiral_data,
)

# The book's final validation line for this chapter (its printed output).
TEXT_VALIDATION = "acc 0.945, loss 0.207 *"


def main() -> None:
    args = parser(__doc__, data=False).parse_args()
    backend = setup(args)
    epochs = 1000 if args.quick else 10000

    nnfs.init(seed=args.seed)
    X, y = spiral_data(samples=100, classes=2)
    y = y.reshape(-1, 1)
    dense1 = Layer_Dense(2, 64, weight_regularizer_l2=5e-4, bias_regularizer_l2=5e-4)
    activation1 = Activation_ReLU()
    dense2 = Layer_Dense(64, 1)
    activation2 = Activation_Sigmoid()
    loss_function = Loss_BinaryCrossentropy()
    optimizer = Optimizer_Adam(decay=5e-7)

    with Timer() as timer:
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
            predictions = (activation2.output > 0.5) * 1
            accuracy = np.mean(predictions == y)
            if not epoch % (500 if args.quick else 1000):
                print(
                    f"epoch: {epoch}, acc: {accuracy:.3f}, loss: {loss:.3f} (data_loss: "
                    f"{data_loss:.3f}, reg_loss: {regularization_loss:.3f}), "
                    f"lr: {optimizer.current_learning_rate}"
                )
            loss_function.backward(activation2.output, y)
            activation2.backward(loss_function.dinputs)
            dense2.backward(activation2.dinputs)
            activation1.backward(dense2.dinputs)
            dense1.backward(activation1.dinputs)
            optimizer.pre_update_params()
            optimizer.update_params(dense1)
            optimizer.update_params(dense2)
            optimizer.post_update_params()

    X_test, y_test = spiral_data(samples=100, classes=2)
    y_test = y_test.reshape(-1, 1)
    dense1.forward(X_test)
    activation1.forward(dense1.output)
    dense2.forward(activation1.output)
    activation2.forward(dense2.output)
    loss = loss_function.calculate(activation2.output, y_test)
    predictions = (activation2.output > 0.5) * 1
    accuracy = np.mean(predictions == y_test)
    print(f"validation, acc: {accuracy:.3f}, loss: {loss:.3f}")
    print(f"{epochs} epochs in {timer.seconds:.1f} s")
    report(
        [
            (
                f"validation after {epochs} epochs",
                TEXT_VALIDATION,
                f"acc {accuracy:.3f}, loss {loss:.3f}",
            )
        ],
        "spiral, 2 classes",
        backend,
    )
    print(
        "  * the book's printout; the book's code under plain NumPy here, and book mode on\n"
        "    numpy: acc 0.920, loss 0.237 (seed 0)"
    )


if __name__ == "__main__":
    main()
