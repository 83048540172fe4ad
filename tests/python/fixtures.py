"""Fake psgd run directories for the script tests: the files of the run-directory contract
(config.json, summary.json, metrics.csv, workers.csv) with made-up but plausible numbers."""
import csv
import json
import os


def make_run(path, nodes=1, codec="plain", psgd="ssgd", seed=1, epochs=3, status="completed",
             samples_per_second=1000.0, accuracies=(0.1, 0.7, 0.8, 0.85), virtual=False):
    os.makedirs(path, exist_ok=True)
    accuracies = list(accuracies)[: epochs + 1]
    wall_per_epoch = 60000 / samples_per_second
    with open(os.path.join(path, "metrics.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "iteration", "wall_s", "virtual_s", "train_loss", "test_loss", "test_accuracy",
                    "bytes_up", "bytes_down", "samples"])
        for e, acc in enumerate(accuracies):
            w.writerow([e, e * 100, e * wall_per_epoch, e * 2.0 if virtual else "", "" if e == 0 else 1.5 - acc,
                        1.6 - acc, acc, e * 8e5 * nodes, e * 8e5 * nodes, e * 60000])
    with open(os.path.join(path, "workers.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "worker", "host", "iterations", "samples", "compute_s", "encode_s", "wait_s",
                    "transfer_s", "decode_s", "apply_s", "held_s", "bytes_up", "bytes_down"])
        for e in range(1, len(accuracies)):
            for k in range(nodes):
                w.writerow([e, k, "fixture-host", 100, 6400, 1.0, 0.01, 0.5, 0.2, 0.01, 0.0, 0.3, 8e5, 8e5])
    last = len(accuracies) - 1
    summary = {"status": status, "ok": status == "completed", "final_test_accuracy": accuracies[-1],
               "final_test_loss": 1.6 - accuracies[-1], "best_test_accuracy": max(accuracies), "epochs": last,
               "iterations": last * 100, "wall_seconds": last * wall_per_epoch,
               "virtual_seconds": last * 2.0 if virtual else None, "samples": last * 60000,
               "samples_per_second": samples_per_second, "bytes_up": last * 8e5 * nodes,
               "bytes_down": last * 8e5 * nodes, "nodes": nodes, "psgd": psgd, "codec": codec, "redundancy": 1,
               "block_assignment": "iid", "model": "mlp", "dataset": "fashion-mnist", "batch_size": 64,
               "learn_rate": 0.05, "seed": seed, "parameters": 203530, "run_dir": path}
    with open(os.path.join(path, "summary.json"), "w") as f:
        json.dump(summary, f)
    config = {"job": {"node_count": nodes, "psgd": psgd, "codec": codec, "epochs": epochs, "seed": seed,
                      "model": "mlp", "dataset": "fashion-mnist", "batch_size": 64},
              "provenance": {"psgd_revision": "fixture-rev", "host": "fixture-host",
                             "command_line": f"init_server --node_count {nodes} --codec {codec}",
                             "libraries": {"torch": "1.13.1", "blas": "openblas", "asio": "1.28.0"}},
              "seed": seed}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path
