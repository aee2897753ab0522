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
LOOP_TAIL = 0.3
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


def tokens(text: str) -> list[str]:
    """Return the whitespace tokens of `text`, lower-cased, without punctuation ("**1." -> "1")."""
    return [t for t in (re.sub(r"[^\w']", "", tok.lower()) for tok in text.split()) if t]


def loop_coverage(toks: list[str], sizes: tuple[int, ...] = (1, 2, 3, 4, 6, 8)) -> tuple[float, int]:
    """Return (share of `toks` covered by repeats of the most repeating n-gram, its count).

    ``["a", "b", "a", "b", "a", "b"]`` -> (4/6, 3): the bigram "a b" occurs three times, two of them
    repeats. For single tokens the share is the token's share of the text ("no no no" -> 1.0).
    """
    best, best_count = 0.0, 0
    for n in sizes:
        if len(toks) < 2 * n:
            break
        grams = Counter(tuple(toks[i : i + n]) for i in range(0, len(toks) - n + 1))
        count = grams.most_common(1)[0][1]
        if count < 3:
            continue
        share = count / len(toks) if n == 1 else min(1.0, (count - 1) * n / len(toks))
        if share > best:
            best, best_count = share, count
    return best, best_count


def is_loop(text: str) -> bool:
    """Return True for a repetition loop: one line three times, or an n-gram repeated over the text.

    Over half the tokens with three or more occurrences, or over :data:`LOOP_TAIL` of them with five or
    more (a short answer that collapses into "1. **1. **1. …").
    """
    toks = tokens(text)
    if repeated_lines(text):
        return True
    if len(toks) < LOOP_MIN_WORDS:
        return False
    share, count = loop_coverage(toks)
    return share >= LOOP_COVERAGE or (share >= LOOP_TAIL and count >= 5)


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
    if not text:
        return "empty"
    if not words(text) or letter_share(text) < MIN_LETTER_SHARE:
        return "not language"
    if is_loop(text):
        return "loop"
    if is_echo(prompt, text):
        return "echo"
    if any(pattern.match(normalise(text)) for pattern in BOILERPLATE):
        return "boilerplate"
    return None
