"""Degenerate-output checks shared by the judges: empty, non-language, repetition loops, echoed prompts.

A degenerate response is neither a decline nor an answer a reader could use. These checks are pure
string functions (no model), so every judge can apply the same definition; :func:`degenerate_reason`
returns why a response is degenerate, or None.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_SPACE = re.compile(r"\s+")

#: a response whose letters make up less than this share of its non-space characters is not language
MIN_LETTER_SHARE = 0.5
#: with at least LOOP_MIN_WORDS words, a repeated n-gram covering this share of them is a loop
LOOP_COVERAGE = 0.5
LOOP_MIN_WORDS = 12
#: a response this similar to its prompt (difflib ratio), or made of it, is an echo
ECHO_RATIO = 0.8

#: whole answers that carry no content of their own (chat boilerplate); matched on the normalised text
BOILERPLATE = (
    re.compile(r"^(hello|hi|hey)[!.,]?\s*(how (can|may) i (help|assist) you( today)?\??)?$"),
    re.compile(r"^how (can|may) i (help|assist) you( today)?\??$"),
    re.compile(r"^(sure|ok|okay|yes|no|thanks|thank you)[!.]?$"),
)


def words(text: str) -> list[str]:
    """Return the lower-cased words of `text` (letters and inner apostrophes)."""
    return [w.lower() for w in _WORD.findall(text.replace("\u2019", "'"))]


def normalise(text: str) -> str:
    """Return `text` lower-cased with whitespace collapsed and typographic apostrophes made plain."""
    return _SPACE.sub(" ", text.replace("\u2019", "'")).strip().lower()


def letter_share(text: str) -> float:
    """Return the share of letters among the non-space characters of `text` (0.0 when there are none)."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def loop_coverage(tokens: list[str], sizes: tuple[int, ...] = (1, 2, 3, 4, 6, 8)) -> float:
    """Return the largest share of `tokens` covered by one repeated n-gram (repeats beyond its first use).

    ``["a", "b", "a", "b", "a", "b"]`` -> 4/6: the bigram "a b" occurs three times, two of them repeats.
    A single word repeated counts only when it makes up most of the text (sizes start at 1 for "no no no").
    """
    best = 0.0
    for n in sizes:
        if len(tokens) < 2 * n:
            break
        grams = Counter(tuple(tokens[i : i + n]) for i in range(0, len(tokens) - n + 1))
        gram, count = grams.most_common(1)[0]
        if count < 3 or (n == 1 and count / len(tokens) < 0.5):
            continue
        best = max(best, min(1.0, (count - 1) * n / len(tokens)))
    return best


def repeated_lines(text: str) -> bool:
    """Return True when one non-trivial line occurs three or more times."""
    lines = [normalise(line) for line in text.splitlines() if len(line.strip()) > 3]
    return bool(lines) and Counter(lines).most_common(1)[0][1] >= 3


def is_echo(prompt: str, response: str) -> bool:
    """Return True when `response` only repeats the prompt (verbatim, mostly, or a fragment of it)."""
    p, r = normalise(prompt), normalise(response)
    if not p or not r:
        return False
    if r in p or (r.startswith(p) and len(r) < 1.3 * len(p) + 10):
        return True
    return difflib.SequenceMatcher(None, p, r, autojunk=False).ratio() >= ECHO_RATIO


def degenerate_reason(prompt: str, response: str) -> str | None:
    """Return why `response` is degenerate (empty, not language, loop, echo, boilerplate), else None."""
    text = response.strip()
    tokens = words(text)
    if not text:
        return "empty"
    if not tokens or letter_share(text) < MIN_LETTER_SHARE:
        return "not language"
    if repeated_lines(text) or (len(tokens) >= LOOP_MIN_WORDS and loop_coverage(tokens) >= LOOP_COVERAGE):
        return "loop"
    if is_echo(prompt, text):
        return "echo"
    if any(pattern.match(normalise(text)) for pattern in BOILERPLATE):
        return "boilerplate"
    return None
