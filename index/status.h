// Status and Result<T>: errors as values.
//
// Every fallible function in imgfs returns a Status or a Result<T>. The code set is
// closed (see Code); a message carries the context each layer adds on the way up
// ("load busybox.tar: layer sha256:ab12…: digest mismatch"). Nothing in imgfs throws
// across a C callback; errno values appear only where a syscall failed (kIo) and are
// mapped back to errno at the FUSE boundary.
//
// Thread-safety: values; no shared state.
#ifndef IMGFS_INDEX_STATUS_H_
#define IMGFS_INDEX_STATUS_H_

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace imgfs {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,
    kInvalidArgument,
    kCorruption,
    kIo,
    kUnsupported,
    kUnavailable,
    kExhausted,
    kAlreadyExists,
    // The operation would wait, and its thread may not (MountFs::NoWait): run it again
    // where waiting is fine. Never shown to a user.
    kWouldBlock,
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status InvalidArgument(std::string m) {
    return Status(Code::kInvalidArgument, std::move(m));
  }
  static Status Corruption(std::string m) { return Status(Code::kCorruption, std::move(m)); }
  static Status Unsupported(std::string m) { return Status(Code::kUnsupported, std::move(m)); }
  static Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
  static Status Exhausted(std::string m) { return Status(Code::kExhausted, std::move(m)); }
  static Status AlreadyExists(std::string m) { return Status(Code::kAlreadyExists, std::move(m)); }
  static Status WouldBlock(std::string m) { return Status(Code::kWouldBlock, std::move(m)); }
  // An I/O error from a syscall: `what` names the operation and object, `err` is errno.
  static Status Io(const std::string& what, int err) {
    Status s(Code::kIo, what + ": " + std::strerror(err));
    s.errno_ = err;
    return s;
  }
  static Status FromErrno(const std::string& what) { return Io(what, errno); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  const std::string& message() const { return message_; }
  int sys_errno() const { return errno_; }

  // Returns a copy whose message is "context: message".
  // An empty context adds nothing (no "pull: : GET …").
  Status WithContext(const std::string& context) const {
    if (ok() || context.empty()) return *this;
    Status s = *this;
    s.message_ = context + ": " + message_;
    return s;
  }

  // The errno a FUSE reply should carry for this status.
  int ToErrno() const {
    switch (code_) {
      case Code::kOk:
        return 0;
      case Code::kNotFound:
        return ENOENT;
      case Code::kInvalidArgument:
        return EINVAL;
      case Code::kCorruption:
        return EIO;
      case Code::kIo:
        return errno_ ? errno_ : EIO;
      case Code::kUnsupported:
        return ENOTSUP;
      case Code::kUnavailable:
        return EAGAIN;
      case Code::kExhausted:
        return ENOSPC;
      case Code::kAlreadyExists:
        return EEXIST;
      case Code::kWouldBlock:
        return EAGAIN;
    }
    return EIO;
  }

  std::string ToString() const { return ok() ? "OK" : message_; }

 private:
  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}
  Code code_ = Code::kOk;
  int errno_ = 0;
  std::string message_;
};

// A value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must not be OK

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace imgfs

// Returns early from the enclosing function when `expr` (a Status) is not OK.
#define IMGFS_RETURN_IF_ERROR(expr) \
  do {                              \
    ::imgfs::Status _st = (expr);   \
    if (!_st.ok()) return _st;      \
  } while (0)

#define IMGFS_CONCAT_INNER(a, b) a##b
#define IMGFS_CONCAT(a, b) IMGFS_CONCAT_INNER(a, b)
// `IMGFS_ASSIGN_OR_RETURN(auto x, Fallible())` declares x or returns the error.
#define IMGFS_ASSIGN_OR_RETURN(lhs, rexpr)                                                \
  auto IMGFS_CONCAT(_res_, __LINE__) = (rexpr);                                           \
  if (!IMGFS_CONCAT(_res_, __LINE__).ok()) return IMGFS_CONCAT(_res_, __LINE__).status(); \
  lhs = std::move(IMGFS_CONCAT(_res_, __LINE__)).value()

#endif  // IMGFS_INDEX_STATUS_H_
