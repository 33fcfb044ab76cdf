"""Prompt templates as files: loading, checking, hashing and safe rendering.

A template is a UTF-8 Markdown file. Text before the first ``## `` heading is a comment and
is never sent; ``## system`` and ``## user`` open the two chat messages, each running to the
next such heading. Placeholders are :data:`PLACEHOLDERS`: ``{instructions}``,
``{grade_scale}``, ``{essay_a}``, ``{essay_b}``. They are replaced in one pass, so braces in an
essay are never read as placeholders; any other ``{word}`` in the template is refused (it is a
typo), other braces (JSON examples) are kept. The default ENG5 template is
``cjlib/prompts/eng5_default.md``. A template's identity is the SHA-256 of its file bytes,
stored with every call.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cjlib.errors import UsageError

DEFAULT_TEMPLATE = "eng5_default.md"
PLACEHOLDERS = ("instructions", "grade_scale", "essay_a", "essay_b")
NO_INSTRUCTIONS = "(no assignment text was given)"

_HEADING = re.compile(r"^## +(?P<name>\S.*?)\s*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")
_SECTIONS = ("system", "user")


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed prompt template.

    Attributes
    ----------
    system, user : str
        The two message templates.
    sha256 : str
        Hex SHA-256 of the template file's bytes.
    source : str
        Where it came from (path, or ``package:eng5_default.md``).
    """

    system: str
    user: str
    sha256: str
    source: str

    def render(
        self, *, instructions: str | None, grade_scale: str, essay_a: str, essay_b: str
    ) -> list[dict[str, str]]:
        """The chat messages for one pair: ``[{"role": "system", …}, {"role": "user", …}]``."""
        values = {
            "instructions": instructions
            if instructions and instructions.strip()
            else NO_INSTRUCTIONS,
            "grade_scale": grade_scale,
            "essay_a": essay_a,
            "essay_b": essay_b,
        }

        def fill(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: values[m.group("name")], text)

        return [
            {"role": "system", "content": fill(self.system)},
            {"role": "user", "content": fill(self.user)},
        ]


def _sections(text: str, source: str) -> dict[str, str]:
    headings = list(_HEADING.finditer(text))
    sections: dict[str, str] = {}
    for i, heading in enumerate(headings):
        name = heading.group("name").strip().lower()
        if name not in _SECTIONS:
            raise UsageError(
                f"prompt template {source}: unknown section '## {heading.group('name')}'; "
                "use '## system' and '## user'"
            )
        if name in sections:
            raise UsageError(f"prompt template {source}: section '## {name}' appears twice")
        end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
        sections[name] = text[heading.end() : end].strip()
    missing = [s for s in _SECTIONS if not sections.get(s)]
    if missing:
        raise UsageError(
            f"prompt template {source}: missing or empty section(s) "
            f"{', '.join('## ' + m for m in missing)}; see cjlib/prompts/{DEFAULT_TEMPLATE}"
        )
    return sections


def _check_placeholders(sections: dict[str, str], source: str) -> None:
    used = {m.group("name") for s in sections.values() for m in _PLACEHOLDER.finditer(s)}
    unknown = sorted(used - set(PLACEHOLDERS))
    if unknown:
        raise UsageError(
            f"prompt template {source}: unknown placeholder(s) "
            f"{', '.join('{' + u + '}' for u in unknown)}; allowed: "
            f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
        )
    for needed in ("essay_a", "essay_b"):
        count = len(re.findall(r"\{" + needed + r"\}", sections["user"]))
        if count != 1:
            raise UsageError(
                f"prompt template {source}: the user section must contain {{{needed}}} exactly "
                f"once (found {count})"
            )


def parse_prompt_template(data: bytes, source: str) -> PromptTemplate:
    """Parse and check template file bytes.

    Raises
    ------
    UsageError
        Not UTF-8, a missing/unknown/repeated section, an unknown placeholder, or
        ``{essay_a}``/``{essay_b}`` not exactly once in the user section.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"prompt template {source} is not UTF-8 text") from None
    sections = _sections(text.replace("\r\n", "\n"), source)
    _check_placeholders(sections, source)
    return PromptTemplate(
        system=sections["system"],
        user=sections["user"],
        sha256=hashlib.sha256(data).hexdigest(),
        source=source,
    )


def load_prompt_template(path: str | Path | None = None) -> PromptTemplate:
    """Load the template at ``path``, or the packaged ENG5 default when ``path`` is None.

    Raises
    ------
    UsageError
        The file does not exist or is not a valid template (the message says what is wrong).
    """
    if path is None:
        data = resources.files("cjlib.prompts").joinpath(DEFAULT_TEMPLATE).read_bytes()
        return parse_prompt_template(data, f"package:{DEFAULT_TEMPLATE}")
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"prompt template {file} does not exist; pass an existing .md file")
    return parse_prompt_template(file.read_bytes(), str(file))
