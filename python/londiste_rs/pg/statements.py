"""Splitting an SQL file into its statements, as the server would read them one by one.

A `;` ends a statement only outside string literals ('...', E'...' with backslash escapes,
U&'...'), quoted identifiers ("..."), dollar-quoted bodies ($$...$$, $tag$...$tag$), comments
(-- to the end of the line, /* ... */ nested) and the BEGIN ... END body of a CREATE
FUNCTION/PROCEDURE (SQL-standard bodies: `BEGIN ATOMIC ... END`), where semicolons separate
the body's own statements. Used by `execute`, which runs a file's statements one at a time
inside one transaction (a file whose quoting never ends is refused, not guessed at).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from londiste_rs.errors import UsageError

# Identifier characters as classes of what they are not: [A-Za-z_\x80-\U0010ffff] spelled so
# takes 4 ms to compile, at every process start (the worker's included).
_START = r"[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f]"  # a letter, _ or any non-ASCII
_NEXT = r"[^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"  # those and digits
_NEXT_OR_DOLLAR = r"[^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"
# A dollar-quote tag: $$ or $name$ (names do not start with a digit: $1 is a parameter).
_DOLLAR_TAG = re.compile(rf"\$(?:{_START}{_NEXT}*)?\$")
_WORD = re.compile(rf"{_START}{_NEXT_OR_DOLLAR}*")


class SplitError(UsageError):
    """An SQL text whose quoting or comment never ends."""


@dataclass(frozen=True)
class Statement:
    """One statement of a file: its text without the final `;` and the surrounding blanks,
    and the line it starts on (1-based)."""

    text: str
    line: int

    @property
    def first_line(self) -> str:
        """Its first line, shortened, to name it in messages."""
        head = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return head if len(head) <= 80 else head[:77] + "..."


def _is_ident_char(c: str) -> bool:
    return c.isalnum() or c in "_$" or ord(c) >= 0x80


def split_statements(text: str, what: str = "the SQL") -> list[Statement]:
    """The statements of `text`, in order; statements that are only blanks and comments are
    left out. Raises SplitError naming the line where an unterminated quote, identifier,
    dollar-quoted string or comment starts."""
    out: list[Statement] = []
    n = len(text)
    i = 0
    start = 0  # where the current statement's text starts
    has_code = False  # the current statement holds more than blanks and comments
    words: list[str] = []  # its first words, lower case (to find CREATE FUNCTION)
    depth = 0  # BEGIN ... END nesting inside a CREATE FUNCTION/PROCEDURE body

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def unterminated(kind: str, pos: int) -> SplitError:
        return SplitError(f"{what}: {kind} starting on line {line_of(pos)} never ends; close it")

    def routine() -> bool:
        """Whether the statement so far is CREATE [OR REPLACE] FUNCTION/PROCEDURE."""
        w = words[:4]
        return bool(w) and w[0] == "create" and any(x in ("function", "procedure") for x in w)

    def end_statement(end: int) -> None:
        nonlocal start, has_code, words, depth
        body = text[start:end]
        if has_code:
            stripped = body.strip()
            lead = len(body) - len(body.lstrip())
            out.append(Statement(stripped, line_of(start + lead)))
        start, has_code, words, depth = end + 1, False, [], 0

    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            if not has_code:  # comments before a statement are not part of it
                start = i
            continue
        if c == "/" and text.startswith("/*", i):
            nest, j = 1, i + 2
            while nest:
                a, b = text.find("/*", j), text.find("*/", j)
                if b < 0:
                    raise unterminated("a /* comment", i)
                if 0 <= a < b:
                    nest, j = nest + 1, a + 2
                else:
                    nest, j = nest - 1, b + 2
            i = j
            if not has_code:
                start = i
            continue
        if c.isspace():
            i += 1
            continue
        if c == ";" and depth == 0:
            end_statement(i)
            i += 1
            continue
        has_code = True
        if c == "'":
            prev = text[i - 1] if i > 0 else ""
            before = text[i - 2] if i > 1 else ""
            escapes = prev in "eE" and not (before and _is_ident_char(before))
            end = _end_of_string(text, i, escapes)
            if end < 0:
                raise unterminated("a string literal", i)
            i = end
            continue
        if c == '"':
            j = i + 1
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise unterminated("a quoted identifier", i)
                if text.startswith('""', k):
                    j = k + 2
                    continue
                i = k + 1
                break
            continue
        if c == "$" and not (i > 0 and _is_ident_char(text[i - 1])):
            m = _DOLLAR_TAG.match(text, i)
            if m:
                tag = m.group(0)
                k = text.find(tag, m.end())
                if k < 0:
                    raise unterminated(f"a {tag}-quoted string", i)
                i = k + len(tag)
                continue
        if _is_ident_char(c) and not c.isdigit() and c != "$":
            m = _WORD.match(text, i)
            assert m is not None
            word = m.group(0).lower()
            if len(words) < 4:
                words.append(word)
            if routine():
                if word in ("begin", "case"):
                    depth += 1
                elif word == "end" and depth > 0:
                    depth -= 1
            i = m.end()
            continue
        i += 1
    end_statement(n)
    return out


def _end_of_string(text: str, i: int, escapes: bool) -> int:
    """The position after the string literal starting at the quote at `i` (-1: it never
    ends)."""
    j = i + 1
    n = len(text)
    while j < n:
        c = text[j]
        if escapes and c == "\\":
            j += 2
            continue
        if c == "'":
            if text.startswith("''", j):
                j += 2
                continue
            return j + 1
        j += 1
    return -1


# Statements execute refuses: they would end or split the one transaction a file runs in.
_TRANSACTION_CONTROL = re.compile(
    r"(?is)^(begin|start\s+transaction|commit|end|rollback|abort|savepoint|release"
    r"|prepare\s+transaction|commit\s+prepared|rollback\s+prepared)\b"
)


def transaction_control(statement: Statement) -> bool:
    """Whether the statement begins, ends or splits a transaction (BEGIN, COMMIT, ...)."""
    code = re.sub(r"(?s)^(\s|--[^\n]*\n?|/\*.*?\*/)*", "", statement.text)
    return bool(_TRANSACTION_CONTROL.match(code))
