// Where memory lives, through the CUDA runtime when the library has it.
#pragma once

namespace gdn {

struct Location {
  bool on_device = false;
  int ordinal = -1;
};

// Host memory (or any pointer without CUDA) reports on_device = false.
Location locate(const void* ptr);

}  // namespace gdn
