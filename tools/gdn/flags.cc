#include "gdn/flags.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace gdn::cli {

Flags::Flags(int argc, char** argv, std::set<std::string> valued, std::set<std::string> switches) {
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      error_ = "unexpected argument '" + arg + "'";
      return;
    }
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (switches.count(name)) {
      if (inline_value) {
        error_ = "--" + name + " takes no value";
        return;
      }
      values_[name] = "1";
    } else if (valued.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argc) {
          error_ = "--" + name + " needs a value";
          return;
        }
        value = argv[++i];
      }
      values_[name] = value;
    } else {
      error_ = "unknown flag '--" + name + "' (see --help)";
      return;
    }
  }
}

std::string Flags::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

bool Flags::get_int(const std::string& name, int64_t fallback, int64_t* out, std::string* error) const {
  if (!has(name)) {
    *out = fallback;
    return true;
  }
  const std::string s = get(name);
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || v < 0) {
    *error = "--" + name + ": expected a non-negative integer, got '" + s + "'";
    return false;
  }
  *out = v;
  return true;
}

bool Flags::parse_int_list(const std::string& s, std::vector<int64_t>* out, bool allow_zero) {
  out->clear();
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || v < 0 || (v == 0 && !allow_zero)) return false;
    out->push_back(v);
  }
  return !out->empty();
}

}  // namespace gdn::cli
