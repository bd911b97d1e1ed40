#!/usr/bin/env bash
# On a machine with a CUDA GPU: train the fpb teacher, distil the student, and run the
# serving and pipeline benchmarks in bf16, printing each figure. Without CUDA it says so and
# exits 0. Run from the repository root after `make setup`:
#
#   bash benchmarks/gpu_check.sh [DATA_DIR]          # DATA_DIR: default ../shared/data
#
# The teacher's encoder must be fetched already (`signalyard encoders fetch all-mpnet-base-v2`)
# or fetchable; ENCODERS_FROM=DIR copies a fetched all-mpnet-base-v2 folder in instead.
# Everything else goes to a scratch SIGNALYARD_HOME; the broker for the pipeline benchmark is
# started on ports of its own and stopped at the end.
set -euo pipefail
DATA=${1:-../shared/data}
BIN=${BIN:-.venv/bin}
if ! "$BIN/python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: torch sees no CUDA GPU on this machine; nothing to measure"
  exit 0
fi
WORK=$(mktemp -d)
export SIGNALYARD_HOME="$WORK/home" SIGNALYARD_INFERENCE__PRECISION=bf16
export SIGNALYARD_STACK__PORT=49092 SIGNALYARD_STACK__CONTROLLER_PORT=49093
export SIGNALYARD_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:49092
"$BIN/python" -c 'import torch; print("gpu_check:", torch.cuda.get_device_name(0), "torch", torch.__version__)'
if [ -n "${ENCODERS_FROM:-}" ]; then
  mkdir -p "$SIGNALYARD_HOME/encoders" && cp -r "$ENCODERS_FROM" "$SIGNALYARD_HOME/encoders/all-mpnet-base-v2"
else
  "$BIN/signalyard" encoders fetch all-mpnet-base-v2
fi
"$BIN/python" benchmarks/split_data.py "$WORK/splits" --data "$DATA"
last_version() { tail -n 1 "$1" | "$BIN/python" -c 'import json, sys; print(json.load(sys.stdin)["version"])'; }
timed() { local start=$SECONDS; "$@"; echo "gpu_check: $((SECONDS - start)) s for: $*" >&2; }

timed "$BIN/signalyard" train news --data "$WORK/splits/fpb/train.csv" --base all-mpnet-base-v2 \
  --lr 3e-5 --head-lr 1e-3 --epochs 3 --batch-size 32 --max-seq-length 64 --class-weight none \
  --label-smoothing 0.1 --freeze-embeddings --device cuda --no-promote | tee "$WORK/teacher.json"
TEACHER=$(last_version "$WORK/teacher.json")
timed "$BIN/signalyard" distill news --teacher "$TEACHER" --data "$WORK/splits/fpb/train.csv" \
  --lr 5e-5 --head-lr 5e-4 --epochs 4 --batch-size 32 --max-seq-length 64 --freeze-embeddings \
  --temperature 2 --alpha 0.5 --device cuda | tee "$WORK/student.json"
STUDENT=$(last_version "$WORK/student.json")
for version in "$TEACHER" "$STUDENT"; do
  echo "gpu_check: news $version on the held-out fpb rows (bf16)"
  "$BIN/signalyard" eval news --version "$version" --data "$WORK/splits/fpb/validation.csv" --precision bf16
done
MODELS="$SIGNALYARD_HOME/models/news/versions"
"$BIN/python" benchmarks/bench_serving.py --device cuda --precisions fp32,bf16 --batch-size 32 \
  --model "teacher=$MODELS/$TEACHER" --model "student=$MODELS/$STUDENT" \
  --data "$WORK/splits/fpb/validation.csv" --seconds 10
"$BIN/signalyard" stack up
trap '"$BIN/signalyard" stack down' EXIT
"$BIN/python" benchmarks/bench_pipeline.py --registry "$SIGNALYARD_HOME/models" --news-events 5000
