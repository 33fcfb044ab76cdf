"""A real OpenAI-compatible chat-completions server for tests, on 127.0.0.1.

:func:`running_llm_server` starts :class:`LLMTestServer` (stdlib ``ThreadingHTTPServer``) on
an ephemeral port and yields it; ``server.base_url`` is what the LLM judge is pointed at. It
serves ``POST /v1/chat/completions`` and decides from a truth mapping *essay text → ability*:
it finds which known texts the prompt contains (the one that appears first is essay A), so it
needs no essay ids and works with any template that includes both texts. The higher ability
wins (or, with ``discrimination``, a seeded draw with P(A) = σ(discrimination·(θ_A − θ_B) +
position_bias)), and the answer follows the contract of :mod:`cjlib.llm.contract`.

Faults come on demand (:class:`Faults`): 429 with ``Retry-After``, 500, stalls longer than a
client timeout, slow answers, and answers that break the contract (malformed, invalid winner,
missing confidence, refusal, content filter) or keep it in a fenced block. Every request is
logged per ordered text pair (:attr:`LLMTestServer.log`), the server answers at most
``max_requests`` requests (then 410), reads at most 2 MiB per body, and stops cleanly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 2 * 1024 * 1024
#: Kinds of 200 answers, in the order their rates are drawn.
CONTENT_FAULTS = (
    "malformed",
    "invalid_winner",
    "missing_confidence",
    "refusal",
    "content_filter",
    "fenced",
)
#: Answer kinds that break the contract (the judge must fail them).
BROKEN_KINDS = frozenset(CONTENT_FAULTS) - {"fenced"}


@dataclass(frozen=True)
class Faults:
    """Fault rates (probabilities per request) and timings of the test server.

    Transport faults are drawn per request (429, then 500, then stall); a request that gets
    none is answered with status 200, whose content is broken with the content-fault rates,
    drawn from the server seed, the text pair and how often that pair was answered before (so
    the same pairs get the same answers whatever the order requests arrive in).

    Parameters
    ----------
    rate_429, rate_500, rate_stall : float
        Chance of a 429 (with ``Retry-After: retry_after_s`` unless that is None), a 500, or a
        stall of ``stall_s`` seconds before answering (longer than the client's timeout).
    slow_s : float
        Delay added to every answer.
    rate_malformed, rate_invalid_winner, rate_missing_confidence, rate_refusal,
    rate_content_filter, rate_fenced : float
        Chance that a 200 answer is prose instead of JSON, has winner "C", lacks confidence,
        is a refusal (``message.refusal``), is withheld (``finish_reason=content_filter``),
        or is valid JSON inside a ```json fence.
    reject_response_format : bool
        Answer 400 to requests that send ``response_format`` (servers without support).
    first_429, first_500 : int
        The first ``first_429`` valid requests get a 429, the next ``first_500`` a 500
        (deterministic faults for tests of retry timing), before any random fault.
    """

    rate_429: float = 0.0
    retry_after_s: float | None = 0.0
    rate_500: float = 0.0
    rate_stall: float = 0.0
    stall_s: float = 5.0
    slow_s: float = 0.0
    rate_malformed: float = 0.0
    rate_invalid_winner: float = 0.0
    rate_missing_confidence: float = 0.0
    rate_refusal: float = 0.0
    rate_content_filter: float = 0.0
    rate_fenced: float = 0.0
    reject_response_format: bool = False
    first_429: int = 0
    first_500: int = 0


@dataclass(frozen=True)
class Served:
    """One request as the server saw and answered it."""

    pair: tuple[str, str] | None
    status: int
    kind: str
    model: str | None
    response_format: str | None
    authorization_ok: bool


def text_key(text: str) -> str:
    """Short SHA-256 key of an essay text (what the server logs instead of texts)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class _QuietHTTPServer(ThreadingHTTPServer):
    """Logs a client that hung up (a cancelled request) instead of printing a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("llm test server: client %s went away", client_address)
            return
        super().handle_error(request, client_address)


class LLMTestServer:
    """The server; use :func:`running_llm_server` rather than constructing it directly."""

    def __init__(
        self,
        truth_by_text: Mapping[str, float],
        *,
        faults: Faults | None = None,
        seed: int = 0,
        discrimination: float | None = None,
        position_bias: float = 0.0,
        api_key: str | None = None,
        model_suffix: str = "-cjtest",
        max_requests: int = 10000,
    ) -> None:
        self.truth = {text_key(t): float(a) for t, a in truth_by_text.items()}
        self._texts = sorted(((t, text_key(t)) for t in truth_by_text), key=lambda x: -len(x[0]))
        self.faults = faults or Faults()
        self.discrimination = discrimination
        self.position_bias = position_bias
        self.api_key = api_key
        self.model_suffix = model_suffix
        self.max_requests = max_requests
        self.log: list[Served] = []
        self.seed = seed
        self._rng = random.Random(seed)
        self._valid_requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- bookkeeping ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        if self._httpd is None:
            raise RuntimeError("the test server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def requests_by_pair(self) -> Counter[tuple[str, str]]:
        """Requests received per ordered text pair (A key, B key)."""
        with self._lock:
            return Counter(s.pair for s in self.log if s.pair is not None)

    def answers_by_pair(self) -> Counter[tuple[str, str]]:
        """200 answers sent per ordered text pair."""
        with self._lock:
            return Counter(s.pair for s in self.log if s.pair is not None and s.status == 200)

    def answer_kinds(self) -> dict[tuple[str, str], list[str]]:
        """Kinds of the 200 answers per ordered text pair, in order."""
        kinds: dict[tuple[str, str], list[str]] = {}
        with self._lock:
            for s in self.log:
                if s.pair is not None and s.status == 200:
                    kinds.setdefault(s.pair, []).append(s.kind)
        return kinds

    def _record(self, served: Served) -> None:
        with self._lock:
            self.log.append(served)

    def _draw(self) -> float:
        with self._lock:
            return self._rng.random()

    # -- deciding ------------------------------------------------------------------------

    def _find_pair(self, prompt: str) -> tuple[str, str] | None:
        spans: list[tuple[int, int, str]] = []
        for text, key in self._texts:
            at = prompt.find(text)
            if at < 0:
                continue
            # A text inside a longer known text that was already found is not an essay.
            if any(s <= at and at + len(text) <= e for s, e, _ in spans):
                continue
            spans.append((at, at + len(text), key))
        if len(spans) != 2:
            return None
        first, second = sorted(spans)
        return first[2], second[2]

    def _winner(self, pair: tuple[str, str], occurrence: int) -> tuple[str, int]:
        diff = self.truth[pair[0]] - self.truth[pair[1]]
        if self.discrimination is None:
            a_wins = diff + self.position_bias > 0
        else:
            u = self._uniform("winner", pair, occurrence)
            a_wins = u < 1 / (1 + math.exp(-(self.discrimination * diff + self.position_bias)))
        return ("A" if a_wins else "B"), 1 + min(4, int(abs(diff) * 2))

    def _uniform(self, purpose: str, pair: tuple[str, str], occurrence: int) -> float:
        # Keyed by the pair, not drawn in arrival order: concurrent clients get the same
        # answers run after run, so a test knows which pairs were sent broken answers.
        key = f"{self.seed}:{purpose}:{pair[0]}:{pair[1]}:{occurrence}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64

    def _content_kind(self, pair: tuple[str, str], occurrence: int) -> str:
        u, edge = self._uniform("content", pair, occurrence), 0.0
        for kind in CONTENT_FAULTS:
            edge += getattr(self.faults, f"rate_{kind}")
            if u < edge:
                return kind
        return "ok"

    def _answer(
        self, kind: str, winner: str, confidence: int
    ) -> tuple[str | None, str | None, str]:
        """``(content, refusal, finish_reason)`` of a 200 answer of ``kind``."""
        answer: dict[str, Any] = {
            "winner": winner,
            "confidence": confidence,
            "justification": f"Essay {winner} is more fluent and better organised.",
        }
        if kind == "refusal":
            return None, "I can't help with comparing these texts.", "stop"
        if kind == "content_filter":
            return "", None, "content_filter"
        if kind == "malformed":
            return f"I think essay {winner} is better, with confidence {confidence}.", None, "stop"
        if kind == "invalid_winner":
            answer["winner"] = "C"
        if kind == "missing_confidence":
            del answer["confidence"]
        if kind == "fenced":
            return f"```json\n{json.dumps(answer)}\n```", None, "stop"
        return json.dumps(answer), None, "stop"

    def handle(self, body: dict[str, Any], authorization: str | None) -> tuple[int, dict, dict]:
        """``(status, headers, JSON body)`` for one request body."""
        auth_ok = self.api_key is None or authorization == f"Bearer {self.api_key}"
        messages = body.get("messages") or []
        prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        pair = self._find_pair(prompt)
        fmt = body.get("response_format")
        fmt_type = fmt.get("type") if isinstance(fmt, dict) else None
        model = body.get("model") if isinstance(body.get("model"), str) else None

        def reply(status: int, kind: str, payload: dict, headers: dict | None = None):
            self._record(Served(pair, status, kind, model, fmt_type, auth_ok))
            return status, headers or {}, payload

        def error(status: int, kind: str, message: str, headers: dict | None = None):
            return reply(status, kind, {"error": {"message": message, "type": kind}}, headers)

        with self._lock:
            count = len(self.log)
        if count >= self.max_requests:
            return error(410, "budget", "the test server's request budget is used up")
        if not auth_ok:
            return error(401, "auth", "invalid API key")
        if pair is None:
            return error(400, "unknown_essays", "the prompt does not contain two known essays")
        if fmt is not None and self.faults.reject_response_format:
            return error(400, "response_format", "response_format is not supported")
        f = self.faults
        with self._lock:
            index = self._valid_requests
            self._valid_requests += 1
        u = self._draw()
        if f.first_429 <= index < f.first_429 + f.first_500:
            return error(500, "http_500", "internal error")
        if index < f.first_429 or u < f.rate_429:
            headers = {} if f.retry_after_s is None else {"Retry-After": f"{f.retry_after_s:g}"}
            return error(429, "http_429", "rate limit reached", headers)
        if u < f.rate_429 + f.rate_500:
            return error(500, "http_500", "internal error")
        if u < f.rate_429 + f.rate_500 + f.rate_stall:
            self._stop.wait(f.stall_s)
            return error(504, "stall", "stalled")
        if f.slow_s:
            self._stop.wait(f.slow_s)
        occurrence = self.answers_by_pair()[pair]
        winner, confidence = self._winner(pair, occurrence)
        kind = self._content_kind(pair, occurrence)
        content, refusal, finish = self._answer(kind, winner, confidence)
        completion = {
            "id": f"chatcmpl-test-{count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{model}{self.model_suffix}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt) // 4,
                "completion_tokens": len(content or refusal or "") // 4 + 1,
                "total_tokens": len(prompt) // 4 + len(content or refusal or "") // 4 + 1,
            },
        }
        return reply(200, kind, completion)

    # -- lifetime ------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on 127.0.0.1 at an ephemeral port and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("llm test server: " + format, *args)

            def _send(self, status: int, headers: dict, payload: dict) -> None:
                data = json.dumps(payload).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {}, {"error": {"message": f"no route {self.path}"}})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                    self._send(413, {}, {"error": {"message": "request body too large"}})
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {}, {"error": {"message": "body is not JSON"}})
                    return
                self._send(*server.handle(body, self.headers.get("Authorization")))

        self._httpd = _QuietHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="llm-test-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Wake stalled handlers, stop serving and close the socket."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = self._thread = None


@contextmanager
def running_llm_server(
    truth_by_text: Mapping[str, float], faults: Faults | None = None, **options: Any
) -> Iterator[LLMTestServer]:
    """Run an :class:`LLMTestServer` for the ``with`` block; ``server.base_url`` to connect.

    Parameters
    ----------
    truth_by_text : mapping of str to float
        Essay text → latent ability.
    faults : Faults, optional
        Faults to inject (none by default).
    **options
        ``seed``, ``discrimination``, ``position_bias``, ``api_key`` (require this bearer
        key), ``model_suffix`` (appended to the reported model), ``max_requests``.
    """
    server = LLMTestServer(truth_by_text, faults=faults, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
