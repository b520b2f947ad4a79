"""Temperature / top-p sampling from a soft prefix, with continuous batching over a slot KV cache.

Each row gets its own random stream (a ``torch.Generator`` seeded per sample, one uniform draw over
the vocabulary per generated token), and tokens are drawn with the Gumbel-max trick, so a sample
depends only on its seed and its prefix: the same sample id gives the same text whatever the batch
size, the number of ranks, or whether the run was resumed.

Rows run in ``batch_size`` slots. When a row ends (EOS or its cap), the next waiting row is
prefilled and written into the freed slot of the KV cache, so the batch stays full; once nothing
waits, finished rows are dropped from the batch instead. The cache (:class:`SlotCache`) keeps every
layer's keys and values in one preallocated buffer, each row right-aligned at the current length
with its own padding mask and position ids, so a step appends in place instead of concatenating.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, NamedTuple, Sequence

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from synthtune.components import progress

#: How many top logits are examined before falling back to a full sort for top-p (see ``nucleus_argmax``).
TOP_P_CANDIDATES = 64
#: Left columns that every row masks out are cut from the cache once there are at least this many.
TRIM_COLUMNS = 32
#: Rows per thread below which the per-row random draws stay on the calling thread.
ROWS_PER_DRAW_THREAD = 4
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool) of the draw threads


def cache_argument(forward) -> str:
    """The name under which ``forward`` takes its KV cache: ``cache`` in current transformers, ``past_key_values``
    in releases before the rename (e.g. the transformers < 5.20 that vLLM 0.32 pins), which ignore ``cache=``
    silently and would decode every step without the cache."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def sample_seed(base_seed: int, sample_id: int, *salt: object) -> int:
    """A 63-bit seed that depends only on the run seed, the sample id and ``salt`` (the method and
    stage), so resumed and sharded runs reproduce a sample while different methods, or different
    stages of one method, never share a random stream."""
    key = ":".join(str(part) for part in (base_seed, sample_id, *salt)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every logit outside the smallest set whose probability mass reaches ``top_p``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def _draw_pool(workers: int) -> ThreadPoolExecutor:
    """This process's thread pool for the per-row draws (a forked child makes its own: threads do not fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < workers:
        if _POOL is not None and _POOL[0] == os.getpid():
            _POOL[2].shutdown(wait=False)  # a wider pool replaces it; its idle threads exit
        _POOL = (os.getpid(), workers, ThreadPoolExecutor(workers, thread_name_prefix="synthtune-draw"))
    return _POOL[2]


def uniform_rows(generators: Sequence[torch.Generator], vocab: int, device: torch.device) -> torch.Tensor:
    """One row of U(0, 1) per generator, [B, V]: each sample's stream advances by one draw per token.

    A row's draw is serial inside its generator (about 0.2 ms for a 49K vocabulary on one core), so the
    rows are split over up to ``torch.get_num_threads()`` threads; each row is written in place by its
    own generator, so the values do not depend on the split."""
    uniform = torch.empty(len(generators), vocab)
    inference = torch.is_inference_mode_enabled()  # thread-local: the workers take the caller's mode

    def draw(rows: range) -> None:
        with torch.inference_mode(inference):
            for r in rows:
                torch.rand(vocab, generator=generators[r], out=uniform[r])

    workers = min(torch.get_num_threads(), len(generators) // ROWS_PER_DRAW_THREAD)
    if workers < 2:
        draw(range(len(generators)))
    else:
        bounds = [len(generators) * i // workers for i in range(workers + 1)]
        pool = _draw_pool(workers - 1)
        futures = [pool.submit(draw, range(lo, hi)) for lo, hi in zip(bounds[1:-1], bounds[2:])]
        draw(range(bounds[0], bounds[1]))  # this thread takes the first share
        for future in futures:
            future.result()
    return uniform.to(device)


def gumbel(uniform: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Standard Gumbel noise from uniforms: g = -log(-log u) (overwriting ``uniform`` when ``inplace``)."""
    u = uniform.clamp_(1e-10, 1.0 - 1e-7) if inplace else uniform.clamp(1e-10, 1.0 - 1e-7)
    return u.log_().neg_().log_().neg_()


def nucleus_argmax(logits: torch.Tensor, uniform: torch.Tensor, top_p: float,
                   candidates: int = TOP_P_CANDIDATES) -> torch.Tensor:
    """argmax(top_p_filter(logits) + gumbel(uniform)) per row, sorting only the top ``candidates``
    logits of the rows whose nucleus lies inside them (the rest take the full sort)."""
    k = min(candidates, logits.shape[-1])
    values, index = logits.topk(k, dim=-1)  # descending, like the full sort's first k entries
    top = values[:, :1]
    probs = torch.exp(values - top) / torch.exp(logits - top).sum(-1, keepdim=True)  # softmax over the vocabulary
    mass_before = torch.cumsum(probs, dim=-1) - probs
    keep = mass_before < top_p
    score = (values + gumbel(uniform.gather(-1, index))).masked_fill(~keep, float("-inf"))
    choice = index.gather(-1, score.argmax(-1, keepdim=True)).squeeze(-1)
    wide = keep[:, -1]  # the k-th logit is still inside the nucleus: the nucleus may extend past the top k
    if bool(wide.any()):
        rows = wide.nonzero().squeeze(-1)
        choice[rows] = (top_p_filter(logits[rows], top_p) + gumbel(uniform[rows])).argmax(-1)
    return choice


def penalize_repeats(logits: torch.Tensor, history: Sequence[Sequence[int]], penalty: float) -> torch.Tensor:
    """Make each row's already generated tokens less likely (CTRL's repetition penalty, as in Hugging Face's
    ``repetition_penalty``): a positive logit of a token in the row's ``history`` is divided by ``penalty``, a
    negative one multiplied by it. ``penalty`` 1 returns ``logits`` unchanged; the result is float32."""
    rows = [r for r, seen in enumerate(history) if seen] if penalty != 1.0 else []
    if not rows:
        return logits.float()
    logits = logits.float().clone()
    width = max(len(history[r]) for r in rows)
    # each row's history, padded by repeating its first token (scatter writes the same value twice)
    index = torch.tensor([list(history[r]) + [history[r][0]] * (width - len(history[r])) for r in rows],
                         dtype=torch.long, device=logits.device)
    picked = torch.tensor(rows, dtype=torch.long, device=logits.device)
    sub = logits[picked]  # a copy (advanced indexing), written back below
    scores = sub.gather(-1, index)
    scores = torch.where(scores > 0, scores / penalty, scores * penalty)  # CTRL: s/θ if s > 0 else s·θ
    logits[picked] = sub.scatter_(-1, index, scores)
    return logits


def next_tokens(logits: torch.Tensor, temperature: float, top_p: float,
                generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Sample one token per row from softmax(logits / temperature) restricted to the top-p set."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    uniform = uniform_rows(generators, logits.shape[-1], logits.device)
    if top_p >= 1.0:
        return logits.add_(gumbel(uniform, inplace=True)).argmax(dim=-1)
    return nucleus_argmax(logits, uniform, top_p)


class SlotLayer(DynamicLayer):
    """One attention layer's keys and values in a preallocated [rows, heads, capacity, dim] buffer.

    Columns ``[0, length)`` are in use; a step writes its new columns at ``length`` (no concatenation)
    and the buffer doubles when full. Rows are right-aligned: a row's padding is masked, not stored apart.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.keys = key_states.new_empty(*key_states.shape[:2], 0, key_states.shape[3])
        self.values = value_states.new_empty(*value_states.shape[:2], 0, value_states.shape[3])
        self.is_initialized = True

    def _reserve(self, columns: int) -> None:
        if columns <= self.keys.shape[2]:
            return
        capacity = max(columns, 2 * self.keys.shape[2])
        for name in ("keys", "values"):
            old = getattr(self, name)
            new = old.new_empty(old.shape[0], old.shape[1], capacity, old.shape[3])
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[2]
        self._reserve(end)
        self.keys[:, :, self.length:end] = key_states
        self.values[:, :, self.length:end] = value_states
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        super().reset()
        self.length = 0


class SlotCache(Cache):
    """A KV cache of :class:`SlotLayer` whose rows can be dropped, refilled and trimmed between steps."""

    def __init__(self) -> None:
        super().__init__(layer_class_to_replicate=SlotLayer)

    @property
    def length(self) -> int:
        return self.layers[0].length if self.layers else 0

    def keep_rows(self, index: torch.Tensor) -> None:
        """Compact the batch to the rows ``index`` (in that order), moving only the rows whose place changes.

        Row ``i`` becomes row ``index[i]``; the rows with ``index[i] == i`` stay where they are, and the buffer
        is cut to ``len(index)`` rows as a view, so an order from :func:`compaction_order` copies only the
        few rows that fill the holes instead of the whole cache."""
        moved = (index != torch.arange(len(index), device=index.device)).nonzero().squeeze(-1)
        source = index[moved]
        for layer in self.layers:
            for name in ("keys", "values"):
                buf = getattr(layer, name)
                if len(moved):
                    buf[moved] = buf[source]  # the right side is a copy: sources are read before writing
                setattr(layer, name, buf[: len(index)])

    def pad_left(self, columns: int) -> None:
        """Shift every row ``columns`` to the right (the new columns are masked padding)."""
        for layer in self.layers:
            for name in ("keys", "values"):
                old = getattr(layer, name)
                new = old.new_zeros(old.shape[0], old.shape[1], layer.length + columns, old.shape[3])
                new[:, :, columns:] = old[:, :, : layer.length]
                setattr(layer, name, new)
            layer.length += columns

    def trim_left(self, columns: int) -> None:
        """Drop the first ``columns`` columns (masked in every row): the buffer becomes a view that starts
        after them, so nothing is copied (the buffer's free columns at the end stay as they were)."""
        for layer in self.layers:
            layer.keys, layer.values = layer.keys[:, :, columns:], layer.values[:, :, columns:]
            layer.length -= columns

    def place(self, slots: torch.Tensor, fresh: "SlotCache") -> None:
        """Write every row of ``fresh`` into ``slots``, right-aligned at the current length."""
        width = fresh.length
        for layer, new in zip(self.layers, fresh.layers):
            layer.keys[slots, :, layer.length - width: layer.length] = new.keys[:, :, :width]
            layer.values[slots, :, layer.length - width: layer.length] = new.values[:, :, :width]


class Sampled(NamedTuple):
    """Per row: the generated token ids (EOS excluded) and whether the row ended with EOS
    (``False``: it stopped at its ``max_new_tokens`` cap)."""

    tokens: list[list[int]]
    finished: list[bool]


def supports_slots(model: nn.Module) -> bool:
    """Whether every attention layer of ``model`` is full (causal) attention, which :class:`SlotCache` holds;
    sliding-window or linear-attention layers run in fixed batches with the model's own cache."""
    config = model.config.get_text_config(decoder=True)
    return all(kind == "full_attention" for kind in (getattr(config, "layer_types", None) or []))


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device``: CUDA's free memory, or the host's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def auto_batch_size(model: nn.Module, sequence_length: int, memory_bytes: int | None = None,
                    fraction: float = 0.5, limit: int = 256) -> int:
    """The most sampling slots that fit in ``fraction`` of free memory, at most ``limit``.

    A slot holds a KV cache of ``sequence_length`` positions (2 × layers × KV heads × head dim ×
    bytes per position) and four vocabulary-sized float32 rows (logits, scaled logits, uniforms,
    Gumbel noise). ``memory_bytes`` defaults to :func:`available_memory` on the model's device.
    ``limit`` caps the batch where larger ones stop paying (CPU steps grow linearly past it).
    """
    config = model.config.get_text_config(decoder=True)
    weight = model.get_input_embeddings().weight
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv = 2 * config.num_hidden_layers * kv_heads * head_dim * weight.element_size() * sequence_length
    kv *= 2 if model.config.is_encoder_decoder else 1  # self-attention and cross-attention caches
    per_row = kv + 4 * 4 * weight.shape[0]
    free = available_memory(weight.device) if memory_bytes is None else memory_bytes
    return max(1, min(limit, int(free * fraction) // per_row))


def compaction_order(width: int, dropped: Iterable[int]) -> list[int]:
    """The slots to keep, in their new order, when ``dropped`` of ``width`` slots end: a kept slot below the
    new width stays in place and each hole below it takes a kept slot from above it, so compacting
    (:meth:`SlotCache.keep_rows`) moves as many rows as there are holes, not the whole batch."""
    gone = set(dropped)
    size = width - len(gone)
    movers = iter(s for s in range(size, width) if s not in gone)
    return [s if s not in gone else next(movers) for s in range(size)]


def record(rows: list[int], drawn: list[int], tokens: list[list[int]], finished: list[bool], caps: list[int],
           eos: set[int]) -> list[int]:
    """Append each slot's drawn token to its row's output (an EOS token ends the row and is not kept);
    return the slots whose rows ended (EOS, marked in ``finished``, or their cap)."""
    ended = []
    for slot, (row, token) in enumerate(zip(rows, drawn)):
        if token in eos:
            finished[row] = True
            ended.append(slot)
            continue
        tokens[row].append(token)
        if len(tokens[row]) >= caps[row]:
            ended.append(slot)
    return ended


def sample_seq2seq(model: nn.Module, prefix: torch.Tensor, mask: torch.Tensor, queue: deque, generators: list,
                   caps: list[int], eos: set[int], temperature: float, top_p: float, batch_size: int,
                   tokens: list[list[int]], finished: list[bool], repetition_penalty: float = 1.0) -> None:
    """The encoder-decoder (T5) case of :func:`sample_from_prefix`: the prefix is the encoder's input;
    batches of ``batch_size`` rows decode from the decoder start token together, and rows that end
    are dropped from the batch (decoder positions are shared, so freed slots are not refilled)."""
    from transformers.cache_utils import EncoderDecoderCache
    from transformers.modeling_outputs import BaseModelOutput

    start = model.config.decoder_start_token_id
    cache_name = cache_argument(model.forward)
    while queue:
        rows = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
        enc_mask = mask[rows]
        encoded = model.get_encoder()(inputs_embeds=prefix[rows], attention_mask=enc_mask).last_hidden_state
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        step = torch.full((len(rows), 1), start, dtype=torch.long, device=prefix.device)
        while rows:
            out = model(encoder_outputs=BaseModelOutput(last_hidden_state=encoded), attention_mask=enc_mask,
                        decoder_input_ids=step, use_cache=True, **{cache_name: cache})
            logits = penalize_repeats(out.logits[:, -1], [tokens[r] for r in rows], repetition_penalty)
            drawn = next_tokens(logits, temperature, top_p, [generators[r] for r in rows]).tolist()
            ended = set(record(rows, drawn, tokens, finished, caps, eos))
            progress.advance(len(ended))
            keep = [s for s in range(len(rows)) if s not in ended]
            if ended and keep:
                index = torch.tensor(keep, dtype=torch.long, device=prefix.device)
                cache.batch_select_indices(index)
                encoded, enc_mask = encoded[index], enc_mask[index]
            rows, drawn = [rows[s] for s in keep], [drawn[s] for s in keep]
            step = torch.tensor(drawn, dtype=torch.long, device=prefix.device).unsqueeze(1)


@torch.inference_mode()
def sample_from_prefix(
    model: nn.Module,
    prefix: torch.Tensor,
    seeds: Sequence[int],
    max_new_tokens: int | Sequence[int],
    eos_token_ids: Iterable[int],
    temperature: float = 1.0,
    top_p: float = 1.0,
    attention_mask: torch.Tensor | None = None,
    batch_size: int | None = None,
    return_finished: bool = False,
    repetition_penalty: float = 1.0,
) -> list[list[int]] | Sampled:
    """Generate up to ``max_new_tokens`` tokens after each prefix row; stop a row at EOS.

    Args:
        model: a frozen Hugging Face causal LM, or an encoder-decoder (T5) one.
        prefix: [N, t, d] soft prompt vectors (the model's whole input context; for an encoder-decoder,
            the encoder's input, and decoding starts from the decoder start token).
        seeds: one seed per row.
        max_new_tokens: hard cap on generated tokens, one for all rows or one per row.
        eos_token_ids: tokens that end a sample (not included in the output).
        temperature: softmax temperature; 0 means greedy.
        top_p: nucleus sampling mass; 1 disables it.
        attention_mask: [N, t] mask of a left-padded prefix (0 = padding); ``None`` means no padding.
        batch_size: rows decoded at once (continuous batching refills a slot as its row ends);
            ``None`` picks it from free memory with :func:`auto_batch_size`.
        return_finished: also return, per row, whether it ended with EOS (see :class:`Sampled`).
        repetition_penalty: CTRL's penalty on the tokens a row has already generated (see
            :func:`penalize_repeats`); 1 disables it.

    Returns:
        One list of token ids per row, or a :class:`Sampled` when ``return_finished``.
    """
    n = prefix.shape[0]
    if n != len(seeds):
        raise ValueError(f"{n} prefixes but {len(seeds)} seeds")
    caps = [int(max_new_tokens)] * n if isinstance(max_new_tokens, int) else [int(c) for c in max_new_tokens]
    if len(caps) != n:
        raise ValueError(f"{n} prefixes but {len(caps)} max_new_tokens")
    if batch_size is None:
        batch_size = auto_batch_size(model, prefix.shape[1] + max(caps, default=0))
    dtype = model.get_input_embeddings().weight.dtype
    prefix = prefix.to(dtype)
    mask_all = (torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device) if attention_mask is None
                else attention_mask.to(prefix.device).long())
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    eos_set = set(eos_token_ids)
    tokens: list[list[int]] = [[] for _ in range(n)]
    finished = [False] * n
    queue = deque(i for i in range(n) if caps[i] > 0)
    if model.config.is_encoder_decoder:
        sample_seq2seq(model, prefix, mask_all, queue, generators, caps, eos_set, temperature, top_p, batch_size,
                       tokens, finished, repetition_penalty)
        return Sampled(tokens, finished) if return_finished else tokens
    base, head = model.base_model, model.get_output_embeddings()
    slots = supports_slots(model)
    cache_name = cache_argument(base.forward)

    def prefill(new: list[int]):
        """Run the prefixes of rows ``new`` (cut to their longest real length) into a fresh cache."""
        mask = mask_all[new]
        width = int(mask.sum(-1).max())
        mask = mask[:, mask.shape[1] - width:]
        cache = SlotCache() if slots else DynamicCache(config=model.config)
        out = base(inputs_embeds=prefix[new][:, -width:], attention_mask=mask,
                   position_ids=(mask.cumsum(-1) - 1).clamp_min(0), use_cache=True, **{cache_name: cache})
        return cache, mask, out.last_hidden_state[:, -1], mask.sum(-1)

    rows: list[int] = []  # the sample in each slot
    while rows or queue:
        if not rows:  # start a batch
            rows = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
            cache, mask, last, position = prefill(rows)
        logits = penalize_repeats(head(last), [tokens[r] for r in rows], repetition_penalty)
        drawn = next_tokens(logits, temperature, top_p, [generators[r] for r in rows]).tolist()
        free = record(rows, drawn, tokens, finished, caps, eos_set)
        progress.advance(len(free))  # samples that ended: the predict progress line counts them
        live, drawn_free = len(rows) - len(free), bool(free)
        if free and not (slots and queue):  # nothing to refill with: drop the finished rows before the step
            keep = torch.tensor(compaction_order(len(rows), free), dtype=torch.long, device=mask.device)
            rows = [rows[s] for s in keep.tolist()]
            if not rows:
                continue
            drawn = [drawn[s] for s in keep.tolist()]
            mask, last, position = mask[keep], last[keep], position[keep]
            if slots:
                cache.keep_rows(keep)
            else:
                cache.batch_select_indices(keep)
            free = []
        if live:  # one decoding step for every slot (a freed slot's result is overwritten below)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            out = base(input_ids=torch.tensor(drawn, device=mask.device).unsqueeze(1), attention_mask=mask,
                       position_ids=position.unsqueeze(1), use_cache=True, **{cache_name: cache})
            last, position = out.last_hidden_state[:, -1], position + 1
        if free:  # refill freed slots with waiting rows, drop the slots left over
            new = [queue.popleft() for _ in range(min(len(free), len(queue)))]
            fresh, new_mask, new_last, new_position = prefill(new)
            if fresh.length > cache.length:
                pad = fresh.length - cache.length
                cache.pad_left(pad)
                mask = torch.cat([mask.new_zeros(mask.shape[0], pad), mask], dim=1)
            index = torch.tensor(free[: len(new)], dtype=torch.long, device=mask.device)
            cache.place(index, fresh)
            mask[index] = 0
            mask[index, mask.shape[1] - new_mask.shape[1]:] = new_mask
            last[index], position[index] = new_last, new_position
            for slot, row in zip(free, new):
                rows[slot] = row
            if len(free) > len(new):
                keep = torch.tensor(compaction_order(len(rows), free[len(new):]), dtype=torch.long,
                                    device=mask.device)
                rows = [rows[s] for s in keep.tolist()]
                mask, last, position = mask[keep], last[keep], position[keep]
                cache.keep_rows(keep)
        if slots and drawn_free:
            dead = int(mask.any(0).long().argmax())  # leading columns masked in every row
            if dead >= TRIM_COLUMNS:
                cache.trim_left(dead)
                mask = mask[:, dead:]
    return Sampled(tokens, finished) if return_finished else tokens
