#!/usr/bin/python3
"""The one-thread training loop of bench/engine_loop.cc in Python PyTorch (one JSON line).

    /usr/bin/python3 bench/engine/plain_loop.py --model cnn [--steps 200] [--warmup 10]

The networks are nn/models.cc's, layer for layer (mlp, cnn, resnet8 with GroupNorm); Fashion-MNIST
from Debian's dataset-fashion-mnist (pixels / 255, as psgd's default normaliser is none here:
the loop's speed does not depend on the values); torch.set_num_threads(--threads); batch 128;
SGD lr 0.05 momentum 0.9; optimizer.zero_grad() then backward then step, a batch indexed out
of the training tensor with a random permutation. samples/s = timed steps x batch / seconds.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    dims = struct.unpack(">" + "I" * (magic & 0xFF), raw[4:4 + 4 * (magic & 0xFF)])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def build(name, nn):
    def gn(c):
        return nn.GroupNorm(min(4, c), c)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.norm1 = gn(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.norm2 = gn(cout)
            self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                             if stride != 1 or cin != cout else None)

        def forward(self, x):
            import torch
            y = torch.relu(self.norm1(self.conv1(x)))
            y = self.norm2(self.conv2(y))
            return torch.relu(y + (self.shortcut(x) if self.shortcut is not None else x))

    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    if name == "resnet8":
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), gn(16), nn.ReLU(),
                             Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    raise SystemExit(f"plain_loop: --model {name}: expected mlp, cnn or resnet8")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cnn", help="mlp | cnn | resnet8")
    p.add_argument("--steps", type=int, default=200, help="timed steps (200)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (10)")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train_samples", type=int, default=10000, help="first N samples (0: all)")
    p.add_argument("--data_dir", default=os.environ.get("PSGD_FASHION_MNIST_DIR") or DEFAULT_DATA)
    a = p.parse_args()
    if a.steps < 1 or a.warmup < 0 or a.batch_size < 1 or a.threads < 1:
        p.error("--steps, --batch_size, --threads must be >= 1 and --warmup >= 0")
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    images = read_idx(os.path.join(a.data_dir, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(a.data_dir, "train-labels-idx1-ubyte.gz"))
    if a.train_samples:
        images, labels = images[:a.train_samples], labels[:a.train_samples]
    x = torch.from_numpy(images.astype("float32") / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(labels.astype("int64"))
    n = len(y)
    torch.manual_seed(1)
    model = build(a.model, nn)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    order = torch.randperm(n)
    at = 0
    start = None
    loss = None
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            start = time.perf_counter()
        if at + a.batch_size > n:
            at = 0
        idx = order[at:at + a.batch_size]
        at += a.batch_size
        opt.zero_grad()
        l = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
        l.backward()
        opt.step()
        loss = l.item()
    seconds = time.perf_counter() - start
    print(json.dumps({"loop": "python", "model": a.model, "threads": torch.get_num_threads(),
                      "steps": a.steps, "batch_size": a.batch_size, "seconds": seconds,
                      "samples_per_second": a.steps * a.batch_size / seconds,
                      "last_loss": loss}), flush=True)


if __name__ == "__main__":
    main()
