#!/usr/bin/python3
"""Load a psgd run's state_dict.pt with Python PyTorch and print its test accuracy as JSON.

    tests/python/check_state_dict.py RUN_DIR

Rebuilds the model named in config.json as the equivalent torch.nn.Sequential (nn/models.cc),
loads state_dict.pt with torch.load, reads the test set (IDX files, pixels / 255, as nn/idx.cc),
applies the run's normaliser (config.json data.normalizer: x' = (x - shift) * scale per feature)
and evaluates in chunks of 1000. Exits 77 (ctest's skip code) when torch is not installed.
"""
import gzip
import json
import os
import struct
import sys


def idx_file(directory, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{stem}(.gz) not in {directory}")


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return dims, data[4 + 4 * ndim :]


def dataset_dir(spec):
    if spec == "fashion-mnist":
        return os.environ.get("PSGD_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    for prefix in ("mnist:", "idx:"):
        if spec.startswith(prefix):
            return spec[len(prefix) :]
    raise ValueError(f"dataset {spec}: only IDX datasets are supported here")


def main():
    try:
        import torch
        from torch import nn
    except ImportError:
        print("check_state_dict: python3-torch is not installed (scripts/setup.sh)")
        return 77
    run = sys.argv[1]
    config = json.load(open(os.path.join(run, "config.json")))
    job = config["job"]
    state = torch.load(os.path.join(run, "state_dict.pt"))
    directory = dataset_dir(job["dataset"])
    (n, h, w), pixels = read_idx(idx_file(directory, "t10k-images-idx3-ubyte"))
    (_,), labels = read_idx(idx_file(directory, "t10k-labels-idx1-ubyte"))
    limit = job.get("test_samples", 0)
    if limit and limit < n:
        n = limit
    x = torch.frombuffer(bytearray(pixels[: n * h * w]), dtype=torch.uint8).float().div_(255.0)
    norm = config.get("data", {}).get("normalizer", {"kind": "none"})
    if norm["kind"] != "none":
        x = x.view(n, h * w).sub_(torch.tensor(norm["shift"])).mul_(torch.tensor(norm["scale"]))
    x = x.view(n, 1, h, w)
    y = torch.frombuffer(bytearray(labels[:n]), dtype=torch.uint8).long()
    if job["model"] == "mlp":
        classes = state["3.weight"].shape[0]
        model = nn.Sequential(nn.Flatten(), nn.Linear(h * w, 256), nn.ReLU(), nn.Linear(256, classes))
    elif job["model"] == "cnn":
        classes = state["9.weight"].shape[0]
        model = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * (h // 4) * (w // 4), 128), nn.ReLU(), nn.Linear(128, classes))
    else:
        raise ValueError(f"model {job['model']}: unknown")
    model.load_state_dict(state)
    model.eval()
    correct = 0
    loss = 0.0
    with torch.no_grad():
        for start in range(0, n, 1000):
            out = model(x[start : start + 1000])
            target = y[start : start + 1000]
            loss += nn.functional.cross_entropy(out, target, reduction="sum").item()
            correct += (out.argmax(1) == target).sum().item()
    print(json.dumps({"test_samples": n, "correct": correct, "test_accuracy": correct / n,
                      "test_loss": loss / n, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
