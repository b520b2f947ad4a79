"""SynAlign latent attribute reasoning (Ren et al., Sec. 3.2) with a frozen local LLM, at predict time.

For each job (a selected demonstration cluster and a round) of a
:class:`~synthtune.datamodules.synalign_demos.DemonstrationDataModule`:

1. stage 1 shows the model all demonstrations of the cluster and asks for their attributes as JSON:
   the attributes that matter for them, named by the model (``attribute_mode: found``), or the fixed
   keys topic, style, tone and length (``fixed``); replies without usable attributes are counted and
   the job is skipped;
2. stage 2 asks for ``gen_size`` new examples with the cluster's label and those attributes, again
   showing the demonstrations; replies with the wrong number of items are counted and dropped (or
   truncated, by config).

Nothing is trained: ``synthtune predict --config configs/synalign/<task>_generate.yaml`` writes the rows.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any


from synthtune.components.synalign.attribute_prompts import (
    ATTRIBUTE_TEMPLATES,
    DEFAULT_GENERATION_TEMPLATE,
    AttributeMode,
    CountPolicy,
    ParseStats,
    check_template,
    fill,
    format_attributes,
    format_demonstrations,
    parse_items,
    read_attributes,
)
from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.components.sampling import sample_seed
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.components.text_generation import generate_from_text
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.flat_options import FlatBackboneOptions
from synthtune.lightning_modules.generator_options import GeneratorOptions
from synthtune.lightning_modules.predict_only import PredictOnlyModule
from synthtune.paths import atomic_write_json
from synthtune.templates import Template
from synthtune.registry import method

log = logging.getLogger(__name__)

STATS_FILE = "synalign_generation_stats.json"


@method
class SynAlignGenerationModule(GeneratorOptions, FlatBackboneOptions, PredictOnlyModule):
    """Two-stage attribute prompting of a frozen causal LM over selected demonstration clusters.

    Args:
        backbone: the frozen LM (decoder-only): a name or its spec (:class:`BackboneSpec`).
        task_description: what one example is, as the prompts name it (e.g. ``movie review``).
        attribute_mode: ``found``: the model names the attributes that matter for the demonstrations;
            ``fixed``: it fills the keys topic, style, tone and length (other keys are dropped).
        attribute_template: stage-1 prompt; fields ``{text}`` (required: the cluster's demonstrations,
            numbered), ``{label_name}``, ``{task}``; default: the template of ``attribute_mode``.
        generation_template: stage-2 prompt; fields ``{attributes}`` and ``{gen_size}`` (required),
            ``{text}``, ``{label_name}``, ``{task}``.
        gen_size: examples asked for per stage-2 prompt.
        count_policy: ``drop`` a stage-2 reply with the wrong number of items, or ``truncate`` it
            to its first ``gen_size`` items (it is counted either way).
        attribute_max_new_tokens: length limit of stage-1 replies.
        sampling: how both stages sample (:class:`SamplingSettings`; ``max_new_tokens`` limits stage-2 replies).
        use_chat_template: wrap prompts in the tokenizer's chat template.
        seed: run seed; every job's two sampling streams depend only on it and the job id.
    """

    def __init__(
        self,
        backbone: BackboneSpec | str = DEFAULT_BACKBONE,
        task_description: str = "text",
        attribute_mode: AttributeMode = "found",
        attribute_template: Template | None = None,
        generation_template: Template = DEFAULT_GENERATION_TEMPLATE,
        gen_size: int = 5,
        count_policy: CountPolicy = "drop",
        attribute_max_new_tokens: int = 64,
        sampling: SamplingSettings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=256),
        use_chat_template: bool = True,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if gen_size < 1:
            raise SynthtuneError(f"gen_size must be >= 1, got {gen_size}")
        if count_policy not in ("drop", "truncate"):
            raise SynthtuneError(f"count_policy must be 'drop' or 'truncate', got {count_policy!r}")
        if attribute_max_new_tokens < 1:
            raise SynthtuneError(f"attribute_max_new_tokens must be >= 1, got {attribute_max_new_tokens}")
        if attribute_mode not in ATTRIBUTE_TEMPLATES:
            raise SynthtuneError(f"attribute_mode must be 'found' or 'fixed', got {attribute_mode!r}")
        self.sampling = self.flat_sampling(sampling)
        self.attribute_template = attribute_template or ATTRIBUTE_TEMPLATES[attribute_mode]
        check_template(self.attribute_template, "attribute_template", ("text",))
        check_template(generation_template, "generation_template", ("attributes", "gen_size"))
        bb = self.load_frozen_backbone(self.flat_backbone(backbone))
        self.save_hyperparameters()
        if bb.is_encoder_decoder:
            raise SynthtuneError(f"SynAlign generation needs a decoder-only backbone; {bb.name} is encoder-decoder")
        self.start_engine(bb)
        self.stats = ParseStats()

    def checkpoint_signature(self) -> dict[str, Any]:
        return {"method": "synalign_generation", "backbone": self.backbone_spec.name}

    def generation_params(self) -> dict[str, Any]:
        """Settings identical for every row of a run (written into each row's ``params``)."""
        h = self.hparams
        return {"backbone": self.backbone_spec.name, "task_description": h.task_description, "attribute_mode": h.attribute_mode,
                "gen_size": h.gen_size,
                "count_policy": h.count_policy, "attribute_max_new_tokens": h.attribute_max_new_tokens,
                **self.sampling.as_dict(h.seed), **self.engine.params(), "use_chat_template": h.use_chat_template,
                "attribute_template": self.attribute_template, "generation_template": h.generation_template}

    def _sample(self, prompts: list[str], seeds: list[int], max_new_tokens: int) -> tuple[list[str], list[bool]]:
        """One reply per prompt, and whether each stopped at ``max_new_tokens`` instead of at EOS."""
        return generate_from_text(self.backbone, self.tokenizer, prompts, seeds,
                                  settings=replace(self.sampling, max_new_tokens=max_new_tokens),
                                  use_chat_template=self.hparams.use_chat_template, engine=self.engine)

    def attribute_stage(self, demonstrations: list[list[str]], label_names: list[str],
                        jobs: list[int]) -> list[dict[str, str] | None]:
        """Stage 1: the attributes of each cluster's demonstrations (``None`` where the reply held none)."""
        h = self.hparams
        prompts = [fill(self.attribute_template, text=format_demonstrations(d), label_name=n, task=h.task_description)
                   for d, n in zip(demonstrations, label_names)]
        replies, _ = self._sample(prompts, [sample_seed(self.hparams.seed, j, "synalign-attributes") for j in jobs],
                                  h.attribute_max_new_tokens)
        out = []
        for reply in replies:
            attributes, how = read_attributes(reply, h.attribute_mode)
            self.stats.attribute_replies += 1
            self.stats.unparsed_attributes += attributes is None
            self.stats.repaired_json += how == "repaired"
            self.stats.line_attributes += how in ("lines", "list")
            out.append(attributes)
        return out

    def generation_stage(self, demonstrations: list[list[str]], label_names: list[str],
                         attributes: list[dict[str, str]], jobs: list[int]) -> tuple[list[list[str]], list[list[bool]]]:
        """Stage 2: up to ``gen_size`` new examples per (cluster, attributes), and for each example whether
        it may be cut off: the last item of a reply that stopped at ``max_new_tokens`` (unless the reply
        held more items than were kept)."""
        h = self.hparams
        prompts = [fill(h.generation_template, text=format_demonstrations(d), label_name=n, task=h.task_description,
                        attributes=format_attributes(a), gen_size=h.gen_size)
                   for d, n, a in zip(demonstrations, label_names, attributes)]
        replies, capped = self._sample(prompts, [sample_seed(self.hparams.seed, j, "synalign-generation") for j in jobs],
                                       self.sampling.max_new_tokens)
        out, cut = [], []
        for reply, cap in zip(replies, capped):
            items, wrong = parse_items(reply, h.gen_size, h.count_policy)
            extra = wrong and len(items) == h.gen_size and h.count_policy == "truncate"  # the cut item was dropped
            cut.append([cap and not extra and k == len(items) - 1 for k in range(len(items))])
            self.stats.generation_replies += 1
            self.stats.wrong_count += wrong
            self.stats.dropped_replies += not items
            self.stats.items_kept += len(items)
            out.append(items)
        return out, cut

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        jobs = batch["job"].tolist()
        attributes = self.attribute_stage(batch["demonstrations"], batch["label_name"], jobs)
        keep = [i for i, a in enumerate(attributes) if a is not None]
        if not keep:
            return []
        items, cut = self.generation_stage([batch["demonstrations"][i] for i in keep],
                                           [batch["label_name"][i] for i in keep], [attributes[i] for i in keep],
                                           [jobs[i] for i in keep])
        params = self.generation_params()
        rows = []
        for i, texts, flags in zip(keep, items, cut):
            for k, (text, hit_cap) in enumerate(zip(texts, flags)):
                rows.append({"id": jobs[i] * self.hparams.gen_size + k, "text": text,
                             "label": int(batch["label"][i]), "label_name": batch["label_name"][i],
                             "cluster": batch["cluster"][i], "demo_indices": list(batch["demo_indices"][i]),
                             "attributes": attributes[i], "hit_cap": hit_cap, "method": "synalign", "params": params})
        return rows

    def on_predict_start(self) -> None:
        self.stats = ParseStats()

    def on_predict_end(self) -> None:
        s = self.stats
        if s.unparsed_attributes:
            log.warning("stage 1: %d of %d attribute replies held no usable attributes and were skipped",
                        s.unparsed_attributes, s.attribute_replies)
        if s.wrong_count:
            log.warning("stage 2: %d of %d replies had a number of items other than gen_size=%d (%s)",
                        s.wrong_count, s.generation_replies, self.hparams.gen_size,
                        "dropped" if self.hparams.count_policy == "drop" else "truncated")
        log.info("SynAlign generation kept %d examples from %d jobs", s.items_kept, s.attribute_replies)
        if self.trainer.is_global_zero:
            path = Path(self.trainer.default_root_dir) / STATS_FILE
            atomic_write_json(path, s.as_dict())
