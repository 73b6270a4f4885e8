#!/usr/bin/env bash
# One phase of the monthly training run (train.yml): `edgeops pipeline run --until PHASE` (the checkout's
# code, `python -m tools.cli`, in the training image) with the same
# arguments in every phase, so that each phase resumes where the previous one stopped (the state file in
# $RUN_DIR skips steps whose inputs and outputs are unchanged) and a re-run of a failed job resumes at the
# failed step. Each phase is its own workflow step so that each gets only the secrets it uses:
#   snapshot  the snapshot role's DSN and read credentials for the LDO store
#   train     nothing (hours of training code see no secret)
#   export    read credentials (evaluate reads the fleet's bundle), still no DSN and no signing key
#   publish   the publish role's DSN, the signing key, fresh write credentials
# Inputs come from the environment: RUN_DIR, LDO_CACHE, CONFIG, SAMPLES, EPOCHS (empty = the config's).
set -euo pipefail
phase="${1:?usage: train-phase.sh snapshot|train|export|publish}"
case "$phase" in snapshot | train | export | publish) ;; *) echo "train-phase.sh: unknown phase $phase" >&2; exit 2 ;; esac
args=(--run-dir "$RUN_DIR" --config "$CONFIG" --source pg+s3 --cache "$LDO_CACHE" --stream)
if [ -n "${SAMPLES:-}" ]; then args+=(--limit "$SAMPLES"); fi
# An override over the training config, checked by its strict model before any step runs; run.json
# records the effective config.
if [ -n "${EPOCHS:-}" ]; then args+=(--set "epochs=$EPOCHS"); fi
mkdir -p "$RUN_DIR"
# The job runs in the training image (train.yml, `container:`), on its libraries, with this checkout's code,
# as the Argo tasks do (pipelines/argo.py): new code never runs on libraries built for another lock.
lock="${EDGEOPS_IMAGE_LOCK:-/opt/edgeops/requirements.lock}"
if ! cmp -s requirements.lock "$lock"; then
  echo "train-phase.sh: this commit's requirements.lock differs from the training image's ($lock): build the image for this commit (images.yml) and point training/IMAGE at it" >&2
  exit 3
fi
exec python -m tools.cli pipeline run "${args[@]}" --until "$phase"
