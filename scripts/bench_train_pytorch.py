#!/usr/bin/python3
"""PyTorch baseline for scripts/bench-train.sh: the same model, optimizer, batch and threads as
kiln-train, single process or DistributedDataParallel over gloo. Prints one line:
  pytorch <mode> <model> steps=<n> seconds=<training loop time> samples_per_s=<global>
Usage: bench_train_pytorch.py MODEL(mlp|cnn) STEPS [--ddp RANK WORLD PORT]"""
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

DATA = "/usr/share/datasets/fashion-mnist"


def load_images():
    with gzip.open(os.path.join(DATA, "train-images-idx3-ubyte.gz")) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    with gzip.open(os.path.join(DATA, "train-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    x = torch.from_numpy(raw.reshape(-1, 784).astype(np.float32) / 255.0)
    x = (x - 0.2860) / 0.3530
    return x, torch.from_numpy(labels.astype(np.int64))


def build(model):
    if model == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                         nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 1024), nn.ReLU(), nn.Linear(1024, 10))


def main():
    model_name, steps = sys.argv[1], int(sys.argv[2])
    ddp = len(sys.argv) > 3 and sys.argv[3] == "--ddp"
    rank, world = (int(sys.argv[4]), int(sys.argv[5])) if ddp else (0, 1)
    torch.set_num_threads(1)
    torch.manual_seed(1)
    x, y = load_images()
    model = build(model_name)
    if ddp:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = sys.argv[6]
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = nn.CrossEntropyLoss()
    batch = 64
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))
    per_step = batch * world

    def step(i):
        start = (i * per_step + rank * batch) % (x.shape[0] - per_step)
        idx = order[start:start + batch]
        optimizer.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()

    for i in range(5):  # warm-up, as kiln's first steps also pay for allocation
        step(i)
    if ddp:
        torch.distributed.barrier()
    begin = time.perf_counter()
    steps -= 5  # kiln-train, too, times the steps after its 5 warm-up steps
    for i in range(steps):
        step(i + 5)
    seconds = time.perf_counter() - begin
    if rank == 0:
        print(f"pytorch {'ddp' if ddp else 'single'} {model_name} steps={steps} "
              f"seconds={seconds:.3f} samples_per_s={steps * per_step / seconds:.1f}", flush=True)
    if ddp:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
