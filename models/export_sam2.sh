#!/usr/bin/env bash
# Export a SAM2 checkpoint to models/<checkpoint name>/ (fp32 + fp16 ONNX graphs and sam2_onnx.json).
#   models/export_sam2.sh CHECKPOINT.pt [sam2 CONFIG.yaml]   (the config is inferred for Meta's released file names)
set -euo pipefail
if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 CHECKPOINT.pt [configs/sam2.1/sam2.1_hiera_l.yaml]" >&2
    exit 2
fi
checkpoint=$1
out="$(cd "$(dirname "$0")" && pwd)/$(basename "${checkpoint%.*}")"
config_args=()
if [[ $# -eq 2 ]]; then config_args=(--config "$2"); fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
exec segzero export-sam2 --checkpoint "$checkpoint" "${config_args[@]}" --out "$out" --fp16
