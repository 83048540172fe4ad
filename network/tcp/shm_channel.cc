#include "network/tcp/shm_channel.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "core/error.h"
#include "network/shm_pages.h"

namespace psgd::net {
namespace {

constexpr std::uint64_t kMagic = 0x314D485344475350;  // "PSGDSHM1" read as little-endian
constexpr std::uint32_t kVersion = 1;
using shm::kLine;
using shm::kPage;
using shm::round_up;
constexpr std::uint32_t kFree = 0;
constexpr std::uint32_t kFull = 1;
constexpr std::uint32_t kTaken = 2;

struct Header {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t slots;
  std::uint64_t slot_bytes;
};

std::size_t states_offset() {
  return kLine;
}
std::size_t data_offset(std::uint32_t slots) {
  return round_up(states_offset() + 2 * std::size_t{slots} * kLine, kPage);
}
std::size_t segment_bytes(std::size_t slot_bytes, std::uint32_t slots) {
  return data_offset(slots) + 2 * std::size_t{slots} * slot_bytes;
}

std::string random_name() {
  std::random_device rd;
  const std::uint64_t r = (std::uint64_t{rd()} << 32) ^ rd();
  return fmt::format("/psgd-{}-{:016x}", ::getpid(), r);
}

std::string errno_text(int e) {
  return std::strerror(e);
}

}  // namespace

ShmChannel::ShmChannel(std::string name, bool creator, void* base, std::size_t mapped,
                       std::size_t slot_bytes, std::uint32_t slots)
    : name_(std::move(name)),
      creator_(creator),
      base_(static_cast<std::uint8_t*>(base)),
      mapped_(mapped),
      slot_bytes_(slot_bytes),
      slots_(slots),
      send_dir_(creator ? 0 : 1) {}

ShmChannel::~ShmChannel() {
  if (creator_) unlink();
  ::munmap(base_, mapped_);
}

std::shared_ptr<ShmChannel> ShmChannel::create(std::size_t slot_bytes, std::uint32_t slots) {
  if (slots == 0 || slots > kMaxSlots || slot_bytes == 0) {
    throw IoError(
        fmt::format("shared memory: {} slots of {} bytes is not a channel", slots, slot_bytes));
  }
  slot_bytes = round_up(slot_bytes, kPage);
  const std::size_t bytes = segment_bytes(slot_bytes, slots);
  const std::string name = random_name();
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    throw IoError(fmt::format("shared memory: cannot create {}: {}", name, errno_text(errno)));
  }
  // Reserve the pages now: a tmpfs that runs full while a slot is written would raise SIGBUS.
  if (const int e = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)); e != 0) {
    ::close(fd);
    ::shm_unlink(name.c_str());
    throw IoError(fmt::format("shared memory: cannot reserve {:.1f} MiB in /dev/shm: {}",
                              static_cast<double>(bytes) / (1 << 20), errno_text(e)));
  }
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (base == MAP_FAILED) {
    ::shm_unlink(name.c_str());
    throw IoError(fmt::format("shared memory: cannot map {}: {}", name, errno_text(map_errno)));
  }
  auto* h = static_cast<Header*>(base);
  h->version = kVersion;
  h->slots = slots;
  h->slot_bytes = slot_bytes;
  h->magic = kMagic;
  return std::shared_ptr<ShmChannel>(new ShmChannel(name, true, base, bytes, slot_bytes, slots));
}

std::shared_ptr<ShmChannel> ShmChannel::open(const std::string& name, std::size_t slot_bytes,
                                             std::uint32_t slots) {
  if (name.size() < 2 || name.size() > 64 || name[0] != '/' ||
      name.find('/', 1) != std::string::npos) {
    throw IoError("shared memory: the offered name is not a segment name");
  }
  if (slots == 0 || slots > kMaxSlots || slot_bytes == 0 || slot_bytes % kPage != 0 ||
      slot_bytes > (std::size_t{1} << 34)) {
    throw IoError(fmt::format("shared memory: an offer of {} slots of {} bytes is not valid", slots,
                              slot_bytes));
  }
  const int fd = ::shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) {
    throw IoError(fmt::format("shared memory: cannot open {}: {}", name, errno_text(errno)));
  }
  const std::size_t bytes = segment_bytes(slot_bytes, slots);
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) != bytes) {
    ::close(fd);
    throw IoError(fmt::format("shared memory: {} does not have the offered size", name));
  }
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (base == MAP_FAILED) {
    throw IoError(fmt::format("shared memory: cannot map {}: {}", name, errno_text(map_errno)));
  }
  const auto* h = static_cast<const Header*>(base);
  if (h->magic != kMagic || h->version != kVersion || h->slots != slots ||
      h->slot_bytes != slot_bytes) {
    ::munmap(base, bytes);
    throw IoError(fmt::format("shared memory: {} is not the offered psgd segment", name));
  }
  return std::shared_ptr<ShmChannel>(new ShmChannel(name, false, base, bytes, slot_bytes, slots));
}

void ShmChannel::unlink() {
  if (unlinked_) return;
  unlinked_ = true;
  ::shm_unlink(name_.c_str());  // ENOENT: the other end was first
}

std::atomic<std::uint32_t>& ShmChannel::state(int direction, std::uint32_t slot) const {
  static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
  auto* at = base_ + states_offset() + (std::size_t(direction) * slots_ + slot) * kLine;
  return *reinterpret_cast<std::atomic<std::uint32_t>*>(at);
}

std::uint8_t* ShmChannel::data(int direction, std::uint32_t slot) const {
  return base_ + data_offset(slots_) + (std::size_t(direction) * slots_ + slot) * slot_bytes_;
}

std::optional<std::uint32_t> ShmChannel::put(std::span<const std::span<const std::uint8_t>> parts) {
  std::size_t total = 0;
  for (const auto& p : parts)
    total += p.size();
  if (total > slot_bytes_) return std::nullopt;
  for (std::uint32_t i = 0; i < slots_; ++i) {
    const std::uint32_t slot = (next_ + i) % slots_;
    auto& s = state(send_dir_, slot);
    if (s.load(std::memory_order_acquire) != kFree) continue;
    std::uint8_t* out = data(send_dir_, slot);
    for (const auto& p : parts) {
      if (!p.empty()) std::memcpy(out, p.data(), p.size());
      out += p.size();
    }
    s.store(kFull, std::memory_order_release);
    next_ = (slot + 1) % slots_;
    return slot;
  }
  return std::nullopt;
}

std::pair<std::span<const std::uint8_t>, std::shared_ptr<const void>> ShmChannel::take(
    std::uint32_t slot, std::size_t bytes) {
  const int dir = 1 - send_dir_;
  if (slot >= slots_) {
    throw ProtocolError(
        fmt::format("shared-memory slot {} does not exist (the link has {})", slot, slots_));
  }
  if (bytes > slot_bytes_) {
    throw ProtocolError(fmt::format("a shared-memory frame of {} bytes exceeds the slot size {}",
                                    bytes, slot_bytes_));
  }
  std::uint32_t expected = kFull;
  if (!state(dir, slot).compare_exchange_strong(expected, kTaken, std::memory_order_acq_rel)) {
    throw ProtocolError(fmt::format("shared-memory slot {} was announced but not filled", slot));
  }
  // The owner frees the slot; it keeps the mapping alive as long as anything views it.
  std::shared_ptr<const void> owner(
      data(dir, slot), [self = shared_from_this(), slot, dir](const void*) {
        self->state(dir, slot).store(kFree, std::memory_order_release);
      });
  return {std::span<const std::uint8_t>(data(dir, slot), bytes), owner};
}

std::uint32_t ShmChannel::slots_in_use() const {
  std::uint32_t n = 0;
  for (std::uint32_t i = 0; i < slots_; ++i)
    n += state(send_dir_, i).load(std::memory_order_acquire) != kFree;
  return n;
}

}  // namespace psgd::net
