"""Mean log-likelihood ratio of examples under their own label's DawGen prompt vs the others' (usage: python docs/results/score_dawgen.py RUN_DIR)."""
import json, sys
import torch, yaml
from synthtune.components.padding import right_pad
from synthtune.datamodules.labeled import LabeledDataModule
from synthtune.lightning_modules.dawgen import DawGenModule
from synthtune.tasks import read_labeled

run = sys.argv[1]
cfg = yaml.safe_load(open(f"{run}/config.yaml"))
m = DawGenModule(**cfg["model"]["init_args"])
m.load_state_dict(torch.load(f"{run}/checkpoints/last.ckpt", weights_only=False)["state_dict"], strict=False)
dm = LabeledDataModule(**cfg["data"]["init_args"]); dm.setup("fit")

def score(rows):
    out, pad = [], dm.tokenizer.pad_token_id
    for i in range(0, len(rows), 8):
        chunk = rows[i:i + 8]
        tgt, tm = right_pad([dm.encode_target(r["text_b"] if dm.is_pair else r["text"]) for r in chunk], pad)
        ctx, cm = right_pad([dm.encode_context(r["text_a"]) if dm.is_pair else [] for r in chunk], pad)
        out += m.loglik_ratio({"target_ids": tgt, "target_mask": tm, "context_ids": ctx, "context_mask": cm,
                               "label": torch.tensor([int(r["label"]) for r in chunk])}).tolist()
    return torch.tensor(out)

gen = [json.loads(l) for l in open(f"{run}/samples.jsonl")]
dev = read_labeled(dm.load_task().kshot_path(dm.seed, "dev", dm.k), dm.load_task())
for name, rows in (("generated", gen), ("real 16-shot dev", dev)):
    s = score(rows)
    print(f"{run}: {name}: n={len(s)} mean LLR={s.mean():.4f} (sd {s.std():.4f}, share > 0: {(s > 0).float().mean():.2f})")
