"""Secrets kept out of sight: a key wrapper that never prints itself, and text masking.

The LLM judge's API key lives in a :class:`Secret`; its ``repr``/``str`` are a fixed mask, so a
config, judge or call record that is logged, printed or written to a report shows no key.
:func:`mask_secrets` masks known secrets (and bearer tokens) in free text such as an error
message from a server before that text is stored, and :func:`install_log_redaction` adds the
same masking to the HTTP client loggers as a second line of defence.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "***"
#: Loggers of the HTTP stack under the ``openai`` client (both httpx generations).
HTTP_LOGGERS = ("openai", "httpx", "httpcore", "httpx2", "httpcore2")

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")


class Secret:
    """A secret string whose ``repr`` and ``str`` never show it; :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it (the HTTP client)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self):
        # Pickling would copy the key into whatever stores the pickle (a notebook, a cache).
        raise TypeError("a Secret cannot be pickled")


def mask_secrets(text: str | None, secrets: Iterable[str | Secret] = ()) -> str | None:
    """``text`` with every given secret and every ``Bearer <token>`` replaced by ``***``.

    Parameters
    ----------
    text : str or None
        Free text (error message, response body); None passes through.
    secrets : iterable of str or Secret
        Values to mask wherever they occur; empty values are ignored.
    """
    if text is None:
        return None
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            text = text.replace(value, MASK)
    return _BEARER.sub(rf"\g<1>{MASK}", text)


class _RedactingFilter(logging.Filter):
    def __init__(self, secret: Secret) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message, [self.secret])
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_log_redaction(secret: Secret, loggers: Iterable[str] = HTTP_LOGGERS) -> None:
    """Mask ``secret`` in every record of ``loggers`` (idempotent per secret and logger).

    The ``openai`` client and httpx do not log request headers today; this keeps a future
    debug line that does from writing the key to a log file.
    """
    if not secret:
        return
    prefixes = tuple(loggers)
    # A logger's filters see only records logged on that very logger, not its children's
    # (``openai._base_client``), so every existing logger under each prefix gets one.
    names = set(prefixes) | {
        name
        for name in list(logging.root.manager.loggerDict)
        if name.startswith(tuple(f"{p}." for p in prefixes))
    }
    for name in sorted(names):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactingFilter) and f.secret == secret for f in logger.filters):
            logger.addFilter(_RedactingFilter(secret))
