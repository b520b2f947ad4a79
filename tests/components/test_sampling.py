import pytest
import torch

from synthtune.components.backbone import load_backbone
from synthtune.components import sampling
from synthtune.components.sampling import sample_from_prefix, top_p_filter


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()
    assert torch.isfinite(top_p_filter(logits, 0.4)).tolist() == [[True, False, False, False]]


def test_a_sample_depends_on_its_seed_not_on_its_batch(tiny_llama):
    bb = load_backbone(tiny_llama)
    torch.manual_seed(0)
    prefix = torch.randn(3, 4, bb.hidden_size) * 0.1
    eos = [bb.tokenizer.eos_token_id]
    together = sample_from_prefix(bb.model, prefix, [11, 12, 13], 12, eos)
    alone = sample_from_prefix(bb.model, prefix[1:2], [12], 12, eos)
    assert together[1] == alone[0]
    again = sample_from_prefix(bb.model, prefix, [11, 12, 13], 12, eos)
    assert again == together
    other = sample_from_prefix(bb.model, prefix, [21, 22, 23], 12, eos)
    assert other != together


def test_greedy_matches_hf_generate(tiny_llama):
    bb = load_backbone(tiny_llama)
    prefix = torch.randn(2, 4, bb.hidden_size) * 0.1
    ours = sample_from_prefix(bb.model, prefix, [0, 1], 8, [-1], temperature=0.0)
    ref = bb.model.generate(inputs_embeds=prefix, attention_mask=torch.ones(2, 4, dtype=torch.long),
                            max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert ours == ref[:, -8:].tolist()


def test_rows_stop_at_eos_and_exclude_it(tiny_llama):
    bb = load_backbone(tiny_llama)
    prefix = torch.randn(2, 4, bb.hidden_size) * 0.1
    free = sample_from_prefix(bb.model, prefix, [5, 6], 10, [-1], temperature=0.0)
    stop_token = free[0][3]
    cut = sample_from_prefix(bb.model, prefix, [5, 6], 10, [stop_token], temperature=0.0)
    assert cut[0] == free[0][: free[0].index(stop_token)]
    assert stop_token not in cut[1]


def test_left_padded_prompts_give_the_same_text_as_alone(tiny_llama):
    from synthtune.components.sampling_settings import SamplingSettings
    from synthtune.components.text_generation import generate_from_text

    bb = load_backbone(tiny_llama)
    prompts = ["Write a question about apples", "Hi"]
    greedy = SamplingSettings(temperature=0.0, max_new_tokens=8)
    together, _ = generate_from_text(bb.model, bb.tokenizer, prompts, [3, 4], greedy)
    alone, _ = generate_from_text(bb.model, bb.tokenizer, prompts[1:], [4], greedy)
    assert together[1] == alone[0]
    ref = bb.model.generate(**bb.tokenizer(["Hi"], return_tensors="pt"), max_new_tokens=8, do_sample=False,
                            eos_token_id=bb.tokenizer.eos_token_id, pad_token_id=bb.tokenizer.pad_token_id)
    assert alone[0] == bb.tokenizer.decode(ref[0, -8:], skip_special_tokens=True).strip()
    texts, hit_cap = generate_from_text(bb.model, bb.tokenizer, prompts, [3, 4], greedy, batch_size=1)
    assert texts == together and hit_cap == [True, True]  # greedy ran both prompts to the 8-token cap


# Token ids drawn by the sampler as it was before continuous batching (one batch run until its longest
# row ended), for the same seeds: the sampler may get faster, but a seed must keep its text.
PINNED = {
    ("llama", False): [[173], [481, 364, 484, 332, 497, 57, 249, 394], [13, 54], [261, 334, 38, 185],
                       [506, 472, 114, 474, 281, 431, 141, 457, 2, 422, 425, 432, 267, 61, 35, 410, 408, 250, 215,
                        259],
                       [226, 406, 107, 205, 17, 221, 300, 349, 130]],
    ("gpt2", False): [[173], [481, 364, 484, 332, 497, 57, 249, 394],
                      [13, 219, 86, 302, 449, 43, 14, 359, 52, 110, 148, 213, 269, 305, 167, 325], [261, 334],
                      [506, 167, 114, 474, 281, 431, 141, 457],
                      [226, 406, 342, 205, 17, 152, 300, 349, 386, 211, 192, 493, 50]],
    ("llama", True): [[173], [481, 364, 484, 332, 497, 57, 249, 394], [13, 54],
                      [261, 334, 38, 185, 192, 258, 252, 175, 37, 27, 328],
                      [506, 269, 114, 474, 281, 431, 141, 457, 2, 422, 425, 432, 267, 61, 35, 410, 408, 250, 215,
                       259],
                      [226, 406, 107, 205, 17, 221, 300, 349, 130]],
}
# The same for temperature 1 without top-p (the full-vocabulary Gumbel path), llama, unpadded.
PINNED_FULL_VOCAB = [[173], [481, 364, 484, 332, 497, 57, 249, 394], [13, 54], [261, 334, 38, 185],
                     [506, 186, 114, 474, 281, 431, 141, 457, 2, 422, 425, 432, 267, 61, 35, 410, 408, 250, 215, 259],
                     [226, 406, 107, 205, 17, 152, 300, 349, 386]]
PINNED_EOS = {"llama": [309, 247, 327, 168, 211], "gpt2": [38, 327, 168, 309, 369]}


def pinned_inputs(bb, padded: bool):
    """Six prefixes of 5 vectors (left-padded to 5, 2, 4, 1, 3, 5 real positions when ``padded``)."""
    g = torch.Generator().manual_seed(7)
    prefix = torch.randn(6, 5, bb.hidden_size, generator=g) * 0.5
    mask = None
    if padded:
        mask = torch.ones(6, 5, dtype=torch.long)
        for row, n in enumerate([5, 2, 4, 1, 3, 5]):
            mask[row, : 5 - n] = 0
    return prefix, mask


@pytest.mark.parametrize("arch,padded", [("llama", False), ("gpt2", False), ("llama", True)])
@pytest.mark.parametrize("batch_size", [None, 1, 2, 4])
def test_the_same_seeds_give_the_pinned_tokens(arch, padded, batch_size, request):
    bb = load_backbone(request.getfixturevalue(f"tiny_{arch}"))
    prefix, mask = pinned_inputs(bb, padded)
    tokens = sample_from_prefix(bb.model, prefix, list(range(100, 106)), 20, PINNED_EOS[arch], temperature=0.9,
                                top_p=0.9, attention_mask=mask, batch_size=batch_size)
    assert tokens == PINNED[(arch, padded)]



@pytest.mark.parametrize("batch_size", [None, 2])
def test_the_same_seeds_give_the_pinned_tokens_without_top_p(batch_size, tiny_llama):
    bb = load_backbone(tiny_llama)
    prefix, _ = pinned_inputs(bb, padded=False)
    tokens = sample_from_prefix(bb.model, prefix, list(range(100, 106)), 20, PINNED_EOS["llama"], temperature=1.0,
                                top_p=1.0, batch_size=batch_size)
    assert tokens == PINNED_FULL_VOCAB


@pytest.mark.parametrize("slots", [True, False])
def test_continuous_batching_keeps_each_text_whatever_the_order_and_batch(slots, tiny_llama, monkeypatch):
    """Rows refill freed slots (or, without slot support, run in fixed batches), the cache is trimmed
    as it goes, and every sample still gets the text it gets alone."""
    monkeypatch.setattr(sampling, "TRIM_COLUMNS", 2)
    monkeypatch.setattr(sampling, "supports_slots", lambda model: slots)
    bb = load_backbone(tiny_llama)
    prefix, mask = pinned_inputs(bb, padded=True)
    prefix, mask = prefix.repeat(3, 1, 1), mask.repeat(3, 1)  # 18 rows: each slot is refilled several times
    seeds = list(range(100, 118))
    eos = PINNED_EOS["llama"]
    alone = [sample_from_prefix(bb.model, prefix[i:i + 1], seeds[i:i + 1], 20, eos, temperature=0.9, top_p=0.9,
                                attention_mask=mask[i:i + 1])[0] for i in range(18)]
    assert alone[:6] == PINNED[("llama", True)]
    assert len({len(t) for t in alone}) >= 4  # rows end at different steps, so slots free at different times
    for batch_size in (3, 5):
        together = sample_from_prefix(bb.model, prefix, seeds, 20, eos, temperature=0.9, top_p=0.9,
                                      attention_mask=mask, batch_size=batch_size)
        assert together == alone
    order = list(reversed(range(18)))
    backwards = sample_from_prefix(bb.model, prefix[order], [seeds[i] for i in order], 20, eos, temperature=0.9,
                                   top_p=0.9, attention_mask=mask[order], batch_size=4)
    assert backwards == [alone[i] for i in order]


def test_each_row_says_whether_it_ended_at_eos_or_at_its_cap(tiny_llama):
    bb = load_backbone(tiny_llama)
    prefix, _ = pinned_inputs(bb, padded=False)
    pinned = PINNED[("llama", False)]
    out = sample_from_prefix(bb.model, prefix, list(range(100, 106)), 20, PINNED_EOS["llama"], temperature=0.9,
                             top_p=0.9, batch_size=2, return_finished=True)
    assert out.tokens == pinned
    assert out.finished == [True, True, True, True, False, True]  # row 4 ran to the 20-token cap
    caps = [1, 3, 20, 20, 5, 0]
    capped = sample_from_prefix(bb.model, prefix, list(range(100, 106)), caps, PINNED_EOS["llama"],
                                temperature=0.9, top_p=0.9, batch_size=2, return_finished=True)
    assert capped.tokens == [t[:c] for t, c in zip(pinned, caps)]
    # row 0 drew EOS as its 2nd token, so a cap of 1 stops it first; row 2 ends at EOS before its cap
    assert capped.finished == [False, False, True, True, False, False]


def test_the_draws_do_not_depend_on_how_the_rows_are_split_over_threads(tiny_llama, monkeypatch):
    def draws(seeds):
        with torch.inference_mode():  # the sampler's mode, which the draw threads must take on
            return sampling.uniform_rows([torch.Generator().manual_seed(s) for s in seeds], 50, torch.device("cpu"))

    serial = draws(range(7))
    monkeypatch.setattr(sampling, "ROWS_PER_DRAW_THREAD", 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)  # rows 0-1 here, 2-3 and 4-6 on two pool threads
    assert torch.equal(draws(range(7)), serial)
    assert torch.equal(serial[3], torch.rand(50, generator=torch.Generator().manual_seed(3)))
    bb = load_backbone(tiny_llama)
    prefix, mask = pinned_inputs(bb, padded=True)
    tokens = sample_from_prefix(bb.model, prefix, list(range(100, 106)), 20, PINNED_EOS["llama"], temperature=0.9,
                                top_p=0.9, attention_mask=mask)
    assert tokens == PINNED[("llama", True)]


def test_compaction_fills_each_hole_from_the_end_and_moves_nothing_else():
    assert sampling.compaction_order(5, [1, 3]) == [0, 4, 2]  # slot 1 takes slot 4; slot 3 is cut off the end
    assert sampling.compaction_order(4, [3]) == [0, 1, 2]
    assert sampling.compaction_order(3, [0, 1, 2]) == []
    cache = sampling.SlotCache()
    layer = sampling.SlotLayer()
    keys = torch.arange(5 * 2 * 4 * 3, dtype=torch.float32).view(5, 2, 4, 3)
    layer.update(keys.clone(), -keys.clone())
    cache.layers.append(layer)
    for index in ([0, 4, 2], [2, 0]):  # a hole filled from the end, and an order that moves every row
        before_k, before_v, buffer = layer.keys.clone(), layer.values.clone(), layer.keys.data_ptr()
        cache.keep_rows(torch.tensor(index))
        assert torch.equal(layer.keys, before_k[index]) and torch.equal(layer.values, before_v[index])
        assert layer.keys.data_ptr() == buffer  # rows moved within the buffer: no copy of the whole cache
        assert layer.keys[:, :, : layer.length].shape[0] == len(index)
    layer.update(keys[:2, :, :1], keys[:2, :, :1])  # the cut buffer still takes a step's new column
    assert layer.length == 5 and torch.equal(layer.keys[:, :, 4], keys[:2, :, 0])


def test_trimming_dead_columns_copies_nothing_and_keeps_room_to_grow():
    cache, layer = sampling.SlotCache(), sampling.SlotLayer()
    keys = torch.arange(2 * 1 * 4 * 3, dtype=torch.float32).view(2, 1, 4, 3)
    layer.update(keys.clone(), keys.clone())
    cache.layers.append(layer)
    storage = layer.keys.untyped_storage().data_ptr()
    cache.trim_left(3)
    assert layer.length == 1 and torch.equal(layer.keys[:, :, :1], keys[:, :, 3:])
    assert layer.keys.untyped_storage().data_ptr() == storage  # a view of the same buffer
    step = torch.full((2, 1, 2, 3), -1.0)  # two new columns: more than the view holds, so it grows
    k, _ = layer.update(step, step)
    assert torch.equal(k, torch.cat([keys[:, :, 3:], step], dim=2))


def test_nucleus_from_the_top_candidates_matches_the_full_sort():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(64, 300, generator=g) * torch.linspace(0.5, 6.0, 64).unsqueeze(1)
    uniform = torch.rand(64, 300, generator=g)
    for top_p in (0.3, 0.9, 0.99):
        full = (top_p_filter(logits, top_p) + sampling.gumbel(uniform)).argmax(-1)
        for candidates in (8, 64):  # 8: many rows' nucleus is wider and takes the fallback
            assert torch.equal(sampling.nucleus_argmax(logits, uniform, top_p, candidates), full)


def test_sampling_raises_no_future_warning(tiny_llama, tiny_gpt2):
    import warnings

    for folder in (tiny_llama, tiny_gpt2):
        bb = load_backbone(folder)
        prefix, mask = pinned_inputs(bb, padded=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tokens = sample_from_prefix(bb.model, prefix, list(range(6)), 6, [-1], attention_mask=mask, batch_size=2)
        assert [len(t) for t in tokens] == [6] * 6  # no EOS: every row ran to the cap
        assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []


def test_batch_size_comes_from_free_memory(tiny_llama):
    bb = load_backbone(tiny_llama)
    config = bb.model.config
    # per slot: K and V, 2 layers x 2 KV heads x head dim 8 x 4 bytes x 100 positions, plus 4 fp32 vocab rows
    per_row = 2 * 2 * 2 * 8 * 4 * 100 + 16 * config.vocab_size
    assert sampling.auto_batch_size(bb.model, 100, memory_bytes=10 * per_row, fraction=1.0) == 10
    assert sampling.auto_batch_size(bb.model, 100, memory_bytes=10 * per_row, fraction=0.5) == 5
    assert sampling.auto_batch_size(bb.model, 100, memory_bytes=10**12) == 256
    assert sampling.auto_batch_size(bb.model, 100, memory_bytes=0) == 1


def test_t5_samples_from_its_encoder_prefix(tiny_t5):
    bb = load_backbone(tiny_t5)
    g = torch.Generator().manual_seed(1)
    prefix = torch.randn(5, 4, bb.hidden_size, generator=g)
    mask = torch.ones(5, 4, dtype=torch.long)
    mask[1, :2] = 0  # encoder padding
    ours = sample_from_prefix(bb.model, prefix, list(range(5)), 6, [-1], temperature=0.0, attention_mask=mask,
                              batch_size=2)
    ref = bb.model.generate(inputs_embeds=prefix, attention_mask=mask, max_new_tokens=6, do_sample=False,
                            eos_token_id=None, pad_token_id=bb.tokenizer.pad_token_id)
    assert ours == ref[:, 1:].tolist()  # HF's output starts with the decoder start token
    seeds = [40, 41, 42, 43, 44]
    free = sample_from_prefix(bb.model, prefix, seeds, 8, [-1], attention_mask=mask, batch_size=5)
    stop = free[2][2]  # a token row 2 draws third: it ends row 2 (and maybe others) early
    cut = sample_from_prefix(bb.model, prefix, seeds, 8, [stop], attention_mask=mask, batch_size=2,
                             return_finished=True)
    expected = [row[: row.index(stop)] if stop in row else row for row in free]
    assert cut.tokens == expected
    assert cut.finished == [stop in row for row in free] and cut.finished[2]
    alone = sample_from_prefix(bb.model, prefix[3:4], seeds[3:4], 8, [stop], attention_mask=mask[3:4])
    assert alone[0] == expected[3]


def test_repetition_penalty_matches_hugging_faces_processor():
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    torch.manual_seed(0)
    logits = torch.randn(3, 11)
    history = [[2, 5, 5, 7], [], [0]]
    ours = sampling.penalize_repeats(logits, history, 1.3)
    ref = logits.clone()
    for row in (0, 2):  # HF's processor takes [B, L] ids, so each row goes alone (row 1 has no history)
        ref[row:row + 1] = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([history[row]]), logits[row:row + 1].clone())
    assert torch.allclose(ours, ref)
    assert not torch.equal(ours[0], logits[0]) and torch.equal(ours[1], logits[1])
    assert torch.equal(sampling.penalize_repeats(logits, history, 1.0), logits)


@pytest.mark.filterwarnings("ignore:Passing `repetition_penalty` with `inputs_embeds`")
def test_greedy_with_a_repetition_penalty_matches_hf_generate(tiny_llama):
    bb = load_backbone(tiny_llama)
    torch.manual_seed(1)
    prefix = torch.randn(2, 4, bb.hidden_size) * 0.1
    plain = sample_from_prefix(bb.model, prefix, [0, 1], 16, [-1], temperature=0.0)
    ours = sample_from_prefix(bb.model, prefix, [0, 1], 16, [-1], temperature=0.0, repetition_penalty=2.0,
                              batch_size=1)
    assert ours == sample_from_prefix(bb.model, prefix, [0, 1], 16, [-1], temperature=0.0, repetition_penalty=2.0)
    # a soft prefix has no token ids, so HF's penalty sees only the generated tokens too (prompt ids are empty)
    ref = bb.model.generate(inputs_embeds=prefix, attention_mask=torch.ones(2, 4, dtype=torch.long),
                            max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0,
                            repetition_penalty=2.0)
    assert ours == ref[:, -16:].tolist()
    assert ours != plain
    assert max(len(set(t)) for t in ours) > max(len(set(t)) for t in plain)


def test_a_penalised_sample_keeps_its_text_whatever_the_batch(tiny_llama):
    bb = load_backbone(tiny_llama)
    prefix, mask = pinned_inputs(bb, padded=True)
    seeds = list(range(100, 106))
    # below 1 the penalty favours repeats, which the tiny model never draws on its own: every row changes
    kwargs = dict(temperature=0.9, top_p=0.9, attention_mask=mask, repetition_penalty=0.1)
    together = sample_from_prefix(bb.model, prefix, seeds, 20, PINNED_EOS["llama"], batch_size=4, **kwargs)
    alone = [sample_from_prefix(bb.model, prefix[i:i + 1], seeds[i:i + 1], 20, PINNED_EOS["llama"],
                                **{**kwargs, "attention_mask": mask[i:i + 1]})[0] for i in range(6)]
    assert together == alone
    assert together != PINNED[("llama", True)]
    assert sum(len(t) - len(set(t)) for t in together) > 0
