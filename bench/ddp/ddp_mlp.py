#!/usr/bin/python3
"""PyTorch DDP (Gloo, CPU) on the job psgd trains by default, for bench/ddp_compare.py.

    /usr/bin/python3 bench/ddp/ddp_mlp.py --workers 4 [--epochs 2] [--threads T] [--model cnn]

The job, as psgd's defaults: MLP 784-256-10, or with --model cnn psgd's `--model cnn` (two 5x5
conv + ReLU + 2x2 max-pool layers of 16 and 32 channels, dense 128, dense 10: nn/models.cc's
network layer for layer, built by bench/engine/plain_loop.py's build()); torch.nn's own
initialisation of Linear and Conv2d (Kaiming-uniform weights, uniform biases), which is
libtorch's too, seeded with torch.manual_seed(seed) as nn/trainer.cc does; Fashion-MNIST from
Debian's dataset-fashion-mnist (the IDX .gz files read directly; pixels / 255), batch 128 per
worker, SGD lr 0.05 momentum 0.9, gradients averaged over the workers (DDP's allreduce, or with
--hook fp16 / powersgd DDP's fp16_compress_hook / powerSGD_hook).

Data and schedule follow psgd's iid placement: the training set is shuffled once with the seed
and cut into one shard per worker; each worker draws its batches from a fresh permutation of its
shard per pass; an epoch is ceil(N / (workers * batch)) iterations. At the end of every epoch
rank 0 evaluates the test set (psgd's server does the same), the other ranks wait for it in the
next allreduce.

Processes: `workers` processes started with torch.multiprocessing (spawn) on loopback, rendezvous
on tcp://127.0.0.1:<free port>. Threads: torch.set_num_threads(T) and
set_num_interop_threads(T) per process, T = max(1, cores // workers) unless --threads says
otherwise: the same rule psgd's server applies to its clients (nn/threads.cc).

Prints one JSON line: samples_per_second = training samples / seconds from the first step (after
start-up, model broadcast and the initial evaluation) to the end of the last evaluation, as
psgd's summary.json counts it; test_accuracy after the last epoch.
"""
import argparse
import gzip
import json
import math
import os
import socket
import struct
import sys
import time

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    if magic >> 8 != 0x08:  # unsigned bytes
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    dims = struct.unpack(">" + "I" * (magic & 0xFF), raw[4:4 + 4 * (magic & 0xFF)])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(dims))
    return data.reshape(dims)


def load_split(data_dir, split, limit):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    if limit > 0:
        x, y = x[:limit], y[:limit]
    return x, y


def to_tensors(x_u8, y_u8):
    import torch
    x = torch.from_numpy(x_u8.astype("float32") / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(y_u8.astype("int64"))
    return x, y


def worker(rank, args, port, queue):
    import numpy as np
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=args.workers)
    n = args.workers

    train_x, train_y = load_split(args.data_dir, "train", args.train_samples)
    num_train = len(train_y)
    shard = np.random.default_rng(args.seed).permutation(num_train)[rank::n]
    x, y = to_tensors(train_x[np.sort(shard)], train_y[np.sort(shard)])
    del train_x, train_y
    if rank == 0:
        test_x, test_y = to_tensors(*load_split(args.data_dir, "test", args.test_samples))

    torch.manual_seed(args.seed)
    # The networks of nn/models.cc, defined once for the Python side (bench/engine/plain_loop.py).
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "engine"))
    from plain_loop import build
    model = build(args.model, nn)
    ddp = nn.parallel.DistributedDataParallel(model)
    # --hook: DDP's communication hooks, the peers of psgd's --psgd allreduce --codec fp16|powersgd.
    if args.hook == "fp16":
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif args.hook == "powersgd":
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powersgd
        # start_powerSGD_iter 2: the smallest DDP allows with error feedback (psgd compresses
        # from the first iteration); min_compression_rate 2, error feedback and warm start on:
        # the hook's defaults, which psgd follows.
        state = powersgd.PowerSGDState(process_group=None, matrix_approximation_rank=args.rank,
                                       start_powerSGD_iter=2, random_seed=args.seed)
        ddp.register_comm_hook(state, powersgd.powerSGD_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=args.momentum)

    def evaluate():
        with torch.no_grad():
            correct = 0
            for first in range(0, len(test_y), 1000):
                out = model(test_x[first:first + 1000])
                correct += int(out.argmax(1).eq(test_y[first:first + 1000]).sum())
        return correct / len(test_y)

    initial = evaluate() if rank == 0 else None
    batch = min(args.batch_size, len(y))
    iterations = math.ceil(num_train / (n * args.batch_size))
    gen = torch.Generator().manual_seed(args.seed * 1000003 + rank)
    order, cursor = torch.randperm(len(y), generator=gen), 0
    batch_index = torch.empty(batch, dtype=torch.int64)
    samples = 0
    accuracy = None
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.epochs):
        for _ in range(iterations):
            # The next `batch` samples of this pass, wrapping into a new permutation.
            filled = 0
            while filled < batch:
                if cursor == len(order):
                    order, cursor = torch.randperm(len(y), generator=gen), 0
                take = min(batch - filled, len(order) - cursor)
                batch_index[filled:filled + take] = order[cursor:cursor + take]
                filled, cursor = filled + take, cursor + take
            opt.zero_grad()
            loss = F.cross_entropy(ddp(x.index_select(0, batch_index)), y.index_select(0, batch_index))
            loss.backward()  # DDP averages the gradients over the workers here
            opt.step()
            samples += n * batch
        if rank == 0:
            accuracy = evaluate()
    dist.barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        queue.put({
            "system": "ddp",
            "model": args.model,
            "workers": n,
            "threads_per_process": args.threads,
            "epochs": args.epochs,
            "batch_size": batch,
            "iterations": iterations * args.epochs,
            "samples": samples,
            "seconds": seconds,
            "samples_per_second": samples / seconds,
            "initial_test_accuracy": initial,
            "test_accuracy": accuracy,
            "torch": torch.__version__,
            "backend": dist.get_backend(),
        })
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    cores = len(os.sched_getaffinity(0))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=4, help="DDP processes (default 4)")
    p.add_argument("--epochs", type=int, default=2, help="passes over the training set (default 2)")
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                   help="mlp (784-256-10, psgd's default) or cnn (psgd's --model cnn); default mlp")
    p.add_argument("--batch_size", type=int, default=128, help="samples per worker and step (128)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (0.05, as psgd)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (0.9, as psgd)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per process (default max(1, cores // workers))")
    p.add_argument("--hook", choices=("allreduce", "fp16", "powersgd"), default="allreduce",
                   help="DDP communication hook: allreduce (DDP's default), fp16 "
                        "(fp16_compress_hook) or powersgd (powerSGD_hook, --rank)")
    p.add_argument("--rank", type=int, default=4, help="powersgd: matrix_approximation_rank (4)")
    p.add_argument("--seed", type=int, default=1, help="initialisation, shards, batch order (1)")
    p.add_argument("--train_samples", type=int, default=0, help="use the first N training samples (0: all)")
    p.add_argument("--test_samples", type=int, default=0, help="use the first N test samples (0: all)")
    p.add_argument("--data_dir", default=os.environ.get("PSGD_FASHION_MNIST_DIR") or DEFAULT_DATA,
                   help=f"the four Fashion-MNIST IDX .gz files (default $PSGD_FASHION_MNIST_DIR or {DEFAULT_DATA})")
    args = p.parse_args()
    if args.workers < 1 or args.epochs < 1 or args.batch_size < 1 or args.threads < 0:
        p.error("--workers, --epochs and --batch_size must be >= 1, --threads >= 0")
    if not os.path.exists(os.path.join(args.data_dir, "train-images-idx3-ubyte.gz")):
        sys.exit(f"ddp_mlp: Fashion-MNIST not found in {args.data_dir}: install Debian's "
                 "dataset-fashion-mnist or pass --data_dir")
    try:
        import torch.multiprocessing as mp
    except ImportError:
        sys.exit("ddp_mlp: PyTorch not found for " + sys.executable + ": run bench/setup_ddp.sh")
    if args.threads == 0:
        args.threads = max(1, cores // args.workers)
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(worker, args=(args, free_port(), queue), nprocs=args.workers, join=True,
                       start_method="spawn")
    result = queue.get()
    result["cores"] = cores
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
