"""Run ``cj`` with test hooks, so a test can SIGKILL it at a chosen point.

Usage: ``python -m tests.integration.crash_cli batch execute …`` (arguments as for ``cj``).
The hooks wrap the real code (nothing else changes), configured by environment variables:

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

import os
import sys
import threading
import time
from pathlib import Path

from cjlib.judges import SimulatedJudge
from cjlib.pairing import BalancedPairing
from cjlib.workflow import finalizer

_DELAY = float(os.environ.get("CJ_TEST_JUDGE_DELAY") or 0.0)
_LOG = os.environ.get("CJ_TEST_JUDGE_LOG")
_PAUSE_KIND, _, _PAUSE_ARG = (os.environ.get("CJ_TEST_PAUSE_AT") or "").partition(":")
_MARK_DIR = os.environ.get("CJ_TEST_MARK_DIR")
_lock = threading.Lock()
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


SimulatedJudge.judge = _slow_judge
SimulatedJudge.judge_many = _one_by_one
BalancedPairing.next_wave = _next_wave_hook
finalizer.BatchFinalizer._step = _step_hook

if __name__ == "__main__":
    from cjlib.cli.main import main

    sys.exit(main(sys.argv[1:]))
