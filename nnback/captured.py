"""The full-size steps of one epoch as replays of a captured step (:mod:`nnback.step_plan`).

Called by ``training._Trainer.epoch`` in place of its eager loop over the full-size
batches; the last, shorter batch still runs eagerly there. The host draws what the eager
loop would draw (dropout masks, from the model's generator, in the same order), uploads it
once, launches one graph per step and reads the device's books back every
:data:`READ_EVERY` steps, or every step when a callback wants per-batch logs. At each read
it updates the progress bar and finds a non-finite loss; the optimizer kernels skipped
every update from that step on, so the weights are those from before it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy

from .callbacks import Callback

if TYPE_CHECKING:
    from .step_plan import StepPlan
    from .training import _Trainer

__all__ = ["READ_EVERY", "run_captured_steps", "wants_batch_logs"]

# Steps between two reads of the books. A read waits for the GPU, so the host stops running
# ahead of it; every 64 steps that costs about one launch latency per 64 steps.
READ_EVERY = 64


def wants_batch_logs(callbacks: list[Callback]) -> bool:
    """Whether a callback does something with ``on_batch_end`` (then the books are read at
    every step, to give it that step's loss)."""
    return any(
        "on_batch_end" in vars(callback) or type(callback).on_batch_end is not Callback.on_batch_end
        for callback in callbacks
    )


def _draw_masks(plans: list[StepPlan]) -> list[list[numpy.ndarray]]:
    """Every step's dropout masks, drawn as the eager loop draws them: step by step, layer
    by layer, ``rng.random(shape) >= rate`` from the layer's (the model's) generator."""
    drawn = []
    for plan in plans:
        masks = [numpy.empty(tuple(device.shape), numpy.bool_) for _, device in plan.dropouts]
        for step in range(plan.mask_steps):
            for (layer, _), host in zip(plan.dropouts, masks, strict=True):
                host[step] = layer.rng.random(host.shape[1:]) >= layer.rate
        drawn.append(masks)
    return drawn


def _account(trainer: _Trainer, plan: StepPlan, epoch: int, done: int, before: int) -> int:
    """Bring the host's bookkeeping from ``before`` to ``done`` finished steps of this epoch
    (the optimizer's count and rate, ``last_step``, the layers' textbook attributes)."""
    optimizer = trainer.model.optimizer
    optimizer.iterations += done - before
    if done > before and optimizer.decay:
        last = optimizer.iterations - 1
        optimizer.current_learning_rate = optimizer.learning_rate / (1.0 + optimizer.decay * last)
    if done:
        trainer.last_step = (epoch + 1, done)
    # The textbook attributes point at the step's buffers, as after an eager step.
    for index, layer in enumerate(trainer.model.steps):
        layer.inputs, layer.output = plan.outputs[index]
    for layer, name, buffer in plan.extras:  # Conv2D's patches, MaxPool2D's argmax
        setattr(layer, name, buffer)
    return done


def run_captured_steps(
    trainer: _Trainer,
    plans: list[StepPlan],
    epoch: int,
    order: numpy.ndarray,
    snapshot: Any,
    guard: Any,
) -> float:
    """Run the epoch's steps (the main plan's, then the shorter last batch's plan, if any);
    return their ``sum(loss * batch)`` (the eager loop's ``loss_sum``) and leave the metric
    holding their count."""
    model, backend = trainer.model, trainer.model.backend
    per_batch = wants_batch_logs(trainer.settings["callbacks"])
    every = 1 if per_batch else READ_EVERY
    main = plans[0]
    sequence = [main] * main.steps + plans[1:]
    rows, _ = model.optimizer.schedule(len(sequence))
    for plan, masks in zip(plans, _draw_masks(plans), strict=True):
        plan.start_epoch(order, masks, rows)
    launched = shown = accounted = 0
    settled = False
    try:
        for step, plan in enumerate(sequence):
            guard.check()
            plan.launch()
            launched += 1
            if launched % every and launched != len(sequence):
                continue
            state, sums = main.read()
            if state[1]:
                bad = int(state[2])
                accounted = _account(trainer, main, epoch, bad, accounted)
                settled = True
                trainer.fail(snapshot, f"the loss became {float(sums[2])}", epoch, bad)
            accounted = _account(trainer, plan, epoch, launched, accounted)
            if trainer.bar is not None:
                trainer.bar.update(launched - shown)
                trainer.bar.set_postfix(loss=f"{float(sums[1]):.4f}", refresh=False)
            shown = launched
            if per_batch:
                for callback in trainer.settings["callbacks"]:
                    callback.on_batch_end(step, {"loss": float(sums[1])})
    finally:
        if not settled:
            state, sums = main.read()
            done = int(state[2]) if state[1] else launched
            _account(trainer, main, epoch, done, accounted)
    metric = model.metric
    metric._backend = backend
    metric._correct = backend.asarray(numpy.int64(state[3]))
    metric._total = sum(plan.correct_per_step for plan in sequence)
    return float(sums[0])
