"""The native sampler's repetition penalty inside vLLM: CTRL's penalty on the tokens a sample has generated.

vLLM's own ``repetition_penalty`` also counts the prompt's tokens, and for a prompt given as embeddings it
reads token ids that the request does not have (whatever an earlier request left in the batch slot), so a
sample would depend on its neighbours. synthtune's penalty counts only the generated tokens (a reply is not
pushed away from the examples its prompt holds), so the vLLM engine leaves vLLM's penalty at 1 and applies
:func:`~synthtune.components.sampling.penalize_repeats` through this logits processor, before temperature and
top-p, as the native sampler does. A request opts in with ``SamplingParams(extra_args={REPETITION_PENALTY_ARG: penalty})``.

vLLM loads this class by its name (``logits_processors=[...]``); it imports vLLM, so nothing else imports it.
"""

from __future__ import annotations

from functools import partial

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from synthtune.components.engines.sampling_params import REPETITION_PENALTY_ARG
from synthtune.components.sampling import penalize_repeats


def penalize_row(penalty: float, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
    """One request's logits ``[V]`` with its generated tokens ``output_ids`` penalised (CTRL: s/θ if s > 0 else s·θ)."""
    return penalize_repeats(logits.unsqueeze(0), [output_ids], penalty)[0].to(logits.dtype)


class GeneratedTokensRepetitionPenalty(AdapterLogitsProcessor):
    """Per request: CTRL's repetition penalty over the tokens generated so far (never the prompt's)."""

    def is_argmax_invariant(self) -> bool:
        return False  # it changes greedy choices too, as the native sampler's penalty does

    def new_req_logits_processor(self, params: SamplingParams):
        penalty = float((params.extra_args or {}).get(REPETITION_PENALTY_ARG, 1.0))
        return None if penalty == 1.0 else partial(penalize_row, penalty)
