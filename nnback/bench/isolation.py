"""Time a long workload in a process of its own, so runners cannot slow each other down.

Runners measured one after another in one process share more than the machine: PyTorch's
OpenMP workers, OpenBLAS's threads, the environment (the numba backend sets
``OMP_WAIT_POLICY=passive``, which PyTorch's OpenMP reads when it loads) and the allocator's
state. Measured on the 2-core target, a numba training epoch at batch 32 ran 22.7k
samples/s in a process that had already run the PyTorch peers, and 36.3k in one that had
not. Same-run ratios are only fair when neither side carries the other's state.

:func:`isolated` wraps a workload so that its ``setup`` starts a worker process
(:func:`main`), which builds the same workload from the catalog,
sets it up, and then runs ``warmup``, ``run`` and ``finish`` when asked, over a pipe. The
parent's clock still times each call (the pipe adds about 0.1 ms to calls that take
seconds), so both timing engines, the quick runner and pytest-benchmark, work unchanged.
Only long workloads (epochs) are isolated: a per-op call of ~100 us would measure the pipe.

The worker inherits the environment, minus an ``OMP_WAIT_POLICY`` that only nnback set,
plus the workload's own ``env`` (``NNBACK_CAPTURE=0`` for nnback's eager GPU steps).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import IO, Any

from .workload import PEERS, Prepared, Workload, WorkloadSkipped

__all__ = ["IsolationError", "isolated", "worker_environment"]

#: Seconds a worker may take to import and set up before the parent gives up on it.
SETUP_TIMEOUT_S = 600.0


class IsolationError(RuntimeError):
    """A worker process failed or died; the message carries what it printed."""


def isolated(work: Workload, samples: int, real_epochs: int) -> Workload:
    """``work``, set up and run in a worker process of its own.

    Parameters
    ----------
    work : Workload
        A workload of the catalog (the worker rebuilds it by family and name).
    samples, real_epochs : int
        The catalog settings ``work`` was built with.
    """
    spec = {
        "family": work.family,
        "name": work.name,
        "runner": work.runner,
        "samples": int(samples),
        "real_epochs": int(real_epochs),
        "env": [list(pair) for pair in work.env],
    }
    return dataclasses.replace(work, setup=lambda: _Worker(spec).prepared())


def worker_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment for a worker: nnback's own ``OMP_WAIT_POLICY`` left out.

    ``sys.path`` is passed on too, so a worker imports the same nnback as its parent;
    ``overrides`` (a workload's ``env``) are set last.
    """
    from .peers_torch import users_wait_policy

    env = dict(os.environ)
    wanted = users_wait_policy()
    if wanted is None:
        env.pop("OMP_WAIT_POLICY", None)
    else:
        env["OMP_WAIT_POLICY"] = wanted
    paths = [p for p in sys.path if p]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(overrides or {})
    return env


class _Worker:
    """The parent's end of one worker process."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        # The worker's stderr goes to a file, read back only to explain a failure: a pipe
        # nobody drains could fill up and stall the worker mid-epoch.
        self.log: IO[bytes] = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from nnback.bench.isolation import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=worker_environment({str(k): str(v) for k, v in spec.get("env", ())}),
        )

    def prepared(self) -> Prepared:
        try:
            reply = self._ask(dict(self.spec, command="setup"))
        except BaseException:
            self.close()
            raise
        if "skipped" in reply:
            self.close()
            raise WorkloadSkipped(reply["skipped"])
        return Prepared(
            run=self.run,
            warmup=self.warmup if reply["has_warmup"] else None,
            warmup_amount=reply.get("warmup_amount"),
            finish=self._finish,
        )

    def run(self) -> None:
        """One timed call, in the worker."""
        self._ask({"command": "run"})

    def warmup(self) -> None:
        """The workload's warm-up, in the worker."""
        self._ask({"command": "warmup"})

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write((json.dumps(message) + "\n").encode())
            stdin.flush()
            line = stdout.readline()
        except (BrokenPipeError, OSError):
            line = b""
        if not line:
            code = self.process.wait()
            printed = self._tail()
            self.close()
            raise IsolationError(
                f"the worker for {self.spec['name']} exited (code {code}) during "
                f"{message['command']}; it printed: {printed}"
            )
        reply = json.loads(line)
        if "error" in reply:
            self.close()
            raise IsolationError(f"{reply['error']} (in the worker for {self.spec['name']})")
        return reply

    def _finish(self) -> dict[str, Any]:
        try:
            facts = self._ask({"command": "finish"}).get("facts", {})
        finally:
            self.close()
        return dict(facts, isolated=True)

    def _tail(self, limit: int = 2000) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip()
        return text[-limit:] or "(it printed nothing)"

    def close(self) -> None:
        """End the worker (politely, then not) and drop its log."""
        process = self.process
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.close()  # the worker exits at end of input
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:  # a request still buffered for a worker that died
                    pass
        self.log.close()


# The worker's side ------------------------------------------------------------------------


def _build(spec: dict[str, Any]) -> Workload:
    from .catalog import Settings, family_workloads

    runner = spec["runner"]
    # Only this runner's backend is loaded: a PyTorch worker never imports Numba.
    backends = () if runner in PEERS else ((runner, None),)
    settings = Settings(
        samples=spec["samples"],
        real_epochs=spec["real_epochs"],
        backends=backends,
        peers=runner in PEERS,
        isolate=False,
        runners=(runner,),
    )
    for work in family_workloads(spec["family"], settings):
        if work.name == spec["name"]:
            return work
    raise LookupError(f"no workload {spec['name']} in family {spec['family']}")


def _serve(requests: IO[str], replies: IO[str]) -> None:
    prepared: Prepared | None = None
    for line in requests:
        message = json.loads(line)
        command = message["command"]
        try:
            if command == "setup":
                try:
                    prepared = _build(message).setup()
                except WorkloadSkipped as exc:
                    reply: dict[str, Any] = {"skipped": str(exc)}
                else:
                    reply = {
                        "has_warmup": prepared.warmup is not None,
                        "warmup_amount": prepared.warmup_amount,
                        "pid": os.getpid(),
                    }
            elif prepared is None:
                reply = {"error": f"{command!r} before a successful setup"}
            elif command in ("warmup", "run"):
                call = prepared.warmup if command == "warmup" else prepared.run
                assert call is not None
                call()
                reply = {}
            elif command == "finish":
                facts = prepared.finish() if prepared.finish is not None else {}
                prepared = None
                reply = {"facts": dict(facts or {}, worker_pid=os.getpid())}
            else:
                reply = {"error": f"unknown command {command!r}"}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    if prepared is not None and prepared.finish is not None:
        prepared.finish()  # the parent went away: still release global state


def main() -> None:
    """Serve one workload over stdin/stdout (one JSON message per line)."""
    # Keep the protocol on the real stdout; anything the workload prints goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(sys.stdin, replies)


if __name__ == "__main__":
    main()
