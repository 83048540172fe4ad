#include "core/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/error.h"

namespace psgd {
namespace {

[[noreturn]] void fail(const std::string& path, int error) {
  throw IoError(fmt::format("cannot write {}: {}", path, std::strerror(error)));
}

// Writes all of `bytes` to `fd`; returns 0 or the errno of the write that failed.
int write_all(int fd, const std::uint8_t* data, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return ENOSPC;  // a regular file that takes nothing is full
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

void sync_directory_of(const std::string& path) {
  const auto dir = std::filesystem::path(path).parent_path();
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // the rename happened; only its durability is at stake
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomic(const std::string& path, std::span<const std::uint8_t> bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, errno);
  int error = write_all(fd, bytes.data(), bytes.size());
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) {
    ::unlink(tmp.c_str());
    fail(path, error);
  }
  sync_directory_of(path);
}

void write_file_atomic(const std::string& path, std::string_view text) {
  write_file_atomic(path, std::span<const std::uint8_t>(
                              reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

AppendFile::AppendFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(path_, errno);
}

AppendFile::~AppendFile() {
  close();
}

AppendFile::AppendFile(AppendFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

AppendFile& AppendFile::operator=(AppendFile&& other) noexcept {
  if (this != &other) {
    close();
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

void AppendFile::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void AppendFile::append(std::string_view record) {
  if (fd_ < 0) fail(path_, EBADF);
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail(path_, errno);
  const int error =
      write_all(fd_, reinterpret_cast<const std::uint8_t*>(record.data()), record.size());
  if (error != 0) {
    // Part of the record may have gone out before the disk filled up: cut it off, so that the
    // file ends with the last whole record.
    if (S_ISREG(st.st_mode)) (void)!::ftruncate(fd_, st.st_size);
    fail(path_, error);
  }
}

void AppendFile::sync() {
  if (fd_ >= 0 && ::fsync(fd_) != 0 && errno != EINVAL) fail(path_, errno);
}

}  // namespace psgd
