// A small parser for "--name value", "--name=value" and "--switch" flags.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace gdn::cli {

class Flags {
 public:
  // `valued`: flags that take a value; `switches`: flags that do not.
  Flags(int argc, char** argv, std::set<std::string> valued, std::set<std::string> switches);
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  bool help() const { return help_; }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const;
  // Parses a non-negative integer flag; sets `error` and returns false on junk.
  bool get_int(const std::string& name, int64_t fallback, int64_t* out, std::string* error) const;
  // Parses "1,2,3" into positive integers (or >= 0 with allow_zero).
  static bool parse_int_list(const std::string& s, std::vector<int64_t>* out, bool allow_zero);

 private:
  std::map<std::string, std::string> values_;
  std::string error_;
  bool help_ = false;
};

}  // namespace gdn::cli
