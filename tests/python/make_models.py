#!/usr/bin/python3
"""Write the TorchScript models the tests train with --model script:FILE.

    tests/python/make_models.py OUT_DIR

Each file is a module defined here in Python and saved with torch.jit.script(model).save(FILE)
(one with torch.jit.trace), as a researcher would save their own network:

  blobs_bn.pt       tabular rows of 3 features (N x 1 x 1 x 3) -> 2 classes: Linear, BatchNorm1d,
                    ReLU, Dropout, Linear (the blobs CSV of tests/integration/blobs.h)
  blobs_traced.pt   the same kind of network, saved with torch.jit.trace
  fashion_cnn.pt    1 x 28 x 28 images -> 10 classes: two Conv2d + BatchNorm2d + ReLU + MaxPool
                    blocks, Dropout, Linear (Fashion-MNIST)
  wrong_input.pt    expects 5 features (the blobs have 3)
  wrong_output.pt   3 features -> 7 outputs (the blobs have 2 classes)
  tuple_output.pt   returns a tuple instead of one tensor
  no_parameters.pt  returns two of its input features: nothing to train
  state_dict.pt     a state dict saved with torch.save: not TorchScript

Exits 77 (ctest's skip code) with one line when Debian's python3-torch is not installed
(scripts/setup.sh installs it). The modules are seeded: the same weights on every
run.
"""
import os
import sys


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        import torch
        from torch import nn
    except ImportError:
        print("make_models: python3-torch is not installed (scripts/setup.sh)")
        return 77
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(1)

    class BlobsNet(nn.Module):
        def __init__(self, features=3, classes=2):
            super().__init__()
            self.flatten = nn.Flatten()
            self.fc1 = nn.Linear(features, 16)
            self.bn = nn.BatchNorm1d(16)
            self.drop = nn.Dropout(0.1)
            self.fc2 = nn.Linear(16, classes)

        def forward(self, x):
            x = self.flatten(x)
            return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))

    class FashionCnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                nn.MaxPool2d(2))
            self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.25),
                                            nn.Linear(32 * 7 * 7, 10))

        def forward(self, x):
            return self.classifier(self.features(x))

    class TupleOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            y = self.fc(torch.flatten(x, 1))
            return y, y

    class NoParameters(nn.Module):
        def forward(self, x):
            return torch.flatten(x, 1)[:, :2]

    class FixedBatch(nn.Module):
        """Reshapes its input to a batch of exactly 2: passes the start's check, fails on others."""
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x.reshape(2, 3))

    def script(module, name):
        torch.jit.script(module).save(os.path.join(out, name))

    script(BlobsNet(), "blobs_bn.pt")
    torch.jit.trace(BlobsNet().eval(), torch.zeros(4, 1, 1, 3)).save(
        os.path.join(out, "blobs_traced.pt"))
    script(FashionCnn(), "fashion_cnn.pt")
    script(BlobsNet(features=5), "wrong_input.pt")
    script(BlobsNet(classes=7), "wrong_output.pt")
    script(TupleOut(), "tuple_output.pt")
    script(NoParameters(), "no_parameters.pt")
    torch.jit.trace(FixedBatch(), torch.zeros(2, 1, 1, 3)).save(
        os.path.join(out, "fixed_batch.pt"))
    torch.save(BlobsNet().state_dict(), os.path.join(out, "state_dict.pt"))
    print(f"make_models: wrote 9 files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
