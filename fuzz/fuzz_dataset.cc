// libFuzzer: every dataset parser a researcher's file goes through (nn/idx.h, nn/cifar.h,
// nn/csv.h, nn/npy.h: IDX images and labels, gzip or raw; CIFAR-10 binary records; CSV, one
// file or features and labels apart; .npy images and .npz archives, stored or deflated). The first
// input byte picks the parser, the rest is split into the file(s) it reads, written to memory files
// (memfd) and read through their /proc/self/fd path as a path from the command line would be.
// A file that is not what it claims must be a ConfigError naming it, never a crash, a read past
// its end or an allocation the file's size does not justify (-malloc_limit_mb); a Dataset that
// comes back is consistent (one label per sample, every label below num_classes).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "core/error.h"
#include "fuzz/input_reader.h"
#include "nn/cifar.h"
#include "nn/csv.h"
#include "nn/dataset.h"
#include "nn/idx.h"
#include "nn/npy.h"

namespace {

// A file in memory holding `bytes`, closed when this goes.
class MemoryFile {
 public:
  explicit MemoryFile(std::span<const std::uint8_t> bytes) : fd_(::memfd_create("fuzz", 0)) {
    if (fd_ < 0) std::abort();
    std::size_t done = 0;
    while (done < bytes.size()) {
      const auto n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n <= 0) std::abort();
      done += static_cast<std::size_t>(n);
    }
  }
  ~MemoryFile() { ::close(fd_); }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

void check(const psgd::nn::Dataset& d) {
  if (d.images.size() != d.size() * static_cast<std::size_t>(d.sample_numel())) std::abort();
  for (const auto label : d.labels)
    if (label < 0 || label >= d.num_classes) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  psgd::fuzz::InputReader in(data + 1, size - 1);
  try {
    switch (data[0] % 7) {
      case 0: {  // IDX: images, then labels
        const MemoryFile images(in.piece()), labels(in.rest());
        check(psgd::nn::read_idx(images.path(), labels.path()));
        break;
      }
      case 1: {  // IDX with a limit
        const MemoryFile images(in.piece()), labels(in.rest());
        check(psgd::nn::read_idx(images.path(), labels.path(), 1 + in.byte() % 4));
        break;
      }
      case 2: {  // CIFAR-10: two files read in order
        const MemoryFile first(in.piece()), second(in.rest());
        check(psgd::nn::read_cifar10({first.path(), second.path()}));
        break;
      }
      case 3: {  // CSV with the label column named by the input
        static const char* const kColumns[] = {"", "none", "0", "2", "label"};
        const auto column = kColumns[in.byte() % 5];
        const MemoryFile file(in.rest());
        check(psgd::nn::read_csv(file.path(), {.label_column = column}));
        break;
      }
      case 4: {  // CSV features and labels apart
        const MemoryFile x(in.piece()), y(in.rest());
        check(psgd::nn::read_csv_pair(x.path(), y.path()));
        break;
      }
      case 5: {  // .npy: features and labels apart, as a dataset
        const auto x_bytes = in.piece();
        const auto x = psgd::nn::parse_npy(x_bytes, "x.npy");
        const auto y = psgd::nn::parse_npy(in.rest(), "y.npy");
        check(psgd::nn::dataset_from_arrays(x, y, "fuzz", "fuzz"));
        break;
      }
      case 6: {  // .npz
        const MemoryFile file(in.rest());
        (void)psgd::nn::read_npz(file.path());
        break;
      }
    }
  } catch (const psgd::Error&) {
  }
  return 0;
}
