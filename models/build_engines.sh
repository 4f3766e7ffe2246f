#!/usr/bin/env bash
# Build (or find cached) TensorRT engines for an exported SAM2 folder, on this machine's GPU.
#   models/build_engines.sh models/sam2_hiera_large [extra segzero build-engine options, e.g. --cache DIR]
set -euo pipefail
if [[ $# -lt 1 ]]; then
    echo "usage: $0 ONNX_DIR [--cache DIR] [--precision fp16|fp32] [--device cuda:N]" >&2
    exit 2
fi
onnx_dir=$1
shift
exec segzero build-engine --onnx-dir "$onnx_dir" --precision fp16 "$@"
