"""``synthtune export-prompt``: a run's trained soft prompt in a format other tools load.

* SoftSRV SS_NP (``parameterization: np``) and prompt tuning (``PromptTuningModule``) learn one fixed
  prompt P ∈ R^{t×d}. They are written as a PEFT ``PromptTuningConfig`` adapter (``adapter_config.json`` +
  ``adapter_model.safetensors``, by PEFT's own ``save_pretrained``) that ``PeftModel.from_pretrained`` loads.
  The input layout is the same: PEFT feeds ``[P ; E(input_ids)]``, the t virtual tokens right before the
  input embeddings, and synthtune trains on ``[P ; E(x)]`` with x tokenized *without* special tokens (SoftSRV
  appends EOS). So the loss is equal only when the PEFT user tokenizes as synthtune does
  (``add_special_tokens=False``; SoftSRV: EOS appended): a tokenizer that adds a BOS by default (Llama 3,
  Gemma; not SmolLM2) would put the BOS between P and x, a position the prompt never saw in training. The
  export's README says which case the backbone is.
* SoftSRV SS_MPk / SS_MC compute the prompt from a context vector, P_θ(E(x)), with a trained network (a
  softmax mixer over k bases / one MLP per soft token), and DawGen learns one prompt per label. A PEFT
  prompt-tuning adapter holds one fixed prompt, so these are written as ``prompts.safetensors``: SoftSRV, the
  prompt of every training context (or of ``--contexts``) ``[N, t, d]``; DawGen, ``[L, t, d]``, one per label;
  each is fed to the frozen model as ``inputs_embeds`` (the README in the export shows how).

Every export also writes ``export.json`` (what was exported, from which run and checkpoint, shapes, layout)
and a ``README.md``. The folder is built beside ``output`` and renamed into place when complete.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_bytes, atomic_write_json, atomic_write_jsonl

#: Why a PEFT prompt-tuning adapter cannot hold each kind of prompt that is exported as ``prompts.safetensors``.
WHY_NOT_PEFT = {
    "softsrv": "a PEFT prompt-tuning adapter holds one fixed [t, d] prompt, but SoftSRV {name} computes the prompt "
               "from each context's vector E(x) with a trained network ({net}) that PEFT has no module for; "
               "these are the prompts it gives for each context",
    "dawgen": "a PEFT prompt-tuning adapter holds one fixed [t, d] prompt, but DawGen has one prompt per label, "
              "picked by the label a text is generated for (each label's prompt alone is an ordinary "
              "prompt-tuning prompt); these are all of them, in label order",
}
_METHODS = ("SoftSRVModule", "PromptTuningModule", "DawGenModule")
_MARKER = "export.json"


def export_prompt(run: str, output: str, checkpoint: Optional[str] = None, contexts: Optional[str] = None,
                  overwrite: bool = False, batch_size: int = 64, device: str = "cpu") -> dict[str, Any]:
    """Export a run's trained soft prompt: a PEFT adapter (SS_NP, prompt tuning) or inputs_embeds prompts.

    SoftSRV SS_NP and prompt-tuning prompts become a PEFT ``PromptTuningConfig`` adapter folder that
    ``PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(<base>), output)`` loads and that gives
    the run's loss on a text tokenized as synthtune tokenizes it (no special tokens; SoftSRV appends EOS).
    Its ``base_model_name_or_path`` is the folder (or hub id) the backbone resolves to: for the bundled
    ``smollm2-135m`` and ``.gguf`` files, the converted safetensors folder in synthtune's model cache. SoftSRV
    SS_MPk/SS_MC (a prompt per context) and DawGen (a prompt per label) are written as ``prompts.safetensors``
    with a README on feeding them as ``inputs_embeds``, since one PEFT adapter holds one fixed prompt.

    Args:
        run: the run folder (``--trainer.default_root_dir`` of ``synthtune fit``: ``config.yaml``, ``checkpoints/``).
        output: the folder to write (created; must be absent or empty unless ``overwrite``).
        checkpoint: the checkpoint to export (default ``<run>/checkpoints/last.ckpt``).
        contexts: SoftSRV mp/mc only: a file of rows (JSONL, CSV, ...) rendered with the run's text template,
            whose per-context prompts are exported instead of the training contexts'.
        overwrite: replace ``output`` if it holds an earlier export (a folder with ``export.json``).
        batch_size: contexts per forward pass of the prompt network (SoftSRV mp/mc).
        device: torch device used to compute the prompts (``cpu``, ``cuda``).
    """
    start = time.perf_counter()
    run_dir, ckpt = _check_run(run, checkpoint)
    out = _check_output(Path(output), overwrite)
    module, datamodule, method = load_run(run_dir, ckpt, device)
    h = module.hparams
    if contexts and not (method == "SoftSRVModule" and h.parameterization != "np"):
        raise SynthtuneError("--contexts chooses the contexts of a SoftSRV mp/mc run's prompts; this run's prompt "
                             "does not depend on a context: drop --contexts")
    from synthtune.components.backbone import resolve_backbone
    from synthtune.lightning_modules.base import file_fingerprint

    base = resolve_backbone(module.backbone_spec.name)
    base = str(Path(base).resolve()) if Path(base).is_dir() else base
    info: dict[str, Any] = {
        "command": "export-prompt", "run": str(run_dir), "checkpoint": str(ckpt),
        "checkpoint_sha256_16": file_fingerprint(str(ckpt)), "backbone": module.backbone_spec.name, "base_model": base,
        "tokenization": tokenization_note(module.tokenizer),
    }
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if method == "DawGenModule":
            info.update(_export_dawgen(module, datamodule, tmp))
        elif method == "SoftSRVModule" and h.parameterization != "np":
            info.update(_export_softsrv_contexts(module, datamodule, tmp, contexts, batch_size))
        else:
            info.update(_export_peft(module, method, tmp, base))
        info["output"] = str(out)
        info["seconds"] = round(time.perf_counter() - start, 3)
        atomic_write_bytes(tmp / "README.md", readme(info, tmp).encode("utf-8"))
        atomic_write_json(tmp / _MARKER, info)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


# ------------------------------------------------------------------------------------------------ checks
def _check_run(run: str, checkpoint: Optional[str]) -> tuple[Path, Path]:
    run_dir = Path(run).expanduser()
    if not run_dir.is_dir():
        raise SynthtuneError(f"run folder not found: {run}; pass the --trainer.default_root_dir of a `synthtune fit`")
    if not (run_dir / "config.yaml").is_file():
        raise SynthtuneError(f"{run} is not a run folder (no config.yaml); pass the --trainer.default_root_dir "
                             "of a `synthtune fit`")
    ckpt = Path(checkpoint).expanduser() if checkpoint else run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise SynthtuneError(f"checkpoint not found: {ckpt}; finish (or resume) the run's `synthtune fit`, or pass "
                             "--checkpoint <file.ckpt>")
    from synthtune.preflight import check_checkpoint_file

    check_checkpoint_file(ckpt)
    return run_dir, ckpt


def _check_output(out: Path, overwrite: bool) -> Path:
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        raise SynthtuneError(f"--output {out} is a file; pass a folder to write the export into")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise SynthtuneError(f"--output {out} exists and is not empty; pass another folder, or --overwrite to "
                                 "replace an earlier export")
        if not (out / _MARKER).is_file():
            raise SynthtuneError(f"--output {out} is not a folder export-prompt wrote (no {_MARKER}); --overwrite "
                                 "replaces only an earlier export: pass another folder")
    return out


# -------------------------------------------------------------------------------------------------- load
def load_run(run: Path, ckpt: Path, device: str = "cpu") -> tuple[Any, Any, str]:
    """The trained module of a run folder (``config.yaml`` as ``synthtune predict --config`` composes it, the
    weights of ``ckpt``), connected to its data module (set up for ``fit``), and its class name."""
    from lightning.pytorch.cli import instantiate_class

    from synthtune.contract import connect
    from synthtune.curation.label_filter import compose_run, restore_trained_state, run_datamodule

    composed = compose_run(run)
    model = composed.get("model") or {}
    method = str(model.get("class_path", "")).rsplit(".", 1)[-1]
    if method not in _METHODS:
        raise SynthtuneError(f"{run} is a {method or 'model-less'} run, which has no soft prompt to export; "
                             "export-prompt takes SoftSRV, prompt-tuning and DawGen runs")
    module = instantiate_class((), model)
    if method == "PromptTuningModule" and module.hparams.mode != "train":
        raise SynthtuneError(f"{run} runs prompt tuning in mode {module.hparams.mode!r}, which trains no prompt; "
                             "pass a run fitted with mode train")
    datamodule = run_datamodule(composed)
    datamodule.setup("fit")
    connect(module, datamodule)  # the reader of prompt tuning, SoftSRV's training contexts
    return restore_trained_state(module, ckpt).to(device).eval(), datamodule, method


def tokenization_note(tokenizer: Any) -> dict[str, Any]:
    """Whether the tokenizer adds special tokens by default (which synthtune's training never does)."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    default = list(tokenizer("a")["input_ids"])
    added = [t for t in default if t not in plain] if default != plain else []
    return {"adds_special_tokens_by_default": bool(added), "added_ids": added,
            "added_tokens": tokenizer.convert_ids_to_tokens(added) if added else [],
            "eos_token_id": tokenizer.eos_token_id}


# ---------------------------------------------------------------------------------------------- writers
def write_peft_adapter(folder: Path, prompt: Any, model_config: Any, base: str) -> None:
    """A PEFT ``PromptTuningConfig`` adapter holding ``prompt`` [t, d], written by PEFT's ``save_pretrained``.

    The PeftModel wraps a weightless copy of the base model (built on the meta device from its config): PEFT
    saves only the prompt encoder's embedding, and the loaded backbone is left untouched.
    """
    import torch
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    prompt = prompt.detach().float().cpu().clone()
    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=prompt.shape[0],
                                token_dim=prompt.shape[1], num_transformer_submodules=1,
                                base_model_name_or_path=base)
    with torch.device("meta"):
        shell = AutoModelForCausalLM.from_config(copy.deepcopy(model_config))
    peft_model = get_peft_model(shell, config)
    peft_model.prompt_encoder["default"].embedding.weight = torch.nn.Parameter(prompt, requires_grad=False)
    peft_model.save_pretrained(str(folder))
    saved = load_file(str(folder / "adapter_model.safetensors"))["prompt_embeddings"]
    if not torch.equal(saved, prompt):  # PEFT changed what it stores: better to stop than to export garbage
        raise RuntimeError("PEFT's adapter_model.safetensors does not hold the prompt that was put in it")


def _save_tensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()},
                                  metadata=metadata))


def _export_peft(module: Any, method: str, folder: Path, base: str) -> dict[str, Any]:
    if module.backbone.config.is_encoder_decoder:
        raise SynthtuneError("export-prompt writes PEFT adapters for decoder-only backbones; this run's backbone "
                             "is an encoder-decoder (T5), whose export is not supported yet")
    prompt = module.soft_prompt.prompt
    write_peft_adapter(folder, prompt, module.backbone.config, base)
    info: dict[str, Any] = {"format": "peft-prompt-tuning", "shape": list(prompt.shape),
                            "files": ["adapter_config.json", "adapter_model.safetensors"]}
    if method == "SoftSRVModule":
        info.update(kind="softsrv-np", layout="[P ; x ; EOS], x tokenized without special tokens; the loss is the "
                    "mean next-token loss of x's tokens and EOS (PEFT: labels = input_ids)")
    else:
        reader = module.reader
        info.update(kind="prompt-tuning", template=reader.template, label_words=list(reader.verbalizer.label_words),
                    label_token_ids=[list(ids) for ids in reader.verbalizer.token_ids],
                    layout="[P ; template(row)], the row tokenized without special tokens; the class scores are "
                           "the next-token logits of the label words at the last position")
    return info


def _export_softsrv_contexts(module: Any, datamodule: Any, folder: Path, contexts: Optional[str],
                             batch_size: int) -> dict[str, Any]:
    import torch

    from synthtune.components.encoders import build_context_encoder, cached_encode
    from synthtune.datamodules.text import render
    from synthtune.records import read_records

    if batch_size < 1:
        raise SynthtuneError(f"batch_size must be at least 1, got {batch_size}; pass e.g. --batch_size 64")
    split = "train"
    texts = list(module.data_info.train_texts)
    if contexts:
        template = getattr(datamodule, "text_template", "{text}")
        texts = [t for t in render(read_records(contexts), template, str(contexts))]
        if not texts:
            raise SynthtuneError(f"{contexts}: no rows; pass a file with at least one context row")
        split = "export"
        module._contexts[split] = cached_encode(build_context_encoder(module.context_kind, module._bb), texts)
    with torch.no_grad():
        prompts = torch.cat([module.prompts(torch.arange(i, min(i + batch_size, len(texts))), split=split).cpu()
                             for i in range(0, len(texts), batch_size)])
    h = module.hparams
    name, net = ("SS_MPk", f"softmax mixer over k={h.num_basis} bases") if h.parameterization == "mp" else \
        ("SS_MC", f"{h.mlp_layers}-layer MLP per soft token")
    _save_tensors(folder / "prompts.safetensors", {"prompts": prompts},
                  {"kind": f"softsrv-{h.parameterization}", "rows": "contexts (contexts.jsonl)"})
    atomic_write_jsonl(folder / "contexts.jsonl", [{"index": i, "text": t} for i, t in enumerate(texts)])
    return {"format": "inputs_embeds", "kind": f"softsrv-{h.parameterization}", "shape": list(prompts.shape),
            "files": ["prompts.safetensors", "contexts.jsonl"],
            "contexts": str(contexts) if contexts else "the run's training contexts",
            "context_encoder": module.context_kind,
            "why_not_peft": WHY_NOT_PEFT["softsrv"].format(name=name, net=net),
            "layout": "[P_i ; x ; EOS], x tokenized without special tokens; sampling starts from P_i alone"}


def _export_dawgen(module: Any, datamodule: Any, folder: Path) -> dict[str, Any]:
    if module.backbone.config.is_encoder_decoder:
        raise SynthtuneError("export-prompt writes DawGen prompts of decoder-only backbones; this run's backbone "
                             "is an encoder-decoder (T5), whose export is not supported yet")
    prompts = module.label_prompts.prompts
    labels = list(module.data_info.label_names)
    _save_tensors(folder / "prompts.safetensors", {"prompts": prompts},
                  {"kind": "dawgen", "rows": "labels: " + ", ".join(labels)})
    pair = module.data_info.is_pair
    return {"format": "inputs_embeds", "kind": "dawgen", "shape": list(prompts.shape), "labels": labels,
            "files": ["prompts.safetensors"], "why_not_peft": WHY_NOT_PEFT["dawgen"],
            "layout": ("[Q_l ; c ; x ; EOS]: c = text_a's tokens and the separator as the run's data encodes them, "
                       "x = text_b" if pair else "[Q_l ; x ; EOS]") + ", tokenized without special tokens"}


# ----------------------------------------------------------------------------------------------- readme
def readme(info: dict[str, Any], folder: Path) -> str:
    """The export's README.md: what it is, where it came from, and how to load it (code a user can paste)."""
    base, out = info["base_model"], info["output"]
    tok = info["tokenization"]
    bos = (f"This backbone's tokenizer adds {tok['added_tokens']} by default: pass `add_special_tokens=False`, "
           "or PEFT reads that token between the prompt and the text, which the prompt was never trained with."
           if tok["adds_special_tokens_by_default"] else
           "This backbone's tokenizer adds no special token by default; `add_special_tokens=False` keeps it so "
           "with other tokenizers.")
    head = [f"Exported by `synthtune export-prompt` from run `{info['run']}`, checkpoint `{info['checkpoint']}` "
            f"(sha256 {info['checkpoint_sha256_16']}…). Backbone `{info['backbone']}`; base model `{base}` (the "
            "folder or hub id it resolves to, which `from_pretrained` loads: for the bundled alias and `.gguf` "
            "files, the converted safetensors folder in synthtune's model cache).", "",
            f"Input layout: {info['layout']}. {bos}", ""]
    load = ["```python", "import torch", "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f"base = AutoModelForCausalLM.from_pretrained({base!r})", f"tok = AutoTokenizer.from_pretrained({base!r})"]
    if info["format"] == "peft-prompt-tuning":
        front = ""
        card = folder / "README.md"
        if card.is_file():  # keep the front matter PEFT's save_pretrained wrote (library_name: peft, base_model)
            text = card.read_text(encoding="utf-8")
            if text.startswith("---"):
                front = "---" + text.split("---", 2)[1] + "---\n\n"
        title = "SoftSRV SS_NP prompt" if info["kind"] == "softsrv-np" else "Prompt-tuning prompt"
        body = [f"# {title} as a PEFT prompt-tuning adapter", "",
                f"A PEFT `PromptTuningConfig` adapter with {info['shape'][0]} virtual tokens of size "
                f"{info['shape'][1]}. PEFT puts them right before the input embeddings, where synthtune trained them.",
                "", *head, *load, "from peft import PeftModel", f"model = PeftModel.from_pretrained(base, {out!r})"]
        if info["kind"] == "softsrv-np":
            body += ["ids = tok(text, add_special_tokens=False, return_tensors='pt').input_ids",
                     "ids = torch.cat([ids, torch.tensor([[tok.eos_token_id]])], dim=1)  # synthtune appends EOS",
                     "loss = model(input_ids=ids, labels=ids).loss  # the SoftSRV reconstruction loss of text",
                     "# sampling, as `synthtune predict` does, starts from the prompt alone:",
                     "prompt = model.get_prompt(batch_size=1)  # [1, t, d]",
                     "out = base.generate(inputs_embeds=prompt, attention_mask=torch.ones(prompt.shape[:2], "
                     "dtype=torch.long), do_sample=True, max_new_tokens=128)", "```"]
        else:
            body += [f"template = {info['template']!r}  # synthtune cuts each field to max_field_tokens first",
                     f"words = {info['label_words']!r}  # in label index order",
                     f"word_ids = {[ids[0] for ids in info['label_token_ids']]!r}  # first token of each word",
                     "ids = tok(template.format(**row), add_special_tokens=False, return_tensors='pt').input_ids",
                     "scores = model(input_ids=ids).logits[:, -1, word_ids]  # [1, classes]; argmax = the label",
                     "```", "", "A label word of several tokens is scored by the sum of its tokens' log-probs."]
        return front + "\n".join(body) + "\n"
    t, d = info["shape"][1], info["shape"][2]
    rows = "contexts (see contexts.jsonl)" if info["kind"].startswith("softsrv") else f"labels {info['labels']}"
    body = [f"# {'SoftSRV per-context' if rows.startswith('contexts') else 'DawGen per-label'} soft prompts", "",
            f"`prompts.safetensors` holds `prompts`, a float32 tensor of shape {info['shape']}: one prompt of "
            f"{t} vectors of size {d} per row, the rows being the {rows}.", "",
            f"Why not a PEFT adapter: {info['why_not_peft']}.", "", *head,
            "Feed a prompt to the frozen model as `inputs_embeds`, in front of the text's token embeddings:", "",
            *load, "from safetensors.torch import load_file",
            f"prompts = load_file({out + '/prompts.safetensors'!r})['prompts'].to(base.dtype)",
            "p = prompts[i : i + 1]  # [1, t, d]: row i",
            "ids = tok(text, add_special_tokens=False, return_tensors='pt').input_ids",
            "ids = torch.cat([ids, torch.tensor([[tok.eos_token_id]])], dim=1)",
            "embeds = torch.cat([p, base.get_input_embeddings()(ids)], dim=1)",
            "labels = torch.cat([torch.full((1, p.shape[1]), -100), ids], dim=1)",
            "loss = base(inputs_embeds=embeds, labels=labels).loss",
            "out = base.generate(inputs_embeds=p, attention_mask=torch.ones(p.shape[:2], dtype=torch.long), "
            "do_sample=True, max_new_tokens=128)", "```"]
    return "\n".join(body) + "\n"
