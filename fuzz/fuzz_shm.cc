// libFuzzer: the shared-memory side channel (network/tcp/shm_channel.h) as a Connection uses it,
// with a peer that announces what it likes. Two ends of one segment live in this process; the
// input is a sequence of operations: either end puts a body into a slot, the other end takes an
// announced slot (any number, any size, as a ShmFrame notice would say) and decodes the body as
// the announced message type, views are held and released in any order, and a third mapping of the
// segment (the hostile peer's own) writes arbitrary bytes anywhere in it, state words included.
// Whatever happens, a bad announcement is a ProtocolError, a slot is never handed out twice while
// viewed, and nothing reads outside the mapping.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <vector>

#include "core/error.h"
#include "fuzz/input_reader.h"
#include "fuzz/message_types.h"
#include "network/messages.h"
#include "network/tcp/shm_channel.h"

namespace {

using psgd::net::ShmChannel;

// The hostile peer's view of the whole segment.
struct Mapping {
  std::uint8_t* base = nullptr;
  std::size_t size = 0;
  explicit Mapping(const std::string& name) {
    const int fd = ::shm_open(name.c_str(), O_RDWR, 0);
    if (fd < 0) return;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE,
                       MAP_SHARED, fd, 0);
      if (p != MAP_FAILED) {
        base = static_cast<std::uint8_t*>(p);
        size = static_cast<std::size_t>(st.st_size);
      }
    }
    ::close(fd);
  }
  ~Mapping() {
    if (base) ::munmap(base, size);
  }
};

void take_and_decode(ShmChannel& receiver, psgd::fuzz::InputReader& in,
                     std::vector<std::shared_ptr<const void>>& held) {
  constexpr const auto& kTypes = psgd::fuzz::kMessageTypes;
  const std::uint32_t slot = in.byte() % 6;  // 3 slots: half of the numbers do not exist
  const std::size_t bytes = in.u32() % (2 * receiver.slot_bytes());
  const auto type = kTypes[in.byte() % kTypes.size()];
  const bool hold = in.byte() & 1;
  try {
    auto [view, owner] = receiver.take(slot, bytes);
    if (view.size() != bytes) std::abort();
    if (!psgd::is_link(type)) {
      try {
        psgd::Message m = psgd::decode_body(type, view, owner);
        (void)m;
      } catch (const psgd::ProtocolError&) {
      }
    }
    if (hold) held.push_back(std::move(owner));
  } catch (const psgd::ProtocolError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::shared_ptr<ShmChannel> a, b;
  try {
    a = ShmChannel::create(4096, 3);
    b = ShmChannel::open(a->name(), a->slot_bytes(), a->slots());
  } catch (const psgd::IoError&) {
    return 0;  // no /dev/shm here: nothing to fuzz
  }
  Mapping hostile(a->name());
  a->unlink();
  std::vector<std::shared_ptr<const void>> held;
  psgd::fuzz::InputReader in(data, size);
  for (int op = 0; op < 64 && !in.done(); ++op) {
    switch (in.byte() % 6) {
      case 0: {
        const auto body = in.piece();
        const std::span<const std::uint8_t> parts[] = {body};
        if (body.size() <= a->slot_bytes()) (void)a->put(parts);
        break;
      }
      case 1: {
        const auto body = in.piece();
        const std::span<const std::uint8_t> parts[] = {body};
        if (body.size() <= b->slot_bytes()) (void)b->put(parts);
        break;
      }
      case 2:
        take_and_decode(*b, in, held);
        break;
      case 3:
        take_and_decode(*a, in, held);
        break;
      case 4:
        if (!held.empty()) held.erase(held.begin() + in.byte() % held.size());
        break;
      case 5:
        if (hostile.base) {
          const std::size_t at = in.u32() % hostile.size;
          const auto bytes = in.piece();
          for (std::size_t i = 0; i < bytes.size() && at + i < hostile.size; ++i)
            hostile.base[at + i] = bytes[i];
        }
        break;
    }
  }
  held.clear();
  return 0;
}
