#pragma once
// The cluster file (init_server --cluster F, scripts/launch_ssh.sh --cluster F): a lab's machines
// in one JSON object, as seed 000's config and TensorFlow's TF_CONFIG list them.
//
//   {"server": {"address": "10.0.0.1", "port": 55555},
//    "passphrase_file": "/home/me/.psgd-passphrase",
//    "workers": [{"host": "node1", "slots": 2, "dataset": "csv:/data/train.csv", "user": "me"},
//                {"host": "node2"}],
//    "ssh": {"port": 2222, "identity_file": "~/.ssh/psgd_lab", "known_hosts": "~/.ssh/psgd_hosts"}}
//
// server.address is where workers connect (required); server.port defaults to 55555;
// passphrase_file is optional (the launchers refuse to go without a secret unless --insecure; a
// relative path is taken from the cluster file's directory, "~/" from the home directory);
// each worker entry needs host and may give slots (clients on that host, default 1), dataset
// (where that host keeps the data, its client's --dataset) and user (the ssh user). The optional
// "ssh" object is for scripts/launch_ssh.sh (the workers' sshd port, the private key, a
// known_hosts file checked strictly); init_server only checks its keys and types. The job gets
// node_count = the sum of the slots and working_ports = server.port; config.json records the
// file's object as "cluster". Unknown keys and wrong types are refused naming the key.
#include <nlohmann/json.hpp>
#include <string>

namespace psgd {

struct ClusterFile {
  nlohmann::json json;  // the file's object, as written
  std::string address;  // server.address
  int port = 55555;     // server.port
  std::string passphrase_file;
  int slots = 0;  // the sum of the workers' slots
};

// Reads and checks `path`; throws ConfigError with one line naming the file and the key.
ClusterFile read_cluster_file(const std::string& path);

}  // namespace psgd
