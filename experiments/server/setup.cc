// init_server's TCP driver, part 0: the server is set up from its job plan (data, model, run
// directory, checkpoint to resume) and listens (experiments/server/driver.h). driver.cc accepts
// and loads, training.cc trains and ends the run.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "experiments/format.h"
#include "experiments/local_data.h"
#include "experiments/provenance.h"
#include "experiments/server/driver.h"
#include "experiments/server/server.h"
#include "network/tcp/event_loop.h"
#include "nn/data_source.h"
#include "nn/threads.h"

namespace psgd {

using asio::ip::tcp;

Server::Server(const ServerOptions& options)
    : opts_(options),
      spec_(opts_.spec),
      join_timer_(io_),
      progress_timer_(io_),
      shutdown_timer_(io_),
      stop_timer_(io_),
      results_timer_(io_),
      signals_(io_, SIGINT, SIGTERM),
      workers_(options.spec.node_count),
      results_(options.spec.node_count) {}

Server::~Server() = default;

int Server::run() {
  key_ = net::load_key(opts_.passphrase_file);
  try {
    prepare();
    listen();
  } catch (...) {
    // Nothing ran (a port taken, a full disk): a new run's directory goes, so that the same
    // --output works next time; a resumed run's stays as it was.
    if (run_) run_->discard();
    throw;
  }
  wait_for_signal();
  join_timer_.expires_after(seconds(spec_.join_timeout));
  join_timer_.async_wait([this](std::error_code ec) {
    if (ec || phase_ == Phase::kTraining || phase_ == Phase::kDone) return;
    fail(phase_ == Phase::kJoining
             ? fmt::format("only {} of {} workers joined within --join_timeout {} s; start each "
                           "with: {}",
                           workers_.joined(), spec_.node_count, spec_.join_timeout,
                           client_command())
             : fmt::format("only {} of {} workers were ready within --join_timeout {} s",
                           workers_.ready(), spec_.node_count, spec_.join_timeout));
  });
  // A handler that throws ends the run with that reason (workers told, summary written) instead
  // of ending the process with nothing written; the loop then goes on until the links drain.
  while (true) {
    try {
      net::run_event_loop(io_, [this] { return poll_window(); });
      break;
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }
  if (writer_.valid()) writer_.wait();
  return exit_code_;
}

void Server::prepare() {
  nn::set_compute_threads(1);
  nn::keep_freed_memory();
  for (const std::string& note : opts_.notes)
    fmt::print("init_server: {}\n", note);
  // A directory holding any run is refused before the data are loaded (RunDirectory, below,
  // checks again).
  if (opts_.resume.empty() && !spec_.output.empty()) RunDirectory::check_new(spec_.output);
  plan_ = std::make_unique<JobPlan>(spec_);
  for (const std::string& note : plan_->notes())
    fmt::print("init_server: note: {}\n", note);
  fmt::print("init_server: {}{}\ninit_server: {}\n", nn::describe(*plan_->train()),
             spec_.local_data ? " (its shape and classes only: --local_data trains on the "
                                "workers' own files)"
                              : "",
             nn::describe(plan_->evaluation()->test));
  if (!plan_->holdout().validation.empty()) {
    fmt::print("init_server: {} (held out of the training set)\n",
               nn::describe(plan_->evaluation()->validation));
  }
  model_ = plan_->make_model();
  for (const std::string& note : plan_->model_notes(*model_))
    fmt::print("init_server: note: {}\n", note);
  schedule_ = plan_->schedule();
  if (spec_.ships_data())
    shipper_ = std::make_unique<DataShipper>(plan_->train(), plan_->data_hash());
  checkpointer_ = std::make_unique<Checkpointer>(spec_, schedule_, model_->num_parameters(),
                                                 model_->num_buffers(), plan_->script_sha256());
  if (spec_.local_data) {
    // --resume is refused with the job (experiments/cli.cc resume_job).
    local_salt_ = make_salt();
    local_test_hashes_ = salted_row_hashes(plan_->evaluation()->test, local_salt_);
    local_reports_ = nlohmann::json::array();
    for (int w = 0; w < spec_.node_count; ++w)
      local_reports_.push_back(nullptr);
    fmt::print(
        "init_server: {}; {} with codec {}, {} workers x batch {}; --local_data: each worker "
        "trains on its own file, and the iterations per epoch are fixed once all have said how "
        "many samples they hold\n",
        model_->describe(), spec_.psgd, spec_.codec, spec_.node_count, spec_.batch_size);
  } else {
    fmt::print(
        "init_server: {}; {} {} with codec {}, {} workers x batch {}, {} iterations per epoch\n",
        model_->describe(), spec_.psgd, spec_.block_assignment, spec_.codec, spec_.node_count,
        spec_.batch_size, schedule_.iterations_per_epoch);
  }
  // Created only once the data and the model are known to work, so a bad flag leaves no debris.
  const std::string dir = spec_.output.empty() ? default_run_dir(spec_) : spec_.output;
  // The job's identity, told to every worker in the handshake: a worker that loses this server
  // rejoins only a server of the same job (a resumed one keeps the id from config.json).
  id_ = {.job_id = opts_.resume.empty() ? net::random_id() : job_id_of(dir),
         .server_id = net::random_id(8),
         .dead_after = opts_.dead_after};
  if (!opts_.resume.empty()) {
    resumed_ = checkpointer_->load(spec_.output);
    auto params = model_->parameters();
    std::copy(resumed_->parameters.begin(), resumed_->parameters.end(), params.begin());
  }
  run_ = resumed_ ? std::make_unique<RunDirectory>(dir, resumed_->epochs_done)
                  : std::make_unique<RunDirectory>(dir);
  if (resumed_) results_.load(dir);
  if (opts_.tensorboard)
    tensorboard_ = std::make_unique<TensorBoardWriter>(run_->file("tensorboard"));
  make_recorder();
  if (resumed_) {
    // config.json stays as the first start wrote it; the resume is recorded in summary.json.
    try {
      const auto state = nlohmann::json::parse(resumed_->driver_state);
      recorder_->resume(state.at("recorder"));
      events_ = state.at("events");
    } catch (const nlohmann::json::exception& e) {
      throw ConfigError(
          fmt::format("--resume {}: checkpoint corrupt: recorder state: {}", dir, e.what()));
    }
    try {
      recorder_->resume_average(resumed_->average, resumed_->iteration);
    } catch (const ConfigError& e) {
      throw ConfigError(fmt::format("--resume {}: {}", dir, e.what()));
    }
    resumed_->average = {};
    events_.push_back({{"event", "resumed"},
                       {"iteration", resumed_->iteration},
                       {"epoch", resumed_->epochs_done},
                       {"command_line", opts_.command_line}});
    fmt::print("init_server: resuming {} from its checkpoint at iteration {} (epoch {} of {})\n",
               dir, resumed_->iteration, resumed_->epochs_done, spec_.epochs);
    return;
  }
  run_->write_config(config_json());
}

void Server::make_recorder() {
  recorder_ = std::make_unique<RunRecorder>(RecorderSetup{
      .spec = &spec_,
      .schedule = schedule_,
      .dir = run_.get(),
      .model = model_.get(),
      .wall = &clock_,
      .evaluate_async =
          [this](std::span<const float> parameters) { return evaluate_in_background(parameters); },
      .traffic = [this](int w) { return traffic_of(w); },
      .average_decay = spec_.model_average_decay(),
      .save_model = [this](const std::string& tag) { model_->save(run_->path(), tag); }});
  if (tensorboard_) {
    recorder_->set_epoch_listener(
        [this](const MetricsRow& row, const std::vector<WorkerRow>& workers) {
          tensorboard_->add_scalars(row.epoch, epoch_scalars(row, workers));
        });
  }
}

void Server::listen() {
  if (opts_.bind.empty()) opts_.bind = key_ ? "0.0.0.0" : "127.0.0.1";
  std::error_code bad_address;
  const auto address = asio::ip::make_address(opts_.bind, bad_address);
  if (bad_address) throw ConfigError(fmt::format("--bind {}: not an IP address", opts_.bind));
  if (!key_ && !address.is_loopback()) {
    fmt::print(stderr,
               "init_server: WARNING: listening on {} without a passphrase: anyone who can reach "
               "this port can join the job or send it data; give --passphrase_file or "
               "${}\n",
               opts_.bind, net::kPassphraseEnv);
  }
  for (int port : spec_.working_ports) {
    auto acceptor = std::make_unique<tcp::acceptor>(io_);
    std::error_code ec;
    tcp::endpoint ep(address, static_cast<unsigned short>(port));
    acceptor->open(ep.protocol(), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor->bind(ep, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      throw IoError(
          fmt::format("cannot listen on {}:{}: {} (is another init_server using it? "
                      "choose another --working_ports)",
                      opts_.bind, port, ec.message()));
    }
    ports_.push_back(acceptor->local_endpoint().port());
    acceptors_.push_back(std::move(acceptor));
  }
  for (auto& a : acceptors_)
    accept(*a);
  if (!opts_.port_file.empty()) write_file_atomic(opts_.port_file, fmt::format("{}\n", ports_[0]));
  fmt::print("init_server: listening on {}:{}{}; waiting for {} workers (start each with: {})\n",
             opts_.bind, fmt::join(ports_, ","),
             key_ ? " (workers must prove the passphrase)" : " (no passphrase)", spec_.node_count,
             client_command());
  std::fflush(stdout);
}

namespace {

// How a command given to the user names this server's passphrase: its file (absolute, so the
// command works from any directory), or the environment variable it came from.
std::string passphrase_flag(const std::string& file) {
  if (file == "-") return " --passphrase_file - (the passphrase on standard input)";
  if (!file.empty()) return " --passphrase_file " + std::filesystem::absolute(file).string();
  return fmt::format(" (with ${} set to the same passphrase)", net::kPassphraseEnv);
}

}  // namespace

std::string Server::client_command() const {
  return fmt::format("client --ip <this host> --port {}{}", ports_.empty() ? 0 : ports_.front(),
                     key_ ? passphrase_flag(opts_.passphrase_file) : "");
}

std::string Server::resume_command() const {
  std::string cmd = fmt::format("init_server --resume {}", run_ ? run_->path() : spec_.output);
  if (!ports_.empty()) cmd += fmt::format(" --working_ports {}", fmt::join(ports_, " "));
  if (!opts_.bind.empty()) cmd += " --bind " + opts_.bind;
  if (key_) cmd += passphrase_flag(opts_.passphrase_file);
  return cmd;
}

// The job id a run directory's config.json records (a new one for a run written before ids).
std::string Server::job_id_of(const std::string& dir) {
  std::ifstream in(dir + "/config.json");
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (!config.is_discarded() && config.is_object() && config.contains("provenance") &&
      config["provenance"].is_object() && config["provenance"].value("job_id", "").size() == 32) {
    return config["provenance"]["job_id"].get<std::string>();
  }
  return net::random_id();
}

nlohmann::json Server::config_json() const {
  nlohmann::json workers = nlohmann::json::array();
  for (int w = 0; w < workers_.size(); ++w) {
    const auto& s = workers_[w];
    workers.push_back({{"host", s.host()},
                       {"pid", s.hello.pid},
                       {"psgd_revision", s.hello.version},
                       {"slowdown", s.hello.slowdown}});
  }
  nlohmann::json config = plan_->config_json(opts_.command_line, run_->path(),
                                             model_->num_parameters(), workers, opts_.notes);
  config["provenance"]["job_id"] = id_.job_id;
  if (!opts_.network.is_null()) config["network"] = opts_.network;
  if (!opts_.cluster_json.is_null()) config["cluster"] = opts_.cluster_json;
  return config;
}

int run_server(const ServerOptions& options) {
  return exit_code_of("init_server", [&] {
    Server server(options);
    return server.run();
  });
}

}  // namespace psgd
