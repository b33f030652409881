#!/usr/bin/env bash
# Build the embedded default models from scratch with the `after` command line:
#
#   after synth (train split, FluidR3_GM + TimGM6mb, every pitched family, 22.05 kHz)
#   -> after prepare -> after train-codec --preset small -> after encode --twins
#   -> after train --preset tiny_midi (MIDI structure), then --preset tiny (audio structure: structure
#      twins, timbre encoder from the MIDI model)
#   -> after train-codec --decoder-only (the codec's decoder alone: the latents stay the same)
#   -> after release --decoder-from (released model folders: safetensors + model.json; the MIDI
#      model names the audio model's codec file, --share-codec-with, so the package holds one copy)
#
# Every stage is resumable: a stage whose marker file exists (with the same parameters) is
# skipped, and the training stages continue from the last checkpoint of their run folder.
# Stopping the script (Ctrl-C) and starting it again carries on where it stopped.
#
# Parameters (environment variables, defaults in brackets):
#   WORK              working folder for corpus, dataset and runs            [./work/default_model]
#   MODELS_DIR        where the released folders go                         [src/after/models]
#   AUDIO_NAME / MIDI_NAME   released model names                         [default / default-midi]
#   MINUTES           minutes of audio to render                              [870]
#                     (the shipped model: 14.5 h; more audio helped the codec more than more steps)
#   ACCELERATOR       cpu or gpu                                              [cpu]
#   CODEC_STEPS, AUDIO_STEPS, MIDI_STEPS   training steps per stage           [cpu: 20000/20000/20000,
#                                                                              gpu: 200000/100000/100000]
#   CODEC_BATCH, AUDIO_BATCH, MIDI_BATCH   batch sizes                        [cpu: 4/16/16, gpu: 16/64/64]
#   CODEC_CROP        audio samples per codec training example               [cpu: 32768, gpu: 65536]
#   CODEC_LR          codec learning rate                                     [5e-4]
#   CODEC_LOSSES      loss options of both codec stages   [--no-perceptual-weighting
#                     --log-frequency-weight 1 --stft-sizes 8192,4096,...,32: bass and the pitch of
#                     held notes count; see benchmarks/README.md, "Codec pitch on steady tones"]
#   CHECKPOINT_EVERY  checkpoint interval of every training stage (steps)    [cpu: 500, gpu: 2000]
#   WORKERS           DataLoader worker processes                            [cpu: 0, gpu: 6]
#   SEED              seed of the rendered corpus                             [0]
#   FP16              1 = store released weights as float16                   [0]
#   MAP_STEPS         optimiser steps of the 2-D timbre map fit               [2000]
#   TWINS             share of audio-model examples whose structure is a twin [0.8]
#   AUDIO_GUIDANCE    default timbre and structure guidance of the audio model [2]
#   MIDI_GUIDANCE_TIMBRE / MIDI_GUIDANCE_STRUCTURE   the MIDI model's          [1.5 / 2]
#   DECODER_STEPS     decoder-only codec steps after the diffusion stages (0: none)
#                                                                             [cpu: 4000, gpu: 50000]
#   DECODER_ADVERSARIAL_START  step of the decoder stage where the discriminator joins
#                                                                             [cpu: none, gpu: 0]
#   DECODER_LR        learning rate of the decoder stage                      [cpu: 4e-4, gpu: 2e-4]
#   AFTER             the command to run                                      [after]
#
# Examples:
#   recipes/default_model.sh                                  # CPU, hours
#   ACCELERATOR=gpu MINUTES=600 recipes/default_model.sh      # GPU, minutes to an hour
#   WORK=/tmp/micro MODELS_DIR=/tmp/micro/models MINUTES=1 CODEC_STEPS=20 AUDIO_STEPS=20 \
#     MIDI_STEPS=20 CODEC_CROP=16384 recipes/default_model.sh  # a micro smoke run
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AFTER=${AFTER:-after}
WORK=${WORK:-$PWD/work/default_model}
MODELS_DIR=${MODELS_DIR:-$ROOT/src/after/models}
AUDIO_NAME=${AUDIO_NAME:-default}
MIDI_NAME=${MIDI_NAME:-default-midi}
MINUTES=${MINUTES:-870}
ACCELERATOR=${ACCELERATOR:-cpu}
SEED=${SEED:-0}
FP16=${FP16:-0}
MAP_STEPS=${MAP_STEPS:-2000}
TWINS=${TWINS:-0.8}
AUDIO_GUIDANCE=${AUDIO_GUIDANCE:-2}
MIDI_GUIDANCE_TIMBRE=${MIDI_GUIDANCE_TIMBRE:-1.5}
MIDI_GUIDANCE_STRUCTURE=${MIDI_GUIDANCE_STRUCTURE:-2}
CODEC_LR=${CODEC_LR:-5e-4}
CODEC_LOSSES=${CODEC_LOSSES:---no-perceptual-weighting --log-frequency-weight 1 --stft-sizes 8192,4096,2048,1024,512,256,128,64,32}
SAMPLE_RATE=22050
CHUNK_SECONDS=6

case "$ACCELERATOR" in
  cpu)
    CODEC_STEPS=${CODEC_STEPS:-20000}; AUDIO_STEPS=${AUDIO_STEPS:-20000}; MIDI_STEPS=${MIDI_STEPS:-20000}
    CODEC_BATCH=${CODEC_BATCH:-4}; AUDIO_BATCH=${AUDIO_BATCH:-16}; MIDI_BATCH=${MIDI_BATCH:-16}
    CODEC_CROP=${CODEC_CROP:-32768}; CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-500}; WORKERS=${WORKERS:-0}
    DECODER_STEPS=${DECODER_STEPS:-4000}; DECODER_ADVERSARIAL_START=${DECODER_ADVERSARIAL_START:-1000000000}
    DECODER_LR=${DECODER_LR:-4e-4}
    ;;
  gpu)
    CODEC_STEPS=${CODEC_STEPS:-200000}; AUDIO_STEPS=${AUDIO_STEPS:-100000}; MIDI_STEPS=${MIDI_STEPS:-100000}
    CODEC_BATCH=${CODEC_BATCH:-16}; AUDIO_BATCH=${AUDIO_BATCH:-64}; MIDI_BATCH=${MIDI_BATCH:-64}
    CODEC_CROP=${CODEC_CROP:-65536}; CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-2000}; WORKERS=${WORKERS:-6}
    DECODER_STEPS=${DECODER_STEPS:-50000}; DECODER_ADVERSARIAL_START=${DECODER_ADVERSARIAL_START:-0}
    DECODER_LR=${DECODER_LR:-2e-4}
    ;;
  *) echo "ACCELERATOR must be cpu or gpu, got '$ACCELERATOR'" >&2; exit 2 ;;
esac

mkdir -p "$WORK"
log() { echo "[default_model $(date +%H:%M:%S)] $*" >&2; }

# A stage is done when its marker holds exactly the parameters it ran with.
done_with() { [ -f "$WORK/.done-$1" ] && [ "$(cat "$WORK/.done-$1")" = "$2" ]; }
mark_done() { echo "$2" > "$WORK/.done-$1"; }

# --resume when the run folder already holds a checkpoint.
resume_flag() { if compgen -G "$1/checkpoints/*.ckpt" > /dev/null; then echo --resume; fi; }

# 1. corpus: paired MIDI + audio stems (the synth itself reuses stems already rendered)
SYNTH_KEY="minutes=$MINUTES seed=$SEED rate=$SAMPLE_RATE"
if done_with synth "$SYNTH_KEY"; then
  log "synth: done"
else
  log "synth: rendering $MINUTES min"
  "$AFTER" synth "$WORK/corpus" --minutes "$MINUTES" --seed "$SEED" --sample-rate "$SAMPLE_RATE" \
    --split train --soundfonts FluidR3_GM TimGM6mb --no-progress
  families=$(grep -o '"family": "[^"]*"' "$WORK/corpus/manifest.jsonl" | sort -u | wc -l)
  log "synth: $families instrument families"
  if [ "$families" -lt 10 ] && awk "BEGIN { exit !($MINUTES >= 10) }"; then
    echo "synth rendered only $families instrument families (10 or more expected)" >&2
    exit 1
  fi
  mark_done synth "$SYNTH_KEY"
fi

# 2. dataset (chunks with MIDI side-cars)
PREPARE_KEY="$SYNTH_KEY chunk=$CHUNK_SECONDS"
if done_with prepare "$PREPARE_KEY"; then
  log "prepare: done"
else
  log "prepare: $WORK/corpus -> $WORK/data"
  "$AFTER" prepare "$WORK/corpus" "$WORK/data" --sample-rate "$SAMPLE_RATE" --chunk-seconds "$CHUNK_SECONDS"
  mark_done prepare "$PREPARE_KEY"
fi

# 3. codec
CODEC_KEY="$PREPARE_KEY steps=$CODEC_STEPS lr=$CODEC_LR crop=$CODEC_CROP losses=$CODEC_LOSSES"
if done_with codec "$CODEC_KEY"; then
  log "train-codec: done"
else
  log "train-codec: up to step $CODEC_STEPS"
  # shellcheck disable=SC2046,SC2086
  "$AFTER" train-codec --data "$WORK/data" --preset small --out "$WORK/codec" \
    --max-steps "$CODEC_STEPS" --batch-size "$CODEC_BATCH" --crop-samples "$CODEC_CROP" --lr "$CODEC_LR" \
    --accelerator "$ACCELERATOR" --checkpoint-every "$CHECKPOINT_EVERY" \
    --val-every "$CHECKPOINT_EVERY" --workers "$WORKERS" --no-progress $CODEC_LOSSES $(resume_flag "$WORK/codec")
  mark_done codec "$CODEC_KEY"
fi

# 4. codec latents of every chunk and of its structure twin (encode refreshes them when the codec changed)
if done_with encode "$CODEC_KEY"; then
  log "encode: done"
else
  log "encode: latents of $WORK/data"
  "$AFTER" encode "$WORK/data" --codec "$WORK/codec" --twins --no-progress
  mark_done encode "$CODEC_KEY"
fi

# 5-6. diffusion models: audio structure and MIDI structure
train_diffusion() {  # stage preset run_dir steps batch [extra train options]
  local key="$CODEC_KEY $2 steps=$4 ${*:6}"
  if done_with "$1" "$key"; then
    log "train $2: done"
    return
  fi
  # a run trained on the latents of another codec cannot continue: keep it aside, start afresh
  if [ -d "$3" ] && [ "$(cat "$3/.codec_key" 2>/dev/null)" != "$CODEC_KEY" ]; then
    log "train $2: codec changed, moving the old run to $3.old-$(date +%Y%m%d%H%M%S)"
    mv "$3" "$3.old-$(date +%Y%m%d%H%M%S)"
  fi
  mkdir -p "$3"
  echo "$CODEC_KEY" > "$3/.codec_key"
  log "train $2: up to step $4"
  # shellcheck disable=SC2046
  "$AFTER" train --data "$WORK/data" --codec "$WORK/codec" --preset "$2" --out "$3" \
    --max-steps "$4" --batch-size "$5" --accelerator "$ACCELERATOR" \
    --checkpoint-every "$CHECKPOINT_EVERY" --val-every "$CHECKPOINT_EVERY" --workers "$WORKERS" \
    --no-progress "${@:6}" $(resume_flag "$3")
  mark_done "$1" "$key"
}
# the MIDI model first: the audio model starts from its timbre encoder (a MIDI structure carries no
# sound, so that encoder has learnt timbre alone)
train_diffusion midi tiny_midi "$WORK/midi" "$MIDI_STEPS" "$MIDI_BATCH"
train_diffusion audio tiny "$WORK/audio" "$AUDIO_STEPS" "$AUDIO_BATCH" \
  --structure-twins "$TWINS" --train-timbre-encoder --init-timbre-from "$WORK/midi"

# 7. the decoder alone, on the same audio: the encoder (so every latent the diffusion models learnt)
# stays bit-identical, and the releases below ship the new decoder with them
DECODER_KEY="$CODEC_KEY decoder=$DECODER_STEPS adversarial=$DECODER_ADVERSARIAL_START lr=$DECODER_LR"
DECODER_FLAG=()
if [ "$DECODER_STEPS" -gt 0 ]; then
  DECODER_FLAG=(--decoder-from "$WORK/decoder")
  if done_with decoder "$DECODER_KEY"; then
    log "decoder: done"
  else
    if [ -d "$WORK/decoder" ] && [ "$(cat "$WORK/decoder/.codec_key" 2>/dev/null)" != "$CODEC_KEY" ]; then
      log "decoder: codec changed, moving the old run aside"
      mv "$WORK/decoder" "$WORK/decoder.old-$(date +%Y%m%d%H%M%S)"
    fi
    mkdir -p "$WORK/decoder"
    echo "$CODEC_KEY" > "$WORK/decoder/.codec_key"
    log "decoder: up to step $DECODER_STEPS"
    # shellcheck disable=SC2046,SC2086
    "$AFTER" train-codec --data "$WORK/data" --preset small --out "$WORK/decoder" --decoder-only \
      --init-from "$WORK/codec" --adversarial-start "$DECODER_ADVERSARIAL_START" \
      --max-steps "$DECODER_STEPS" --batch-size "$CODEC_BATCH" --crop-samples "$CODEC_CROP" \
      --lr "$DECODER_LR" --accelerator "$ACCELERATOR" --checkpoint-every "$CHECKPOINT_EVERY" \
      --val-every "$CHECKPOINT_EVERY" --workers "$WORKERS" --no-progress $CODEC_LOSSES $(resume_flag "$WORK/decoder")
    mark_done decoder "$DECODER_KEY"
  fi
fi

# 8. released model folders (safetensors + model.json, timbre map fitted on the dataset)
release() {  # stage run_dir name [extra release options]
  local key="$DECODER_KEY $1 audio=$AUDIO_STEPS midi=$MIDI_STEPS fp16=$FP16 ${*:4}"
  if done_with "release-$1" "$key" && [ -f "$MODELS_DIR/$3/model.json" ]; then
    log "release $3: done"
    return
  fi
  log "release $3 -> $MODELS_DIR/$3"
  local fp16_flag=()
  if [ "$FP16" = 1 ]; then fp16_flag=(--fp16); fi
  "$AFTER" release "$2" --out "$MODELS_DIR/$3" --name "$3" --dataset "$WORK/data" \
    --map-steps "$MAP_STEPS" "${fp16_flag[@]}" "${DECODER_FLAG[@]}" "${@:4}"
  mark_done "release-$1" "$key"
}
release audio "$WORK/audio" "$AUDIO_NAME" \
  --guidance-timbre "$AUDIO_GUIDANCE" --guidance-structure "$AUDIO_GUIDANCE"
release midi "$WORK/midi" "$MIDI_NAME" \
  --guidance-timbre "$MIDI_GUIDANCE_TIMBRE" --guidance-structure "$MIDI_GUIDANCE_STRUCTURE" \
  --share-codec-with "$MODELS_DIR/$AUDIO_NAME"
log "all stages done: $MODELS_DIR/$AUDIO_NAME and $MODELS_DIR/$MIDI_NAME"
