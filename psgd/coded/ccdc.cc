// Over 400 lines: the ccdc server and worker (psgd/coded/ccdc.h) share the coding layout, the
// coded-message checks and the decode, which read best in one place.
#include "psgd/coded/ccdc.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "codecs/payload_io.h"
#include "core/error.h"
#include "network/frame.h"
#include "psgd/allreduce.h"
#include "psgd/common.h"

namespace psgd {
namespace {

constexpr std::uint64_t kMaxGroups = 100000;

// Every k-subset of 0..n-1 in lexicographic order.
std::vector<std::vector<int>> subsets(int n, int k) {
  std::vector<std::vector<int>> all;
  if (k < 1 || k > n) return all;
  std::vector<int> s(static_cast<std::size_t>(k));
  std::iota(s.begin(), s.end(), 0);
  while (true) {
    all.push_back(s);
    int i = k - 1;
    while (i >= 0 && s[static_cast<std::size_t>(i)] == n - k + i)
      --i;
    if (i < 0) break;
    ++s[static_cast<std::size_t>(i)];
    for (int j = i + 1; j < k; ++j)
      s[static_cast<std::size_t>(j)] = s[static_cast<std::size_t>(j - 1)] + 1;
  }
  return all;
}

int position(const std::vector<int>& sorted, int x) {
  const auto it = std::lower_bound(sorted.begin(), sorted.end(), x);
  return it != sorted.end() && *it == x ? static_cast<int>(it - sorted.begin()) : -1;
}

// Part `index` of `parts` of [begin, end).
CcdcLayout::Range split(std::size_t begin, std::size_t end, std::size_t parts, std::size_t index) {
  const std::size_t len = end - begin;
  return {begin + len * index / parts, begin + len * (index + 1) / parts};
}

}  // namespace

std::uint64_t binomial_capped(int n, int k, std::uint64_t cap) {
  if (k < 0 || k > n) return 0;
  k = std::min(k, n - k);
  std::uint64_t c = 1;
  for (int i = 1; i <= k; ++i) {
    // c * (n - k + i) / i stays exact: c is C(n - k + i - 1, i - 1).
    c = c * static_cast<std::uint64_t>(n - k + i) / static_cast<std::uint64_t>(i);
    if (c > cap) return cap + 1;
  }
  return c;
}

void check_ccdc_layout(int node_count, int redundancy) {
  if (redundancy < 1 || redundancy >= node_count) {
    throw ConfigError(fmt::format(
        "--codec ccdc with --redundancy {} and --node_count {}: coded multicast needs "
        "1 <= redundancy < node_count (with r = node_count every worker holds every block)",
        redundancy, node_count));
  }
  if (binomial_capped(node_count, redundancy + 1, kMaxGroups) > kMaxGroups) {
    throw ConfigError(
        fmt::format("--codec ccdc with --redundancy {} and --node_count {}: C({}, {}) > {} coded "
                    "multicast groups per iteration; use a redundancy closer to 1 or to node_count",
                    redundancy, node_count, node_count, redundancy + 1, kMaxGroups));
  }
}

CcdcLayout::CcdcLayout(int node_count, int redundancy, std::size_t length, bool reduce_scatter)
    : n_(node_count), r_(redundancy), d_(length), reduce_scatter_(reduce_scatter) {
  check_ccdc_layout(n_, r_);
  blocks_ = subsets(n_, r_);
  groups_ = subsets(n_, r_ + 1);
  blocks_of_.resize(static_cast<std::size_t>(n_));
  groups_of_.resize(static_cast<std::size_t>(n_));
  for (std::size_t b = 0; b < blocks_.size(); ++b) {
    block_index_[blocks_[b]] = static_cast<int>(b);
    for (int w : blocks_[b])
      blocks_of_[static_cast<std::size_t>(w)].push_back(static_cast<int>(b));
  }
  for (std::size_t g = 0; g < groups_.size(); ++g)
    for (int w : groups_[g])
      groups_of_[static_cast<std::size_t>(w)].push_back(static_cast<int>(g));
}

const std::vector<int>& CcdcLayout::blocks_of(int worker) const {
  return blocks_of_.at(static_cast<std::size_t>(worker));
}
const std::vector<int>& CcdcLayout::groups_of(int worker) const {
  return groups_of_.at(static_cast<std::size_t>(worker));
}

int CcdcLayout::block_without(int g, int worker) const {
  std::vector<int> b;
  for (int w : group(g))
    if (w != worker) b.push_back(w);
  return block_index_.at(b);
}

bool CcdcLayout::holds(int worker, int b) const {
  return position(block(b), worker) >= 0;
}

CcdcLayout::Range CcdcLayout::target(int receiver) const {
  if (!reduce_scatter_) return {0, d_};
  return split(0, d_, static_cast<std::size_t>(n_), static_cast<std::size_t>(receiver));
}

CcdcLayout::Range CcdcLayout::piece(int b, int sender, int receiver) const {
  const Range t = target(receiver);
  return split(t.begin, t.end, static_cast<std::size_t>(r_),
               static_cast<std::size_t>(position(block(b), sender)));
}

std::size_t CcdcLayout::coded_length(int g, int sender) const {
  std::size_t len = 0;
  for (int k : group(g))
    if (k != sender) len = std::max(len, piece(block_without(g, k), sender, k).size());
  return len;
}

CcdcWorker::CcdcWorker(WorkerContext context, Schedule schedule, const OptimizerSpec& optimizer,
                       CcdcOptions options)
    : ctx_(context),
      schedule_(schedule),
      optimiser_(
          make_optimizer(optimizer, context.learner ? context.learner->parameters().size() : 0)),
      options_(options),
      layout_(schedule.node_count, options.redundancy,
              context.learner ? context.learner->parameters().size() : 0, options.reduce_scatter) {
  PSGD_CHECK(ctx_.learner != nullptr && ctx_.clock != nullptr,
             "ccdc worker needs a learner and a clock");
  PSGD_CHECK(ctx_.id >= 0 && ctx_.id < schedule.node_count, "ccdc worker id {}", ctx_.id);
  const std::size_t d = layout_.length();
  local_.assign(static_cast<std::size_t>(layout_.blocks()), -1);
  missing_.assign(static_cast<std::size_t>(layout_.blocks()), -1);
  for (int b : layout_.blocks_of(ctx_.id)) {
    local_[static_cast<std::size_t>(b)] = static_cast<int>(grads_.size());
    grads_.emplace_back(d, 0.0f);
  }
  const std::size_t t = layout_.target(ctx_.id).size();
  for (int b = 0; b < layout_.blocks(); ++b) {
    if (local_[static_cast<std::size_t>(b)] >= 0) continue;
    missing_[static_cast<std::size_t>(b)] = static_cast<int>(recovered_.size());
    recovered_.emplace_back(t, 0.0f);
  }
  // One coded message from each of the r other members of every group of this worker.
  pieces_needed_ = static_cast<int>(layout_.groups_of(ctx_.id).size()) * options_.redundancy;
  slice_in_.assign(static_cast<std::size_t>(schedule.node_count), false);
  sum_.assign(d, 0.0f);
}

void CcdcWorker::count_sent(const std::shared_ptr<const Message>& message, std::size_t receivers) {
  const std::size_t bytes = frame_size(*message);
  peer_bytes_ += bytes * receivers;
  multicast_bytes_ += bytes;
}

WorkerAction CcdcWorker::on_message(const Message& message, Outbox& out) {
  if (const auto* p = std::get_if<Params>(&message)) {
    if (started_ || p->iteration < 0 || p->iteration >= schedule_.total_iterations()) {
      throw ProtocolError(fmt::format("ccdc worker: the server sent parameters of iteration {} {}",
                                      p->iteration,
                                      started_ ? "a second time" : "outside the run"));
    }
    make_codec(ctx_.downlink)->decode(p->values, ctx_.learner->parameters());
    started_ = true;
    iteration_ = p->iteration;  // 0, or the checkpoint's iteration on a resumed run
    // What peers that started first sent is of this iteration or the next; anything older is not
    // of this run.
    for (auto it = early_.begin(); it != early_.end() && it->first < iteration_;)
      it = early_.erase(it);
    for (auto it = seen_.begin(); it != seen_.end() && it->first < iteration_;)
      it = seen_.erase(it);
    return {.compute = true};
  }
  if (const auto* c = std::get_if<CcdcCoded>(&message)) {
    accept_coded(*c);
    if (c->iteration == iteration_ && computed_) {
      decode(*c);
      return progress(out);
    }
    early_[c->iteration].push_back(*c);
    return {};
  }
  if (const auto* s = std::get_if<CcdcSlice>(&message)) {
    if (!options_.reduce_scatter || s->from < 0 || s->from >= schedule_.node_count ||
        s->from == ctx_.id || s->iteration != iteration_ || !started_) {
      throw ProtocolError(
          fmt::format("ccdc worker {}: a reduced slice from worker {} for iteration {} during "
                      "iteration {}",
                      ctx_.id, s->from, s->iteration, iteration_));
    }
    const auto f = static_cast<std::size_t>(s->from);
    const auto range = layout_.target(s->from);
    if (slice_in_[f] || s->values.size() != range.size()) {
      throw ProtocolError(fmt::format(
          "ccdc worker {}: worker {} sent a {}reduced slice of {} elements for iteration {} "
          "(expected {})",
          ctx_.id, s->from, slice_in_[f] ? "second " : "", s->values.size(), s->iteration,
          range.size()));
    }
    std::copy(s->values.begin(), s->values.end(),
              sum_.begin() + static_cast<std::ptrdiff_t>(range.begin));
    slice_in_[f] = true;
    ++slices_;
    return progress(out);
  }
  throw ProtocolError(
      fmt::format("ccdc worker {}: unexpected {} message", ctx_.id, type_name(type_of(message))));
}

void CcdcWorker::accept_coded(const CcdcCoded& m) {
  const int n = schedule_.node_count;
  // A peer may be a step ahead, even before this worker's Params arrive (which say where a
  // resumed run starts): such messages wait.
  const bool in_step = !started_ || (m.iteration >= iteration_ && m.iteration <= iteration_ + 1);
  if (m.from < 0 || m.from >= n || m.from == ctx_.id || !in_step || m.iteration < 0 ||
      m.iteration >= schedule_.total_iterations()) {
    throw ProtocolError(fmt::format(
        "ccdc worker {}: a coded message from worker {} for iteration {} during iteration {}",
        ctx_.id, m.from, m.iteration, iteration_));
  }
  if (m.group < 0 || m.group >= layout_.groups()) {
    throw ProtocolError(fmt::format("ccdc worker {}: worker {} sent subset id {} (there are {})",
                                    ctx_.id, m.from, m.group, layout_.groups()));
  }
  const int g = static_cast<int>(m.group);
  const auto& members = layout_.group(g);
  if (!std::binary_search(members.begin(), members.end(), m.from) ||
      !std::binary_search(members.begin(), members.end(), ctx_.id)) {
    throw ProtocolError(
        fmt::format("ccdc worker {}: worker {} sent a message for subset {} = {{{}}}, which does "
                    "not hold both of them",
                    ctx_.id, m.from, m.group, fmt::join(members, ",")));
  }
  if (m.bits.size() != layout_.coded_length(g, m.from)) {
    throw ProtocolError(
        fmt::format("ccdc worker {}: worker {} sent {} coded elements for subset {} (expected {})",
                    ctx_.id, m.from, m.bits.size(), m.group, layout_.coded_length(g, m.from)));
  }
  auto it = seen_.find(m.iteration);
  if (it != seen_.end() && it->second.count({m.group, m.from})) {
    throw ProtocolError(
        fmt::format("ccdc worker {}: worker {} sent subset {} twice for iteration {}", ctx_.id,
                    m.from, m.group, m.iteration));
  }
  seen_[m.iteration].insert({m.group, m.from});
}

void CcdcWorker::decode(const CcdcCoded& m) {
  const int g = static_cast<int>(m.group);
  scratch_.assign(m.bits.begin(), m.bits.end());
  // Cancel the pieces of the blocks this worker holds: S \ {k'} for every other receiver k'.
  for (int k : layout_.group(g)) {
    if (k == m.from || k == ctx_.id) continue;
    const int b = layout_.block_without(g, k);
    const auto p = layout_.piece(b, m.from, k);
    const float* src =
        grads_[static_cast<std::size_t>(local_[static_cast<std::size_t>(b)])].data() + p.begin;
    for (std::size_t i = 0; i < p.size(); ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, src + i, sizeof bits);
      scratch_[i] ^= bits;
    }
  }
  const int lacked = layout_.block_without(g, ctx_.id);
  const auto p = layout_.piece(lacked, m.from, ctx_.id);
  for (std::size_t i = p.size(); i < scratch_.size(); ++i) {
    if (scratch_[i] != 0) {
      throw ProtocolError(fmt::format(
          "ccdc worker {}: the coded message of worker {} for subset {} does not decode (its "
          "padding does not cancel): the workers' block gradients differ",
          ctx_.id, m.from, m.group));
    }
  }
  const auto t = layout_.target(ctx_.id);
  float* dst =
      recovered_[static_cast<std::size_t>(missing_[static_cast<std::size_t>(lacked)])].data() +
      (p.begin - t.begin);
  // A piece can be empty (a slice shorter than the subsets it is cut into): nothing to copy, and
  // memcpy must not see the null pointer of an empty vector.
  if (p.size() > 0) std::memcpy(dst, scratch_.data(), p.size() * sizeof(float));
  ++pieces_;
}

WorkerAction CcdcWorker::compute_step(Outbox& out) {
  PSGD_CHECK(started_ && !computed_, "ccdc worker asked to compute out of turn");
  Stopwatch sw(*ctx_.clock);
  loss_ = 0;
  samples_ = 0;
  const auto& mine = layout_.blocks_of(ctx_.id);
  for (std::size_t i = 0; i < mine.size(); ++i) {  // one batch of each block, in block order
    const StepStats step = ctx_.learner->compute_gradient();
    const auto g = ctx_.learner->gradients();
    PSGD_CHECK_EQ(g.size(), layout_.length(), "gradient size");
    std::copy(g.begin(), g.end(), grads_[i].begin());
    loss_ += step.loss / static_cast<double>(mine.size());
    // Each block's samples are counted once, by its first holder.
    if (layout_.block(mine[i]).front() == ctx_.id) samples_ += step.samples;
  }
  times_.compute_s = sw.seconds();
  sw.restart();
  peer_bytes_ = 0;
  multicast_bytes_ = 0;
  send_coded(out);
  times_.encode_s = sw.seconds();
  computed_ = true;
  wait_start_ = ctx_.clock->now();
  auto early = early_.find(iteration_);
  if (early != early_.end()) {
    for (const auto& m : early->second)
      decode(m);
    early_.erase(early);
  }
  return progress(out);
}

void CcdcWorker::send_coded(Outbox& out) {
  const int j = ctx_.id;
  for (int g : layout_.groups_of(j)) {
    CcdcCoded m{.from = j, .iteration = iteration_, .group = g};
    m.bits.assign(layout_.coded_length(g, j), 0u);
    for (int k : layout_.group(g)) {
      if (k == j) continue;
      const int b = layout_.block_without(g, k);
      const auto p = layout_.piece(b, j, k);
      const float* src =
          grads_[static_cast<std::size_t>(local_[static_cast<std::size_t>(b)])].data() + p.begin;
      for (std::size_t i = 0; i < p.size(); ++i) {
        std::uint32_t bits;
        std::memcpy(&bits, src + i, sizeof bits);
        m.bits[i] ^= bits;
      }
    }
    auto message = std::make_shared<const Message>(std::move(m));
    for (int k : layout_.group(g))
      if (k != j) out.push_back({k, message});
    count_sent(message, static_cast<std::size_t>(options_.redundancy));
  }
}

WorkerAction CcdcWorker::progress(Outbox& out) {
  if (!computed_) return {};
  const auto t = layout_.target(ctx_.id);
  if (!reduced_) {
    if (pieces_ < pieces_needed_) return {};
    Stopwatch sw(*ctx_.clock);
    // This worker's target of the sum of all blocks, in block order.
    for (int b = 0; b < layout_.blocks(); ++b) {
      const auto bi = static_cast<std::size_t>(b);
      const float* src = local_[bi] >= 0
                             ? grads_[static_cast<std::size_t>(local_[bi])].data() + t.begin
                             : recovered_[static_cast<std::size_t>(missing_[bi])].data();
      float* dst = sum_.data() + t.begin;
      if (b == 0) {
        std::copy(src, src + t.size(), dst);
      } else {
        for (std::size_t i = 0; i < t.size(); ++i)
          dst[i] += src[i];
      }
    }
    reduced_ = true;
    times_.decode_s = sw.seconds();
    if (options_.reduce_scatter) {
      auto message = std::make_shared<const Message>(CcdcSlice{
          .from = ctx_.id,
          .iteration = iteration_,
          .values = std::vector<float>(sum_.begin() + static_cast<std::ptrdiff_t>(t.begin),
                                       sum_.begin() + static_cast<std::ptrdiff_t>(t.end))});
      for (NodeId w = 0; w < schedule_.node_count; ++w)
        if (w != ctx_.id) out.push_back({w, message});
      count_sent(message, static_cast<std::size_t>(schedule_.node_count - 1));
    }
  }
  if (options_.reduce_scatter && slices_ < schedule_.node_count - 1) return {};

  times_.wait_s = ctx_.clock->now() - wait_start_;
  Stopwatch sw(*ctx_.clock);
  const float scale = 1.0f / static_cast<float>(layout_.blocks());
  for (float& x : sum_)
    x *= scale;
  auto params = ctx_.learner->parameters();
  optimiser_->step(params, sum_, iteration_);
  times_.apply_s = sw.seconds();
  ++iteration_;
  computed_ = reduced_ = false;
  pieces_ = slices_ = 0;
  std::fill(slice_in_.begin(), slice_in_.end(), false);
  seen_.erase(seen_.begin(), seen_.lower_bound(iteration_));
  AllreduceReport report{.iteration = iteration_,
                         .loss = loss_,
                         .samples = samples_,
                         .times = times_,
                         .peer_bytes = peer_bytes_,
                         .multicast_bytes = multicast_bytes_};
  times_ = PhaseTimes{};
  return {.compute = send_iteration_report(std::move(report), *ctx_.learner, schedule_,
                                           ctx_.id == 0, out)};
}

}  // namespace psgd
