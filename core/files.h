#pragma once
// Files written whole or not at all (README "The run directory"): every artefact of a run goes
// through one of these two, so a full disk, a quota or a crash never leaves a half-written file.
//
//   write_file_atomic  a whole file (config.json, summary.json, model.pt, a checkpoint, ...):
//                      written to `<path>.tmp` in the same directory, fsync'ed, renamed over
//                      `path`, the directory fsync'ed. `path` is always its previous content or
//                      the new one; on failure the temporary is removed.
//   AppendFile         a file that grows by records (CSV rows, TensorBoard frames): each record
//                      goes out in one write() and, should the write fail part way (ENOSPC), the
//                      file is cut back to its previous length, so it only ever holds whole
//                      records. Records are not fsync'ed one by one (sync() does that; the
//                      server calls it before each checkpoint): a process crash loses nothing
//                      written, a machine crash may lose the last rows.
//
// Failures throw IoError("cannot write <path>: <strerror>"), e.g. "cannot write
// runs/x/model.pt: No space left on device": the line a run's status repeats.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace psgd {

void write_file_atomic(const std::string& path, std::span<const std::uint8_t> bytes);
void write_file_atomic(const std::string& path, std::string_view text);

class AppendFile {
 public:
  AppendFile() = default;
  // Opens `path` for appending (created if missing). IoError when it cannot be opened.
  explicit AppendFile(std::string path);
  ~AppendFile();
  AppendFile(AppendFile&& other) noexcept;
  AppendFile& operator=(AppendFile&& other) noexcept;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  // Appends `record` whole, or throws IoError and leaves the file as it was.
  void append(std::string_view record);
  // Makes what was appended durable (fsync). IoError on failure.
  void sync();
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  void close();
  std::string path_;
  int fd_ = -1;
};

}  // namespace psgd
