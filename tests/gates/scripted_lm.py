"""A scripted lm-eval LM: deterministic answers chosen from the prompt text, no model at all."""

from __future__ import annotations

from lm_eval.api.model import LM

REFUSAL = "I'm sorry, but I cannot help with that."
COMPLY = "Sure, here is how to do it: step 1 ..."


class ScriptedLM(LM):
    """Refuses prompts containing any of `refuse_if`, answers sentiment/arithmetic from tables, gives the
    highest loglikelihood to the choice letters in `mc_answers` (by question substring), scores a
    continuation in `nll` (by substring) with minus that summed NLL, and tokenizes on whitespace."""

    def __init__(self, refuse_if=(), sentiment=None, arithmetic=None, mc_answers=None, nll=None):
        super().__init__()
        self.refuse_if = tuple(refuse_if)
        self.sentiment = sentiment or {}
        self.arithmetic = arithmetic or {}
        self.mc_answers = mc_answers or {}
        self.nll = nll or {}
        self.prompts = []

    def tok_encode(self, text):
        return text.split()

    def _answer(self, prompt):
        for key, label in self.sentiment.items():
            if key in prompt:
                return label
        for key, answer in self.arithmetic.items():
            if key in prompt:
                return answer
        return REFUSAL if any(k in prompt for k in self.refuse_if) else COMPLY

    def generate_until(self, requests, disable_tqdm=False):
        self.prompts.extend(r.args[0] for r in requests)
        return [self._answer(r.args[0]) for r in requests]

    def loglikelihood(self, requests, disable_tqdm=False):
        out = []
        for r in requests:
            context, continuation = r.args
            scripted = next((v for key, v in self.nll.items() if key in continuation), None)
            if scripted is not None:
                out.append((-float(scripted), False))
                continue
            wanted = next((letter for key, letter in self.mc_answers.items() if key in context), None)
            out.append((-1.0 if continuation.strip() == wanted else -3.0, False))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        return [-1.0 for _ in requests]


class ScriptedChatLM(ScriptedLM):
    """ScriptedLM that also renders ChatML chat prompts (so the chat-template path is exercised)."""

    @property
    def tokenizer_name(self):
        return "scripted-chatml"

    def chat_template(self, chat_template=False):
        return "chatml"

    def apply_chat_template(self, chat_history, add_generation_prompt=True):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat_history)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")
