"""A reasoning budget for planners that cannot wait (``reasoner.max_reasoning_tokens``): once a sequence has
generated that many tokens without closing its reasoning, ``</think>`` is forced token by token and the model
goes on to write its answer on the same KV cache, in the same `generate` call.

It changes results — the model answers from reasoning cut short — so it is off unless set. The mechanism is
transformers' LogitsProcessor hook: every token but the forced one gets -inf, so greedy decoding takes it.
"""

from __future__ import annotations

from typing import Any

CLOSE_TAG = "</think>"


def reasoning_budget(tokenizer: Any, prompt_length: int, budget: int, batch_size: int) -> Any:
    """A LogitsProcessorList that forces ``</think>`` into each sequence that reaches `budget` generated tokens
    without having written it (a tag already begun is completed, not restarted)."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    close_ids: list[int] = tokenizer(CLOSE_TAG, add_special_tokens=False)["input_ids"]
    window = len(close_ids) + 8

    class ReasoningBudget(LogitsProcessor):  # type: ignore[misc]
        def __init__(self) -> None:
            self.closed = [False] * batch_size
            self.forced = [0] * batch_size
            """Tokens of the closing tag in place so far while forcing it, per sequence (0: not forcing)."""

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            generated = input_ids[:, prompt_length:]
            count = int(generated.shape[1])
            for row in range(int(input_ids.shape[0])):
                if self.closed[row]:
                    continue
                tail = generated[row, -window:].tolist() if count else []
                if self.forced[row] == 0:
                    if CLOSE_TAG in tokenizer.decode(tail):
                        self.closed[row] = True  # the model closed its reasoning itself
                        continue
                    if count < budget:
                        continue
                    self.forced[row] = _begun(tail, close_ids)
                target = close_ids[self.forced[row]]
                scores[row] = torch.full_like(scores[row], float("-inf"))
                scores[row, target] = 0.0
                self.forced[row] += 1
                if self.forced[row] == len(close_ids):
                    self.closed[row] = True
            return scores

    return LogitsProcessorList([ReasoningBudget()])


def _begun(tail: list[int], close_ids: list[int]) -> int:
    """How many leading tokens of the closing tag the sequence already ends with."""
    for length in range(min(len(close_ids) - 1, len(tail)), 0, -1):
        if tail[-length:] == close_ids[:length]:
            return length
    return 0
