#include "gdn/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <utility>

namespace gdn::cli {
namespace {

// A safetensors dtype: its spelling, element size, and the gdn dtype (or kInvalid).
struct DTypeInfo {
  const char* name;
  size_t bytes;
  DType dtype;
};

constexpr DTypeInfo kDTypes[] = {
    {"BOOL", 1, DType::kInvalid},    {"U8", 1, DType::kInvalid},      {"I8", 1, DType::kInvalid},
    {"F8_E5M2", 1, DType::kInvalid}, {"F8_E4M3", 1, DType::kInvalid}, {"F8_E8M0", 1, DType::kInvalid},
    {"I16", 2, DType::kInvalid},     {"U16", 2, DType::kInvalid},     {"F16", 2, DType::kF16},
    {"BF16", 2, DType::kBF16},       {"I32", 4, DType::kI32},         {"U32", 4, DType::kInvalid},
    {"F32", 4, DType::kF32},         {"I64", 8, DType::kI64},         {"U64", 8, DType::kInvalid},
    {"F64", 8, DType::kInvalid},
};

const DTypeInfo* find_dtype(const std::string& name) {
  for (const DTypeInfo& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

// Largest dimension, element count and byte count the reader accepts.
constexpr uint64_t kMaxCount = uint64_t{1} << 62;
// Most dimensions one tensor may have.
constexpr size_t kMaxDims = 64;

// A header entry before its data is read.
struct Entry {
  SafetensorsTensor tensor;
  uint64_t begin = 0, end = 0;
};

std::string range_string(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// Strips nlohmann's "[json.exception.parse_error.101] " prefix.
std::string json_error(const std::exception& e) {
  std::string what = e.what();
  if (what.rfind("[json.exception.", 0) == 0) {
    const size_t close = what.find("] ");
    if (close != std::string::npos) what = what.substr(close + 2);
  }
  return what;
}

// Reads a non-negative JSON integer no larger than kMaxCount.
bool get_count(const nlohmann::json& j, uint64_t* out) {
  if (!j.is_number_unsigned()) return false;
  *out = j.get<uint64_t>();
  return *out <= kMaxCount;
}

// Parses one tensor entry of the header; "" or the reason it is invalid.
std::string parse_entry(const std::string& name, const nlohmann::json& value, uint64_t data_bytes, Entry* e) {
  if (!value.is_object()) return "expected an object with dtype, shape and data_offsets";
  const auto dtype = value.find("dtype");
  if (dtype == value.end() || !dtype->is_string()) return "dtype: missing or not a string";
  const DTypeInfo* info = find_dtype(dtype->get<std::string>());
  if (info == nullptr) return "unknown dtype '" + dtype->get<std::string>() + "'";
  const auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array()) return "shape: missing or not an array";
  if (shape->size() > kMaxDims) return "shape: " + std::to_string(shape->size()) + " dimensions is too many";
  uint64_t numel = 1;
  e->tensor.shape.clear();
  for (const nlohmann::json& d : *shape) {
    uint64_t extent = 0;
    if (!get_count(d, &extent)) return "shape: " + d.dump() + " is not a non-negative integer";
    e->tensor.shape.push_back(static_cast<int64_t>(extent));
    if (extent != 0 && numel > kMaxCount / extent) return "shape: too many elements";
    numel *= extent;
  }
  if (numel > kMaxCount / info->bytes) return "shape: too many bytes";
  const auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 ||
      !get_count((*offsets)[0], &e->begin) || !get_count((*offsets)[1], &e->end))
    return "data_offsets: expected [begin, end] (non-negative integers)";
  if (e->begin > e->end) return "data_offsets " + range_string(e->begin, e->end) + ": begin is after end";
  if (e->end > data_bytes)
    return "data_offsets " + range_string(e->begin, e->end) + " reach past the data buffer (" +
           std::to_string(data_bytes) + " bytes); the file is truncated or the header is wrong";
  const uint64_t need = numel * info->bytes;
  if (e->end - e->begin != need)
    return "data_offsets " + range_string(e->begin, e->end) + " span " + std::to_string(e->end - e->begin) +
           " bytes but " + info->name + " " + shape_string(e->tensor.shape) + " needs " +
           std::to_string(need);
  e->tensor.name = name;
  e->tensor.dtype_name = info->name;
  e->tensor.dtype = info->dtype;
  e->tensor.bytes = static_cast<size_t>(need);
  return "";
}

}  // namespace

int64_t SafetensorsTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool SafetensorsFile::load(const std::string& path, std::string* error) {
  path_ = path;
  tensors_.clear();
  metadata_.clear();
  storage_.clear();
  auto fail = [&](const std::string& message) {
    *error = path + ": " + message;
    tensors_.clear();
    metadata_.clear();
    storage_.clear();
    return false;
  };

  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return fail("is a directory, not a safetensors file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(std::string("cannot open: ") + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff end_pos = in.tellg();
  in.seekg(0, std::ios::beg);
  if (end_pos < 0 || !in) return fail("cannot determine the file size");
  const uint64_t file_bytes = static_cast<uint64_t>(end_pos);
  if (file_bytes < 8)
    return fail("file is " + std::to_string(file_bytes) +
                " bytes, too short for a safetensors file (an 8-byte header length, then the header)");
  unsigned char len_bytes[8];
  if (!in.read(reinterpret_cast<char*>(len_bytes), 8)) return fail("cannot read the header length");
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | len_bytes[i];
  const uint64_t after_length = file_bytes - 8;
  if (header_bytes > after_length)
    return fail("header length " + std::to_string(header_bytes) + " is larger than the file (" +
                std::to_string(after_length) +
                " bytes after the length field); the file is truncated or not a safetensors file");
  if (header_bytes > kMaxSafetensorsHeader)
    return fail("header length " + std::to_string(header_bytes) + " exceeds the limit of " +
                std::to_string(kMaxSafetensorsHeader) + " bytes");
  if (header_bytes < 2)
    return fail("header length " + std::to_string(header_bytes) + " is too short for a JSON object");
  std::string header(static_cast<size_t>(header_bytes), '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(header_bytes)))
    return fail("cannot read the header");
  const uint64_t data_bytes = after_length - header_bytes;

  // Parse, recording top-level keys that appear twice (JSON keeps the last).
  nlohmann::json root;
  std::set<std::string> seen;
  std::string duplicate;
  try {
    auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string()) {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
      }
      return true;
    };
    root = nlohmann::json::parse(header, on_event);
  } catch (const std::exception& e) {
    return fail("header is not valid JSON: " + json_error(e));
  }
  if (!root.is_object()) return fail("header is not a JSON object");
  if (!duplicate.empty()) return fail("header names '" + duplicate + "' twice");

  std::vector<Entry> entries;
  for (const auto& item : root.items()) {
    const std::string& name = item.key();
    const nlohmann::json& value = item.value();
    if (name == "__metadata__") {
      if (!value.is_object()) return fail("__metadata__ must be an object of strings");
      for (const auto& m : value.items()) {
        if (!m.value().is_string()) return fail("__metadata__: '" + m.key() + "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    Entry e;
    if (std::string why = parse_entry(name, value, data_bytes, &e); !why.empty())
      return fail("tensor '" + name + "': " + why);
    entries.push_back(std::move(e));
  }

  // No two tensors may share bytes.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const Entry* last = nullptr;
  for (const Entry& e : entries) {
    if (e.begin == e.end) continue;
    if (last != nullptr && e.begin < last->end)
      return fail("tensors '" + last->tensor.name + "' " + range_string(last->begin, last->end) + " and '" +
                  e.tensor.name + "' " + range_string(e.begin, e.end) + " overlap in the data buffer");
    last = &e;
  }

  // Copy each tensor into its own aligned slot.
  size_t blocks = 1;
  for (const Entry& e : entries) blocks += (e.tensor.bytes + kSafetensorsAlign - 1) / kSafetensorsAlign;
  try {
    storage_.resize(blocks);
  } catch (const std::bad_alloc&) {
    return fail("out of memory for " + std::to_string(blocks * kSafetensorsAlign) + " bytes of tensor data");
  }
  size_t block = 0;
  const uint64_t data_start = 8 + header_bytes;
  for (Entry& e : entries) {
    e.tensor.data = storage_[block].bytes;
    block += (e.tensor.bytes + kSafetensorsAlign - 1) / kSafetensorsAlign;
    if (e.tensor.bytes == 0) continue;
    in.seekg(static_cast<std::streamoff>(data_start + e.begin), std::ios::beg);
    if (!in.read(static_cast<char*>(e.tensor.data), static_cast<std::streamsize>(e.tensor.bytes)))
      return fail("tensor '" + e.tensor.name + "': cannot read its " + std::to_string(e.tensor.bytes) +
                  " bytes of data");
  }
  for (Entry& e : entries) tensors_.push_back(std::move(e.tensor));
  return true;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  for (const SafetensorsTensor& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsTensor* SafetensorsFile::find(const std::string& name) {
  for (SafetensorsTensor& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const char* safetensors_dtype_name(DType dtype) {
  for (const DTypeInfo& d : kDTypes)
    if (d.dtype == dtype && dtype != DType::kInvalid) return d.name;
  return nullptr;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors, std::string* error,
                       const std::map<std::string, std::string>& metadata) {
  auto fail = [&](const std::string& message) {
    *error = path + ": " + message;
    return false;
  };
  std::string header;
  std::vector<size_t> sizes;
  try {
    nlohmann::ordered_json root = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
      nlohmann::ordered_json meta = nlohmann::ordered_json::object();
      for (const auto& [key, value] : metadata) meta[key] = value;
      root["__metadata__"] = std::move(meta);
    }
    uint64_t offset = 0;
    for (const NamedTensor& t : tensors) {
      const std::string where = "tensor '" + t.name + "': ";
      if (t.name == "__metadata__") return fail(where + "the name is reserved");
      if (root.contains(t.name)) return fail(where + "the name appears twice");
      const char* dtype = safetensors_dtype_name(t.dtype);
      if (dtype == nullptr) return fail(where + "dtype is not set");
      uint64_t numel = 1;
      for (int64_t d : t.shape) {
        if (d < 0) return fail(where + "shape " + shape_string(t.shape) + " has a negative extent");
        if (d != 0 && numel > kMaxCount / static_cast<uint64_t>(d)) return fail(where + "too many elements");
        numel *= static_cast<uint64_t>(d);
      }
      const uint64_t bytes = numel * dtype_size(t.dtype);
      if (bytes > 0 && t.data == nullptr) return fail(where + "data is null");
      root[t.name] = {{"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
      offset += bytes;
      sizes.push_back(static_cast<size_t>(bytes));
    }
    header = root.dump();
  } catch (const std::exception& e) {
    return fail("cannot encode the header: " + json_error(e));
  }
  header.append((8 - header.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return fail(std::string("cannot open for writing: ") + std::strerror(errno));
  unsigned char len_bytes[8];
  uint64_t n = header.size();
  for (unsigned char& b : len_bytes) {
    b = static_cast<unsigned char>(n & 0xff);
    n >>= 8;
  }
  out.write(reinterpret_cast<const char*>(len_bytes), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  // Tensor data in host byte order (little-endian on every supported host).
  for (size_t i = 0; i < tensors.size(); ++i)
    if (sizes[i] > 0)
      out.write(static_cast<const char*>(tensors[i].data), static_cast<std::streamsize>(sizes[i]));
  out.close();
  if (!out) return fail(std::string("write failed: ") + std::strerror(errno));
  return true;
}

bool prefill_input_tensors(const Args& args, std::vector<NamedTensor>* out, std::string* error) {
  namespace n = input_names;
  const bool fused = args.gate_mode == GateMode::kFused;
  const std::pair<const char*, const Tensor*> items[] = {
      {n::kQ, &args.q},
      {n::kK, &args.k},
      {n::kV, &args.v},
      {n::kG, fused ? &args.a : &args.g},
      {n::kBeta, fused ? &args.b : &args.beta},
      {n::kCuSeqlens, &args.cu_seqlens},
      {n::kInitialState, &args.initial_state},
      {n::kStateIndices, &args.state_indices},
      {n::kALog, &args.a_log},
      {n::kDtBias, &args.dt_bias},
  };
  out->clear();
  for (const auto& [name, t] : items) {
    if (!t->defined()) continue;
    NamedTensor nt;
    nt.name = name;
    nt.dtype = t->dtype;
    nt.data = t->data;
    int64_t stride = 1;
    for (int d = t->rank - 1; d >= 0; --d) {
      if (t->shape[d] > 1 && t->stride[d] != stride) {
        *error = std::string(name) + ": not contiguous";
        return false;
      }
      stride *= t->shape[d];
    }
    nt.shape.assign(t->shape, t->shape + t->rank);
    out->push_back(std::move(nt));
  }
  if (args.scale != 0.0f) out->push_back({n::kScale, DType::kF32, {}, &args.scale});
  return true;
}

}  // namespace gdn::cli
