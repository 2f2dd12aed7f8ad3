// Status and Result<T>: how fallible operations report errors without exceptions.
// Exceptions thrown by third-party libraries (cppzmq, nlohmann, SQLite wrappers, LibTorch) are caught
// at the adapter that calls them and converted into a Status naming the field or call that failed.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace kiln {

enum class StatusCode { kOk, kInvalidArgument, kNotFound, kAlreadyExists, kUnavailable, kIoError,
                        kFailedPrecondition, kInternal, kUnauthenticated, kPermissionDenied };

const char* StatusCodeName(StatusCode code);
// The code StatusCodeName gives `name`; kInternal for a name it never gives.
StatusCode StatusCodeFromName(const std::string& name);
// The HTTP status an error of this code answers with (400, 401, 403, 404, 409, 500, 503), for
// every HTTP server of kiln (the scheduler's API, kiln-serve).
int HttpStatusOf(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  // The caller could not be identified (no, or a wrong, token or key).
  static Status Unauthenticated(std::string m) {
    return {StatusCode::kUnauthenticated, std::move(m)};
  }
  // The caller is known but may not do this.
  static Status PermissionDenied(std::string m) {
    return {StatusCode::kPermissionDenied, std::move(m)};
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message", or "OK".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-OK Status. Accessing value() of an error aborts (a broken invariant).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}           // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {    // NOLINT: implicit by design
    if (status_.ok()) status_ = Status::Internal("Result constructed from OK status without value");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { Check(); return *value_; }
  const T& value() const& { Check(); return *value_; }
  T&& value() && { Check(); return std::move(*value_); }
  T* operator->() { Check(); return &*value_; }
  const T* operator->() const { Check(); return &*value_; }
  T& operator*() & { Check(); return *value_; }
  const T& operator*() const& { Check(); return *value_; }

 private:
  void Check() const;
  std::optional<T> value_;
  Status status_;
};

[[noreturn]] void AbortWithMessage(const std::string& message);

template <typename T>
void Result<T>::Check() const {
  if (!value_) AbortWithMessage("Result::value() on error: " + status_.ToString());
}

}  // namespace kiln

#define KILN_RETURN_IF_ERROR(expr)          \
  do {                                      \
    ::kiln::Status kiln_status_ = (expr);   \
    if (!kiln_status_.ok()) return kiln_status_; \
  } while (0)
