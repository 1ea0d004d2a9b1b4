#!/usr/bin/env bash
# The device machine's entry point for bench/gpu_check.py (issue 18). Installs the wheels carried in .whl/
# (pydantic and its needs for babelflow.config, nltk for the clean stage; JoeyNMT's for the train_speed peer) into /tmp/site, then
# runs the check on the Multi30k copy carried in .gpu_data/multi30k when it is there. Arguments go to
# gpu_check.py; the results land in $OUT (else ./gpu_check_out).
#   device run: bash bench/gpu_check.sh            carry: [".whl", ".gpu_data"], timeout_s 570
# Before it, here (both folders are git-ignored):
#   mkdir -p .gpu_data/multi30k && cp ../shared/corpora/multi30k/{train,val,test_2016_flickr}.{en,de} .gpu_data/multi30k/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#     typing-extensions==4.16.0 nltk==3.10.4 joeynmt==2.3.0 importlib-metadata==8.7.0 subword-nmt==0.3.8
set -u
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  # A failed install is reported, not fatal: env and the CUDA tests need none of these wheels.
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "gpu_check.sh: installing .whl/*.whl failed; parts that import babelflow.config will fail" >&2
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
data=()
if [ -f .gpu_data/multi30k/train.en ]; then data=(--data .gpu_data/multi30k); fi
export PYTHONUNBUFFERED=1
exec python3 bench/gpu_check.py "${data[@]}" --out "${OUT:-gpu_check_out}" "$@"
