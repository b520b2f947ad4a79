"""How a generator samples: one settings type that checks its own values, shared by every generator."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from synthtune.errors import SynthtuneError


@dataclass(frozen=True)
class SamplingSettings:
    """How a generator samples (``--model.init_args.sampling``; every sample's random stream comes from the
    module's ``seed`` and the sample id).

    Args:
        temperature: softmax temperature, ≥ 0 (0 = greedy).
        top_p: nucleus sampling mass, in (0, 1] (1 disables it).
        max_new_tokens: longest generation, in tokens (≥ 1).
        repetition_penalty: CTRL's penalty on tokens a sample has already generated, > 0 (1 disables it;
            1.1-1.3 breaks repetition loops such as "She is 12. She is 18. ..."; below 1 favours repeats).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        wrong = []
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            wrong.append(f"temperature={self.temperature} (need ≥ 0; 0 is greedy)")
        if not 0.0 < self.top_p <= 1.0:
            wrong.append(f"top_p={self.top_p} (need 0 < top_p ≤ 1)")
        if not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0):
            wrong.append(f"repetition_penalty={self.repetition_penalty} (need > 0; 1 disables it)")
        if self.max_new_tokens < 1:
            wrong.append(f"max_new_tokens={self.max_new_tokens} (need ≥ 1)")
        if wrong:
            raise SynthtuneError("bad sampling settings: " + ", ".join(wrong) + "; fix them in --model.init_args.sampling")

    def as_dict(self, seed: int | None = None) -> dict[str, float | int]:
        """The settings as plain values, with the run ``seed`` when given (what each output row records in
        ``params``). The repetition penalty appears only when it is on, so samples written before it existed
        still resume under the same params."""
        values = asdict(self)
        if seed is not None:
            values["seed"] = seed
        if self.repetition_penalty == 1.0:
            del values["repetition_penalty"]
        return values


def sampling_settings(value: SamplingSettings | Mapping[str, Any]) -> SamplingSettings:
    """``value`` as :class:`SamplingSettings`; a mapping (a config read without the command-line parser, or a
    checkpoint's hyper-parameters) gives its fields."""
    if isinstance(value, SamplingSettings):
        return value
    if isinstance(value, Mapping):
        return SamplingSettings(**value)
    raise SynthtuneError(f"sampling must be a mapping of sampling settings, got {value!r}; "
                         f"set --model.init_args.sampling.temperature and the like")
