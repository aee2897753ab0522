"""How many tokens an lm-eval ``loglikelihood`` request scores: the denominator of per-token NLL.

lm-eval's ``loglikelihood`` returns one *summed* log-probability per request, so a per-token mean needs
the number of continuation tokens, which only the model's tokenizer knows. The runner makes a counter
active (:func:`use_token_counter`) while the helpfulness task is scored; the task's ``process_results``
asks :func:`active_token_counter` for the token count of each reference.

The counter built by :func:`continuation_counter` is exact for lm-eval's Hugging Face models: it calls
the model's own ``_encode_pair(context, continuation)`` (the split lm-eval scores: the context's trailing
whitespace moves into the continuation, the whole string is encoded once and cut after the context's
tokens) with a probe context that ends exactly like every real context (the chat template's generation
prompt). The continuation's tokens depend only on that tail, so the count equals the scored tokens
(tests/gates/test_helpfulness.py checks it on the tiny model against the contexts lm-eval logged).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mlflow_nlsr.errors import GateError

#: text of a continuation -> number of tokens the model scores for it
TokenCounter = Callable[[str], int]
PROBE = "?"

_ACTIVE: TokenCounter | None = None


def continuation_counter(lm: Any, chat: bool) -> TokenCounter | None:
    """A counter for `lm` (chat template applied or not); None when `lm` exposes no tokenizer.

    Uses ``lm._encode_pair`` (lm-eval ``TemplateLM``) when present, else ``lm.tok_encode``.
    """
    encode_pair = getattr(lm, "_encode_pair", None)
    if callable(encode_pair) and callable(getattr(lm, "tok_encode", None)):
        probe = PROBE
        if chat:
            probe = lm.apply_chat_template([{"role": "user", "content": PROBE}])
        return lambda text: len(encode_pair(probe, text)[1])
    tok_encode = getattr(lm, "tok_encode", None)
    if callable(tok_encode):
        return lambda text: len(tok_encode(text))
    return None


def active_token_counter() -> TokenCounter:
    """The counter the runner made active; GateError outside a run that has one."""
    if _ACTIVE is None:
        raise GateError(
            "the helpfulness task needs the model's tokenizer to count reference tokens; run it through "
            "mlflow_nlsr.gates.run_gates (or `mlflow nlsr gate`) with a model that has a tokenizer"
        )
    return _ACTIVE


@contextmanager
def use_token_counter(counter: TokenCounter | None) -> Iterator[TokenCounter | None]:
    """Make `counter` the active token counter inside the ``with`` block (None: none)."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, counter
    try:
        yield counter
    finally:
        _ACTIVE = previous
