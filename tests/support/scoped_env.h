// An environment variable set (or unset) for a scope, the value found
// before it restored after it.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace gdn::testing {

// The backends read their variables (GDN_CUDA_SEGMENTS, GDN_SM90_FUSED,
// GDN_PREFILL_BACKEND, ...) on every call.
class ScopedEnv {
 public:
  // value nullptr: unset for the scope. The previous value comes back after
  // it, so a setting the whole run was started with (e.g. GDN_SM90_FUSED=1
  // for every test) holds for the tests after this one.
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name); old != nullptr) old_ = old;
    if (value != nullptr)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace gdn::testing
