#!/usr/bin/env bash
# The main job on the synthetic default, on a fresh machine (about 13 minutes on 2 CPU cores,
# install included): install, generate synthetic raw data, build the three datasets, train the
# tokenizer, pretrain the location-aware encoder, fine-tune difference VQA on it, evaluate and
# print the metrics.
#
# Everything goes to quickstart_out/ (or $QUICKSTART_OUT), which is recreated on every run.
# Sizes can be changed with QUICKSTART_PATIENTS, QUICKSTART_IMAGE_SIZE, QUICKSTART_WORKERS and
# QUICKSTART_VQA_STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${QUICKSTART_OUT:-quickstart_out}
PATIENTS=${QUICKSTART_PATIENTS:-1000}
IMAGE_SIZE=${QUICKSTART_IMAGE_SIZE:-256}
WORKERS=${QUICKSTART_WORKERS:-2}
RES=128
VQA_STEPS=${QUICKSTART_VQA_STEPS:-1500}
PY=.venv/bin/python
export PYTHONUNBUFFERED=1

start=$SECONDS
step() { printf '\n==== [%s, %ds] %s\n' "$(date +%H:%M:%S)" "$((SECONDS - start))" "$*"; }

step "install into .venv"
if [ ! -x "$PY" ]; then
  python3 -m venv .venv
fi
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q -e ".[torch]"
if ! command -v java >/dev/null 2>&1; then
  echo "Java is needed for METEOR and the PTB tokenizer of the evaluation:" \
       "install it first, e.g. 'apt-get install default-jre-headless'." >&2
  exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT"
RAW=$OUT/raw
DATA=$OUT/tfds

step "synthetic raw data: $PATIENTS patients, ${IMAGE_SIZE} px, easy preset"
"$PY" -m locvqa_jax.data.synthetic --out "$RAW" --patients "$PATIENTS" --seed 0 \
    --image-size "$IMAGE_SIZE" --workers "$WORKERS" --preset easy --preview "$OUT/preview.png"

for name in mimic_cxr chest_imagenome mimic_diff_vqa; do
  step "build $name/r$RES"
  "$PY" -m tfds_builders.build "$name" --manual_dir="$RAW" --data_dir="$DATA" \
      --config="r$RES" --workers="$WORKERS"
done

step "tokenizer"
"$PY" -m locvqa_jax.tokenizer --data_dir "$DATA" --config "r$RES" --out "$DATA/tokenizer.model"

step "pretraining: CAP, AREF, GCAP, CAREF (validation loss per task, box IoU vs the mean-box baseline)"
"$PY" -m locvqa_jax.train --config "configs/pretrain_locca.py:runlocal,quickstart,data_dir=$DATA" \
    --workdir "$OUT/pretrain"

step "difference VQA on the frozen pretrained encoder ($VQA_STEPS steps)"
VQA_ARGS=runlocal,diff_tokens,image_pos,main_pool=2
"$PY" -m locvqa_jax.train \
    --config "configs/diff_vqa.py:encoder_init=$OUT/pretrain,$VQA_ARGS,data_dir=$DATA" \
    --workdir "$OUT/diff_vqa" --config.total_steps="$VQA_STEPS"

step "blind baseline: the same model and budget without the images"
"$PY" -m locvqa_jax.train \
    --config "configs/diff_vqa.py:encoder_init=$OUT/pretrain,runlocal,blind,data_dir=$DATA" \
    --workdir "$OUT/diff_vqa_blind" --config.total_steps="$VQA_STEPS"

step "evaluation on the test split (model, blind model, most frequent training answer)"
"$PY" -m locvqa_jax.evaluate --workdir "$OUT/diff_vqa" --split test \
    --blind_workdir "$OUT/diff_vqa_blind"

step "done in $((SECONDS - start)) s; outputs in $OUT/"
