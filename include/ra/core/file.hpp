// ra/core/file.hpp — reading and writing files so that no failure goes unnoticed.
//
// Every system call is checked — open, each write (partial writes and EINTR are retried),
// fsync, close, rename — and a failure throws ra::error naming the caller, the path and the
// system's reason ("checkpoint: cannot write 'run/ckpt.bin.tmp': No space left on device").
//
// write_file_atomic() never leaves a half-written file under the final name: it writes
// path.tmp, syncs it to disk, renames it over path and syncs the folder, so after a crash or
// a kill at any moment `path` holds either the old or the new contents, whole. On failure it
// removes path.tmp before throwing. It can keep the file it replaces as `previous` (a hard
// link, so `path` never goes missing in between).
// OutputFile is for logs written piece by piece (metrics.tsv): each write goes straight to
// the system (no user-space buffer whose failure would surface later), sync() and close()
// are checked too. Files are opened with mode 0666 less the umask. POSIX only.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ra/core/error.hpp>

namespace ra {

namespace detail {

inline std::string system_reason(int err) {
  return std::strerror(err);
}

// "<where>: <what>: <the system's reason>", e.g. "checkpoint: cannot write 'a.tmp': ...".
[[noreturn]] inline void throw_io(std::string_view where, const std::string& what, int err) {
  throw error(concat(where, ": ", what, ": ", system_reason(err)));
}

inline std::string quoted(const std::string& path) {
  return "'" + path + "'";
}

inline std::string parent_folder(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace detail

/// A file opened for writing whose every operation is checked (see the top of this header).
/// Destroying an OutputFile that is still open closes it without checking (the error path:
/// the first failure has been thrown already); call close() to learn whether it succeeded.
class OutputFile {
 public:
  enum class Mode { truncate, append };

  OutputFile() = default;
  /// Opens (creating) `path` for writing, emptied (truncate) or positioned at its end
  /// (append). `where` prefixes error messages. Throws ra::error with the system's reason.
  OutputFile(std::string path, Mode mode, std::string where)
      : path_(std::move(path)), where_(std::move(where)) {
    const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (mode == Mode::append ? O_APPEND : O_TRUNC);
    do {
      fd_ = ::open(path_.c_str(), flags, 0666);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) {
      const int err = errno;
      detail::throw_io(where_, "cannot open " + detail::quoted(path_) + " for writing", err);
    }
  }
  OutputFile(OutputFile&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)), where_(std::move(o.where_)) {}
  OutputFile& operator=(OutputFile&& o) noexcept {
    if (this != &o) {
      abandon();
      fd_ = std::exchange(o.fd_, -1);
      path_ = std::move(o.path_);
      where_ = std::move(o.where_);
    }
    return *this;
  }
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  ~OutputFile() { abandon(); }

  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

  /// Writes all of `bytes`. Throws ra::error (e.g. "No space left on device") otherwise.
  void write(std::string_view bytes) {
    require(is_open(), where_, ": writing '", path_, "' after it was closed");
    while (!bytes.empty()) {
      const ::ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      const int err = errno;
      if (n < 0 && err == EINTR) continue;
      if (n < 0) detail::throw_io(where_, "cannot write " + detail::quoted(path_), err);
      // A write of 0 bytes to a regular file means no room (POSIX leaves errno unset).
      if (n == 0) detail::throw_io(where_, "cannot write " + detail::quoted(path_), ENOSPC);
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  /// Forces what was written to the disk (fsync). Throws ra::error on failure.
  void sync() {
    require(is_open(), where_, ": syncing '", path_, "' after it was closed");
    int rc, err;
    do {
      rc = ::fsync(fd_);
      err = errno;
    } while (rc != 0 && err == EINTR);
    // EINVAL: a special file (a pipe, /dev/null) that cannot be synced; nothing to force.
    if (rc != 0 && err != EINVAL)
      detail::throw_io(where_, "cannot sync " + detail::quoted(path_) + " to disk", err);
  }

  /// Closes the file. Throws ra::error when the close reports a failure (a deferred write
  /// error on some file systems).
  void close() {
    if (!is_open()) return;
    const int fd = std::exchange(fd_, -1);
    // No retry on EINTR: on Linux the descriptor is released even then.
    if (::close(fd) != 0) {
      const int err = errno;
      if (err != EINTR) detail::throw_io(where_, "cannot close " + detail::quoted(path_), err);
    }
  }

 private:
  void abandon() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

  int fd_ = -1;
  std::string path_, where_;
};

/// Forces the entries of folder `dir` (a rename in it) to the disk. Throws ra::error on
/// failure; file systems that cannot sync a folder (EINVAL) are accepted.
inline void sync_folder(const std::string& dir, std::string_view where) {
  int fd;
  do {
    fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    detail::throw_io(where, "cannot open folder " + detail::quoted(dir), err);
  }
  int rc, err;
  do {
    rc = ::fsync(fd);
    err = errno;
  } while (rc != 0 && err == EINTR);
  ::close(fd);
  if (rc != 0 && err != EINVAL)
    detail::throw_io(where, "cannot sync folder " + detail::quoted(dir), err);
}

/// Replaces `path` with `bytes` atomically (see the top of this header): after a crash or a
/// kill, `path` holds the old contents or the new ones, never a mixture. With `previous` not
/// empty, the file being replaced (if any) is kept as `previous`. Throws ra::error naming the
/// path and the system's reason; the temporary path.tmp is removed then, and `path` is
/// unchanged unless the failure came after the rename (syncing the folder).
inline void write_file_atomic(const std::string& path, std::string_view bytes,
                              std::string_view where, const std::string& previous = {}) {
  const std::string tmp = path + ".tmp";
  OutputFile f(tmp, OutputFile::Mode::truncate, std::string(where));
  try {
    f.write(bytes);
    f.sync();
    f.close();
    if (!previous.empty() && ::access(path.c_str(), F_OK) == 0) {
      // A hard link, then a rename over `previous`: `path` exists at every instant. File
      // systems without hard links fall back to renaming `path` itself (a kill right then
      // leaves only `previous`, which readers of `path` can fall back to).
      const std::string link_tmp = previous + ".tmp";
      ::unlink(link_tmp.c_str());
      if (::link(path.c_str(), link_tmp.c_str()) == 0) {
        if (::rename(link_tmp.c_str(), previous.c_str()) != 0) {
          const int err = errno;
          ::unlink(link_tmp.c_str());
          detail::throw_io(
              where,
              "cannot rename " + detail::quoted(link_tmp) + " to " + detail::quoted(previous), err);
        }
      } else if (::rename(path.c_str(), previous.c_str()) != 0) {
        const int err = errno;
        detail::throw_io(
            where, "cannot rename " + detail::quoted(path) + " to " + detail::quoted(previous),
            err);
      }
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      detail::throw_io(where,
                       "cannot rename " + detail::quoted(tmp) + " to " + detail::quoted(path), err);
    }
  } catch (const error& e) {
    f = OutputFile();
    ::unlink(tmp.c_str());  // the partial file; nothing to report if it is already gone
    throw error(
        detail::concat(e.what(), " (removed the partial '", tmp, "'; '", path, "' is unchanged)"));
  }
  sync_folder(detail::parent_folder(path), where);
}

/// The whole contents of `path`. Throws ra::error naming the path and the system's reason
/// (missing, unreadable, a folder, a read error).
inline std::string read_file(const std::string& path, std::string_view where) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    detail::throw_io(where, "cannot open " + detail::quoted(path), err);
  }
  std::string bytes;
  struct ::stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) bytes.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ::ssize_t n = ::read(fd, buf, sizeof buf);
    const int err = errno;
    if (n < 0 && err == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      detail::throw_io(where, "cannot read " + detail::quoted(path), err);
    }
    if (n == 0) break;
    bytes.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return bytes;
}

/// Flushes stdout and throws ra::error, prefixed by `where`, when that or any earlier write to
/// it failed (a program's log redirected to a full disk is output lost too).
inline void flush_stdout(std::string_view where) {
  if (std::fflush(stdout) != 0) {
    const int err = errno;
    detail::throw_io(where, "cannot write the log to stdout", err);
  }
  // An earlier write failed inside printf; its errno is long gone.
  require(!std::ferror(stdout), where,
          ": cannot write the log to stdout: an earlier write to it failed");
}

}  // namespace ra
