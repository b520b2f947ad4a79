#!/usr/bin/env bash
# The FT baseline's learning rate at the grid's budget (16 steps of batch 8): prompt-based FT on the SST-2
# 16-shot split of seed 13, one fit per lr, scored on that split's 32 dev rows (the sweep's model selection data).
#   bash docs/results/dawgen_prompt_tuning/ft_lr.sh            # prints "lr best-dev-acc" per lr
set -euo pipefail
cd "$(dirname "$0")/../../.."
# shellcheck disable=SC1091
. .venv/bin/activate
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
R="${R:-runs/results-dawgen-pt}/ft-lr"
for lr in ${LRS:-1e-5 1e-4 1e-3}; do
  dir="$R/lr$lr"
  [ -f "$dir/fit.done" ] || { synthtune fit --config configs/fine_tuning/sst2.yaml --data.init_args.seed 13 \
    --model.init_args.lr "$lr" --trainer.max_steps 16 --trainer.check_val_every_n_epoch null \
    --trainer.val_check_interval 4 --trainer.default_root_dir "$dir" --trainer.enable_progress_bar false \
    > "$dir.log" 2>&1 && touch "$dir/fit.done"; }
  python - "$dir" "$lr" <<'PY'
import sys
from pathlib import Path
import torch
ckpt = torch.load(Path(sys.argv[1]) / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
cb = [v for k, v in ckpt["callbacks"].items() if "best_model_score" in v][0]
print(f"lr {sys.argv[2]}: best dev acc {float(cb['best_model_score']):.4f}")
PY
done
