// Reading and writing Hugging Face safetensors files: an 8-byte little-endian
// header length N, N bytes of JSON header
//   {"name": {"dtype": "BF16", "shape": [...], "data_offsets": [begin, end]},
//    "__metadata__": {"key": "value"}}
// and the data buffer the offsets index into. Every error is a message naming
// the file (and the tensor); nothing throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gdn/gdn.h"

namespace gdn::cli {

// Largest header the reader accepts (the limit of the reference implementation).
constexpr uint64_t kMaxSafetensorsHeader = uint64_t{100} << 20;
// Alignment of every tensor's data after loading.
constexpr size_t kSafetensorsAlign = 16;

// One tensor of a loaded file. `dtype` is kInvalid for safetensors dtypes gdn
// has no use for (F64, U8, ...); `dtype_name` is the file's spelling.
struct SafetensorsTensor {
  std::string name;
  std::string dtype_name;
  DType dtype = DType::kInvalid;
  std::vector<int64_t> shape;  // empty: a scalar (one element)
  void* data = nullptr;        // kSafetensorsAlign-aligned, owned by the file object
  size_t bytes = 0;
  int64_t numel() const;
};

// A file read into memory.
class SafetensorsFile {
 public:
  SafetensorsFile() = default;
  // Tensors point into storage_: moves keep them valid, copies would not.
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  SafetensorsFile(SafetensorsFile&&) = default;
  SafetensorsFile& operator=(SafetensorsFile&&) = default;
  // Reads and validates `path`; false with a message in `error`.
  bool load(const std::string& path, std::string* error);
  // The tensor called `name`, or null.
  const SafetensorsTensor* find(const std::string& name) const;
  SafetensorsTensor* find(const std::string& name);
  // In the order of their data offsets.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  struct alignas(kSafetensorsAlign) Block {
    unsigned char bytes[kSafetensorsAlign];
  };
  std::string path_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<Block> storage_;
};

// A contiguous tensor to write; `data` holds numel * dtype_size(dtype) bytes.
struct NamedTensor {
  std::string name;
  DType dtype = DType::kInvalid;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Writes `tensors` (data in the given order) with `metadata` as
// "__metadata__"; the header is padded with spaces to a multiple of 8 bytes.
bool write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors, std::string* error,
                       const std::map<std::string, std::string>& metadata = {});

// The safetensors spelling of a gdn dtype ("BF16", ...), or null for kInvalid.
const char* safetensors_dtype_name(DType dtype);

// "[2, 3]".
std::string shape_string(const std::vector<int64_t>& shape);

// The tensor names `gdn run --inputs` reads.
namespace input_names {
constexpr const char* kQ = "q";
constexpr const char* kK = "k";
constexpr const char* kV = "v";
constexpr const char* kG = "g";        // or raw a with A_log and dt_bias
constexpr const char* kBeta = "beta";  // or raw b with A_log and dt_bias
constexpr const char* kCuSeqlens = "cu_seqlens";
constexpr const char* kInitialState = "initial_state";
constexpr const char* kStateIndices = "state_indices";
constexpr const char* kALog = "A_log";
constexpr const char* kDtBias = "dt_bias";
constexpr const char* kScale = "scale";
}  // namespace input_names

// The inputs of a prefill call (contiguous host tensors) under the names
// `gdn run --inputs` reads; false with a message when one is strided.
bool prefill_input_tensors(const Args& args, std::vector<NamedTensor>* out, std::string* error);

}  // namespace gdn::cli
