"""Dataset-scale jobs on Ray Data: `insid3-segment --ray` and `insid3-eval --ray`.

    insid3-segment --bundle B --ref cat.jpg --ref-mask cat.png --out masks/ --ray --workers 2 photos/
    insid3-segment ... --ray --address auto --gpus-per-worker 1 s3://bucket/photos/   # on a cluster node
    insid3-eval --bundle B --dataset coco --data-root data --all-folds --ray --workers 4

The driver (the command) lists the inputs and skips what its output folder already holds, then
streams the rest through a Ray Data pipeline: CPU tasks read and pre-process each image
(`segment.py`), an actor pool (one actor per GPU, or N CPU actors: `cluster.py`) runs the
backbone and the kernels with references encoded once and shared through the object store, and
the results stream back to the driver, which writes them with the local command's writers,
manifest and journal. Order is preserved, so outputs equal the local command's byte for byte.
Actors that die are restarted and their batches retried (`cluster.FAULT_TOLERANCE`); the
driver writes each input once. insid3-eval's side is `insid3.evaluation.ray_runner`.
Nothing here is imported unless `--ray` is given: Ray stays an optional extra.
"""
