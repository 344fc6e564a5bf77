#!/bin/bash
# The recipe grid on a GPU machine (docs/benchmarks/finetune_recipe_*.md): one process per (dataset, size,
# factor), side by side on one GPU; then the CUDA unit tests. Run from the repository root with $OUT set (where
# the pages are copied) and, where nothing can be installed, the Lite0 weights package and Fashion-MNIST under .gpu/.
export PYTHONPATH=$PWD/src:$PWD/agent/src:$PWD/.gpu/site:$PWD/tests PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export NETCUT_FASHION_MNIST=$PWD/.gpu/fashion NETCUT_CACHE=/tmp/netcut-cache
nvidia-smi -L; python3 -c "import torch, timm; print(torch.__version__, timm.__version__, torch.cuda.is_available())"
mkdir -p /tmp/r
for f in 1 0.3 0.1 0.03; do
  for n in 30 100 300; do
    timeout 330 python3 benchmarks/finetune_recipe.py --device cuda --factors $f --per-class $n --seeds 2 \
      --rows /tmp/r/fashion_${f}_$n.json > /tmp/r/fashion_${f}_$n.log 2>&1 &
  done
  for n in 30 100; do
    timeout 330 python3 benchmarks/finetune_recipe.py --device cuda --data digits --factors $f --per-class $n \
      --seeds 2 --rows /tmp/r/digits_${f}_$n.json > /tmp/r/digits_${f}_$n.log 2>&1 &
  done
done
wait
tail -n 2 /tmp/r/*.log > $OUT/log.txt; cat /tmp/r/*.log > $OUT/all.log
python3 benchmarks/finetune_recipe.py --merge /tmp/r/fashion_*.json --name finetune_recipe_fashion
python3 benchmarks/finetune_recipe.py --merge /tmp/r/digits_*.json --name finetune_recipe_digits
cp docs/benchmarks/finetune_recipe_* $OUT/
NETCUT_TEST_DEVICE=cuda timeout 100 python3 -m pytest -q -p no:cacheprovider tests/unit/test_finetune.py 2>&1 | tail -5
