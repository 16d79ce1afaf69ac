#!/usr/bin/env bash
# Export the quick demo's model as mixed-precision int8 for the arm64 check: TFLite and ONNX with
# the three layers the README names as where int8 loses the heatmap (the 3x3 stem, the first
# depthwise convolution and its projection) kept in float. Named layers, no `auto` search: about
# 20 s on 2 cores. Written to RUN/export-mixed, beside the demo's full-int8 RUN/export.
#
# Usage: devices/ci/export-mixed.sh RUN [EDGECAM]   # RUN: an `edgecam demo --quick --out RUN` folder;
#                                                   # EDGECAM: the edgecam command, split on spaces (default: edgecam)
set -euo pipefail
RUN="${1:?expected RUN, a folder written by edgecam demo --quick}"
EDGECAM="${2:-edgecam}"
[ -f "$RUN/summary.json" ] && [ -d "$RUN/train" ] && [ -d "$RUN/data/train" ] \
  || { echo "export-mixed: expected $RUN/summary.json, $RUN/train and $RUN/data/train (an edgecam demo --quick folder)" >&2; exit 2; }
# the size the demo exported at, so that both folders run the scenes the same way
SIZE="$(python3 -c 'import json, sys; print("x".join(map(str, json.load(open(sys.argv[1]))["clip_input_size"])))' "$RUN/summary.json")"
$EDGECAM export "$RUN/train" --formats tflite-int8,onnx-int8 \
  --int8-float Conv1,expanded_conv_depthwise,expanded_conv_project \
  --calib "$RUN/data/train" --calib-size 32 --int8-holdout 16 --input-size "$SIZE" --out "$RUN/export-mixed"
