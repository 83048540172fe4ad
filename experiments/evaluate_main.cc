// evaluate: load a finished run's trained model and print its test accuracy.
//
//   evaluate RUN_DIR [--model_file model_best.pt] [--dataset SPEC] [--test_samples N] [--json]
//
// The model, dataset, test-set size and seed come from RUN_DIR/config.json ("job"); the weights
// from RUN_DIR/model.pt, or another model file of the run (--save_every_epoch: model_best.pt,
// model_epoch_<E>.pt). The test rows are transformed by the run's own normaliser (config.json
// data.normalizer, fitted on its training rows: --normalize), also when --dataset names other data,
// because the model was trained on normalised inputs. With the run's own settings the accuracy
// equals summary.json's final_test_accuracy (the same evaluation code on the same samples);
// regression runs print RMSE and R^2.
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "core/error.h"
#include "nn/data_source.h"
#include "nn/normalize.h"
#include "nn/options.h"
#include "nn/threads.h"
#include "nn/trainer.h"

namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in)
    throw psgd::IoError(
        fmt::format("{}: cannot open (is this a psgd run directory?)", path.string()));
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw psgd::IoError(fmt::format("{}: not valid JSON: {}", path.string(), e.what()));
  }
}

// The normaliser the run applied to every sample (config.json data.normalizer); "none" for runs
// without one, and for run directories written before it was recorded.
psgd::nn::Normalizer run_normalizer(const nlohmann::json& config) {
  psgd::nn::Normalizer n;
  const auto data = config.find("data");
  if (data == config.end() || !data->contains("normalizer")) return n;
  const nlohmann::json& j = data->at("normalizer");
  n.kind = j.value("kind", std::string("none"));
  n.shift = j.value("shift", std::vector<float>{});
  n.scale = j.value("scale", std::vector<float>{});
  return n;
}

// summary.json when it is there and valid (a run still going has none); null otherwise.
nlohmann::json read_summary(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return nullptr;
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  return j.is_discarded() ? nlohmann::json(nullptr) : j;
}

}  // namespace

int main(int argc, char** argv) {
  std::string run_dir, dataset, model_file = "model.pt";
  std::int64_t test_samples = -1;
  bool json = false;
  CLI::App app{
      "Load a psgd run's trained model (RUN_DIR/model.pt) and print its test accuracy.\n"
      "Model, dataset, test-set size and the normaliser (--normalize) are read from\n"
      "RUN_DIR/config.json; the test rows are normalised as the run's were.",
      "evaluate"};
  app.add_option("run_dir", run_dir, "A finished run directory")->required();
  app.add_option("--model_file", model_file,
                 "Which model file of the run: model.pt (the final model, default), "
                 "model_best.pt or model_epoch_<E>.pt (written with --save_every_epoch)");
  app.add_option(
      "--dataset", dataset,
      "Read the test set from here instead of the run's dataset (normalised with the run's "
      "statistics, which must fit its sample size)");
  app.add_option("--test_samples", test_samples,
                 "Evaluate on the first N test samples (0: all; default: as the run did)");
  app.add_flag("--json", json, "Print one JSON object instead of a sentence");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    namespace fs = std::filesystem;
    // model<tag>.pt, as nn::Trainer::save names it.
    const std::string stem = fs::path(model_file).stem().string();
    if (fs::path(model_file).has_parent_path() || fs::path(model_file).extension() != ".pt" ||
        !stem.starts_with("model")) {
      throw psgd::ConfigError(fmt::format(
          "--model_file {}: name a model file in the run directory (model.pt, model_best.pt, "
          "model_epoch_<E>.pt)",
          model_file));
    }
    const std::string tag = stem.substr(5);
    const nlohmann::json config = read_json(fs::path(run_dir) / "config.json");
    if (!fs::exists(fs::path(run_dir) / model_file)) {
      throw psgd::IoError(
          fmt::format("{}: no such file: the run saved no {} (see its summary.json status{})",
                      (fs::path(run_dir) / model_file).string(), model_file,
                      model_file == "model.pt" ? ""
                                               : "; --save_every_epoch writes model_best.pt and "
                                                 "model_epoch_<E>.pt"));
    }
    const nlohmann::json& job = config.at("job");
    const std::string model = job.at("model").get<std::string>();
    if (dataset.empty()) {
      dataset = job.at("dataset").get<std::string>();
      // The job's relative paths are those of the directory the run was started in
      // (config.json provenance.working_directory): read them from there, wherever this runs.
      const auto started_in = config.value("provenance", nlohmann::json::object())
                                  .value("working_directory", std::string());
      std::error_code ec;
      if (!started_in.empty() && fs::is_directory(started_in, ec) &&
          !fs::equivalent(started_in, fs::current_path(), ec)) {
        run_dir = fs::absolute(run_dir).string();
        fs::current_path(started_in, ec);
      }
    }
    if (test_samples < 0) test_samples = job.value("test_samples", std::int64_t{0});
    psgd::nn::set_compute_threads(1);
    psgd::nn::keep_freed_memory();
    // The training set as the run loaded it: the model's class count is the larger of the two
    // sets' (nn/data_source.h), so a smaller subset could build a different model.
    psgd::nn::DataSplit split =
        psgd::nn::load_dataset(dataset, job.value("train_samples", std::int64_t{0}), test_samples,
                               {.label_column = job.value("label_column", std::string()),
                                .regression = job.value("target", std::string()) == "regression",
                                .image_layout = job.value("image_layout", std::string("auto"))});
    const psgd::nn::Normalizer normalizer = run_normalizer(config);
    normalizer.apply(split.test);
    auto data = std::make_shared<const psgd::nn::DataSplit>(std::move(split));
    // --model script:FILE: the run's model.pt is the trained TorchScript module itself, so the
    // researcher's original file is not needed (it may have moved or changed since).
    const std::string built =
        model.starts_with(psgd::nn::kScriptPrefix)
            ? psgd::nn::kScriptPrefix + (fs::path(run_dir) / model_file).string()
            : model;
    psgd::nn::Trainer trainer(
        psgd::nn::TrainerOptions{.model = built,
                                 .target = job.value("target", std::string("xy")),
                                 .batch_size = job.value("batch_size", 128),
                                 .seed = job.value("seed", std::uint64_t{1}),
                                 .device = job.value("device", std::string("auto"))},
        data, {});
    trainer.load(run_dir, tag);
    const psgd::EvalStats eval = trainer.evaluate();
    // model.pt holds the run's last parameters; summary.json's final figures are of its last
    // evaluation, earlier when the run was interrupted or failed between two: say so.
    std::string note;
    const nlohmann::json summary = read_summary(fs::path(run_dir) / "summary.json");
    if (model_file == "model.pt" && summary.is_object() &&
        summary.value("final_test_iteration", nlohmann::json()).is_number_integer() &&
        summary.value("iterations", nlohmann::json()).is_number_integer() &&
        summary["final_test_iteration"] != summary["iterations"]) {
      note = fmt::format(
          "model.pt holds the parameters after iteration {}; summary.json's final_test_* figures "
          "are of the last evaluation, at iteration {} (the run ended \"{}\" between two "
          "evaluations), so they differ from these",
          summary["iterations"].get<std::int64_t>(),
          summary["final_test_iteration"].get<std::int64_t>(), summary.value("status", "?"));
    }
    auto opt = [](const std::optional<double>& v) {
      return v && !std::isnan(*v) ? nlohmann::json(*v) : nlohmann::json(nullptr);
    };
    if (json) {
      std::cout << nlohmann::json{{"run_dir", run_dir},
                                  {"model", model},
                                  {"model_file", model_file},
                                  {"dataset", dataset},
                                  {"normalizer", normalizer.kind},
                                  {"test_samples", eval.samples},
                                  {"test_loss", eval.loss},
                                  {"test_accuracy", opt(eval.accuracy)},
                                  {"test_rmse", opt(eval.rmse)},
                                  {"test_r2", opt(eval.r2)},
                                  {"note",
                                   note.empty() ? nlohmann::json(nullptr) : nlohmann::json(note)}}
                       .dump()
                << "\n";
    } else if (eval.rmse) {
      fmt::print(
          "evaluate: {} ({}) on {} ({} test samples): test RMSE {:.6g}, R^2 {:.4f}, loss "
          "{:.6g}\n",
          model, model_file, dataset, eval.samples, *eval.rmse, eval.r2.value_or(NAN), eval.loss);
    } else {
      fmt::print(
          "evaluate: {} on {} ({} test samples): test accuracy {:.4f} ({:.2f}%), loss {:.4f}\n",
          model, dataset, eval.samples, eval.accuracy, 100 * eval.accuracy, eval.loss);
    }
    if (!note.empty() && !json) fmt::print("evaluate: note: {}\n", note);
    return 0;
  } catch (const psgd::ConfigError& e) {
    fmt::print(stderr, "evaluate: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "evaluate: {}\n", e.what());
    return 1;
  }
}
