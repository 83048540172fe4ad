#pragma once
// --local_data (federated-style training): each worker trains on its own local file, which the
// server never reads. Socket-free pieces shared by init_server (experiments/server/) and the
// client (experiments/client/):
//
//   the test-row check   The server sends each worker a random salt and, per row of its own test
//                        set, the first 8 bytes of SHA-256(salt, the row's features rounded to 4
//                        decimals); the worker hashes its own rows alike and reports only how
//                        many match. Rows never travel; a worker holding any test row is refused
//                        (experiments/server/driver.cc) and summary.json records every count.
//   the report           LocalData (network/messages/orchestration.h): samples, label
//                        histogram, shape, the test-row count; checked against the server's
//                        model (its shape and classes) by local_data_refusal(); a file of
//                        another layout with as many features per sample (a CSV beside an
//                        image server) takes the model's shape from LocalPlan::shape.
//   the epoch            Once every worker's report is in, the schedule is fixed over the sum of
//                        their samples: ceil(sum / (node_count x batch_size)) iterations per epoch
//                        (psgd::make_schedule), each worker cycling through its own rows.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "experiments/job_spec.h"
#include "network/messages.h"
#include "nn/dataset.h"

namespace psgd {

// The salted 8-byte hash of each row's features (rounded to 4 decimals, so a row written to a
// CSV with 6 significant digits matches its 8-bit image as read, pixel / 255).
std::vector<std::uint64_t> salted_row_hashes(const nn::Dataset& d, const std::string& salt);
// How many rows of `own` hash to one of `test_hashes` under `salt`.
std::int64_t count_test_rows(const nn::Dataset& own, const std::string& salt,
                             const std::vector<std::uint64_t>& test_hashes);
// A fresh random salt (hex).
std::string make_salt();

// A worker's own file, read for a --local_data job: every training row of `dataset` (a source
// without a test set keeps all its rows; --train_samples keeps the first N), and its report.
// ConfigError naming the file when it cannot be read.
struct LocalFile {
  nn::Dataset train;
  LocalData report;
};
LocalFile read_local_file(const JobSpec& spec, const Job& job, const std::string& dataset);

// The server's check of a worker's report against its model's data (`server_train`: shape,
// classes, regression targets). "" when it may train; else one line naming the worker (its id,
// and `where`: how the server sees its machine, e.g. "10.0.0.3, host node2") and its file. A file
// of another layout with as many features per sample (a CSV's 1x1x784 rows beside an image server's
// 1x28x28) may train: the worker takes the model's shape (take_model_shape) from LocalPlan::shape.
std::string local_data_refusal(const LocalData& report, const nn::Dataset& server_train, int worker,
                               const std::string& where);
// channels, height, width and regression targets of `d`'s samples (LocalData::shape,
// LocalPlan::shape).
std::vector<std::int64_t> model_shape(const nn::Dataset& d);
// "1x28x28 (784 features)", "1x1x5 (5 features, 2 targets)", or "malformed".
std::string shape_text(const std::vector<std::int64_t>& shape);
// Gives `d`'s rows the model's `shape` (LocalPlan::shape): nothing to do when it is theirs, a
// reshape when they hold as many features (each row's values in order, C then H then W, as every
// reader lays them out). "" when done; else the reason, and `d` is left as it was.
std::string take_model_shape(nn::Dataset& d, const std::vector<std::int64_t>& shape);
// "classes 0-4", "classes 0, 3, 7-9", "no class": the classes with samples, for the join line.
std::string classes_present(const std::vector<std::int64_t>& histogram);
// summary.json's and config.json's entry for one worker's report.
nlohmann::json local_data_json(int worker, const std::string& host, const LocalData& report);

}  // namespace psgd
