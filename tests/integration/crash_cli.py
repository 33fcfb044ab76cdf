"""Run ``cj`` with test hooks, so a test can SIGKILL it at a chosen point.

Usage: ``python -m tests.integration.crash_cli batch execute …`` (arguments as for ``cj``), or
:func:`start` from a test, which forks the process from a server that imported cjlib and
these hooks once (``multiprocessing``'s forkserver): a real process with its own pid,
environment, working folder, stdout and stderr, that a test can SIGKILL, without the two
seconds of CPU a new interpreter spends importing cjlib. The hooks wrap the real code
(nothing else changes), configured by environment variables:

The hooked simulated judge decides one request at a time (its bulk ``judge_many`` goes
through the hooked ``judge``), so every hook sees every request.

``CJ_TEST_JUDGE_DELAY``
    Seconds the simulated judge sleeps per decision (results stay in flight that long).
``CJ_TEST_JUDGE_LOG``
    File the judge appends each request's correlation id to (one line per request sent).
``CJ_TEST_PAUSE_AT``
    ``wave:N`` (inside the transaction generating wave N, before its pairs are inserted),
    ``judged:N`` (when the judge is about to decide its N-th request) or ``finalize:STEP``
    (inside the finalization transaction, before ``STEP`` of
    :data:`cjlib.workflow.finalizer.STEPS`). There the process writes
    ``$CJ_TEST_MARK_DIR/paused`` and sleeps until killed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cjlib.judges import SimulatedJudge
from cjlib.pairing import BalancedPairing
from cjlib.workflow import finalizer

_lock = threading.Lock()
_judged = 0
_DELAY = 0.0
_LOG: str | None = None
_PAUSE_KIND = _PAUSE_ARG = ""
_MARK_DIR: str | None = None


def _configure() -> None:
    """Read the hooks' settings from the environment (in the ``cj`` process)."""
    global _DELAY, _LOG, _PAUSE_KIND, _PAUSE_ARG, _MARK_DIR, _judged
    _DELAY = float(os.environ.get("CJ_TEST_JUDGE_DELAY") or 0.0)
    _LOG = os.environ.get("CJ_TEST_JUDGE_LOG")
    _PAUSE_KIND, _, _PAUSE_ARG = (os.environ.get("CJ_TEST_PAUSE_AT") or "").partition(":")
    _MARK_DIR = os.environ.get("CJ_TEST_MARK_DIR")
    _judged = 0


def _pause() -> None:
    if _MARK_DIR:
        Path(_MARK_DIR, "paused").write_text(str(os.getpid()))
    time.sleep(600)  # until the test kills this process


_judge = SimulatedJudge.judge


def _slow_judge(self, request):
    global _judged
    with _lock:
        _judged += 1
        number = _judged
        if _LOG:
            with open(_LOG, "a") as log:
                log.write(request.request_correlation_id + "\n")
    if _PAUSE_KIND == "judged" and number == int(_PAUSE_ARG):
        _pause()
    if _DELAY:
        time.sleep(_DELAY)
    return _judge(self, request)


def _one_by_one(self, requests):
    return [self.judge(request) for request in requests]


_next_wave = BalancedPairing.next_wave


def _next_wave_hook(self, *args, **kwargs):
    if _PAUSE_KIND == "wave" and kwargs.get("wave") == int(_PAUSE_ARG):
        _pause()
    return _next_wave(self, *args, **kwargs)


_step = finalizer.BatchFinalizer._step


def _step_hook(self, name: str) -> None:
    if _PAUSE_KIND == "finalize" and name == _PAUSE_ARG:
        _pause()
    _step(self, name)


def _install_hooks() -> None:
    """Patch the hooks in: only in the ``cj`` process, never in a test process that imports
    this module to start one (the patched classes would change every later test there)."""
    SimulatedJudge.judge = _slow_judge
    SimulatedJudge.judge_many = _one_by_one
    BalancedPairing.next_wave = _next_wave_hook
    finalizer.BatchFinalizer._step = _step_hook


# --- forked from a server that has imported all of the above ---------------------------------


def _child(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _install_hooks()
    _configure()
    from cjlib.cli.main import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


class CliProcess:
    """A started ``cj``, with the parts of :class:`subprocess.Popen` the crash tests use."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        self._files = []
        for kind in ("stdout", "stderr"):
            fd, path = tempfile.mkstemp(prefix=f"cj_{kind}_")
            os.close(fd)
            self._files.append(path)
        self._process = context.Process(
            target=_child, args=(list(argv), dict(env), str(cwd), *self._files), daemon=False
        )
        self._process.start()
        self.pid = self._process.pid
        self.args = argv

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._process.exitcode

    def output(self) -> tuple[str, str]:
        """What the process wrote to stdout and stderr so far."""
        texts = []
        for path in self._files:
            with open(path, encoding="utf-8", errors="replace") as file:
                texts.append(file.read())
        return texts[0], texts[1]

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the process to end; its stdout and stderr (the files are removed)."""
        self.wait(timeout)
        out, err = self.output()
        for path in self._files:
            os.unlink(path)
        return out, err


def start(argv: list[str], *, env: dict[str, str], cwd: Path) -> CliProcess:
    """Start ``cj ARGV`` with these hooks in a process of its own (see the module docstring)."""
    return CliProcess(argv, env, cwd)


if __name__ == "__main__":
    from cjlib.cli.main import main

    _install_hooks()
    _configure()

    sys.exit(main(sys.argv[1:]))
