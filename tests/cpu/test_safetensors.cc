// The CLI's safetensors reader and writer: round trips, and rejection of
// malformed files with a message naming the file and the problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gdn/safetensors.h"

namespace gdn::cli {
namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("gdn_safetensors_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string dir_path() const { return dir_.string(); }

  // Writes an 8-byte length (`declared`, or the header's size) and `header`, then `data_bytes` zeros.
  std::string write_raw(const std::string& name, const std::string& header, size_t data_bytes,
                        int64_t declared = -1) {
    const std::string p = path(name);
    std::ofstream out(p, std::ios::binary);
    uint64_t n = declared >= 0 ? static_cast<uint64_t>(declared) : header.size();
    for (int i = 0; i < 8; ++i) {
      const char b = static_cast<char>(n & 0xff);
      out.write(&b, 1);
      n >>= 8;
    }
    out << header << std::string(data_bytes, '\0');
    return p;
  }

  // Loads `p`, expecting failure; returns the message.
  std::string load_error(const std::string& p) {
    SafetensorsFile f;
    std::string err;
    EXPECT_FALSE(f.load(p, &err)) << p;
    EXPECT_NE(err.find(p), std::string::npos) << "message does not name the file: " << err;
    EXPECT_TRUE(f.tensors().empty());
    return err;
  }

 private:
  std::filesystem::path dir_;
};

TEST_F(SafetensorsTest, RoundTrip) {
  const std::vector<uint16_t> bf16 = {0x3f80, 0x4000, 0xbf80, 0x0000, 0x7f80, 0x1234};
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0f};
  const std::vector<int32_t> i32 = {0, 5, 75, 78};
  const std::vector<int64_t> i64 = {-1, 1LL << 40};
  const float scalar = 0.125f;
  const std::vector<NamedTensor> tensors = {
      {"q", DType::kBF16, {2, 3}, bf16.data()},      {"g", DType::kF32, {3}, f32.data()},
      {"cu", DType::kI32, {4}, i32.data()},          {"idx", DType::kI64, {2}, i64.data()},
      {"scale", DType::kF32, {}, &scalar},           {"empty", DType::kF16, {0, 4}, nullptr},
      {"half", DType::kF16, {1, 1, 2}, bf16.data()},
  };
  std::string err;
  const std::string p = path("round_trip.safetensors");
  ASSERT_TRUE(write_safetensors(p, tensors, &err, {{"producer", "test"}})) << err;

  // The header length is a multiple of 8 and the header is padded with spaces.
  std::ifstream in(p, std::ios::binary);
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  EXPECT_EQ(n % 8, 0u);

  SafetensorsFile f;
  ASSERT_TRUE(f.load(p, &err)) << err;
  EXPECT_EQ(f.tensors().size(), tensors.size());
  EXPECT_EQ(f.metadata().at("producer"), "test");
  for (const NamedTensor& t : tensors) {
    const SafetensorsTensor* got = f.find(t.name);
    ASSERT_NE(got, nullptr) << t.name;
    EXPECT_EQ(got->dtype, t.dtype) << t.name;
    EXPECT_EQ(got->shape, t.shape) << t.name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(got->data) % kSafetensorsAlign, 0u) << t.name;
    EXPECT_EQ(got->bytes, static_cast<size_t>(got->numel()) * dtype_size(t.dtype)) << t.name;
    if (got->bytes > 0) {
      EXPECT_EQ(std::memcmp(got->data, t.data, got->bytes), 0) << t.name;
    }
  }
  EXPECT_EQ(std::string(f.find("q")->dtype_name), "BF16");
  EXPECT_EQ(f.find("scale")->numel(), 1);
  EXPECT_EQ(f.find("missing"), nullptr);
}

TEST_F(SafetensorsTest, ReadsDtypesGdnDoesNotUse) {
  const std::string p =
      write_raw("f64.safetensors", R"({"x":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", 16);
  SafetensorsFile f;
  std::string err;
  ASSERT_TRUE(f.load(p, &err)) << err;
  ASSERT_NE(f.find("x"), nullptr);
  EXPECT_EQ(f.find("x")->dtype, DType::kInvalid);
  EXPECT_EQ(f.find("x")->dtype_name, "F64");
}

TEST_F(SafetensorsTest, WriterRejectsBadTensors) {
  const float x = 1.0f;
  std::string err;
  EXPECT_FALSE(
      write_safetensors(path("a"), {{"a", DType::kF32, {1}, &x}, {"a", DType::kF32, {1}, &x}}, &err));
  EXPECT_NE(err.find("twice"), std::string::npos) << err;
  EXPECT_FALSE(write_safetensors(path("b"), {{"__metadata__", DType::kF32, {1}, &x}}, &err));
  EXPECT_NE(err.find("reserved"), std::string::npos) << err;
  EXPECT_FALSE(write_safetensors(path("c"), {{"c", DType::kInvalid, {1}, &x}}, &err));
  EXPECT_NE(err.find("dtype"), std::string::npos) << err;
  EXPECT_FALSE(write_safetensors(path("d"), {{"d", DType::kF32, {-1}, &x}}, &err));
  EXPECT_NE(err.find("negative"), std::string::npos) << err;
  EXPECT_FALSE(write_safetensors(path("e"), {{"e", DType::kF32, {2}, nullptr}}, &err));
  EXPECT_NE(err.find("null"), std::string::npos) << err;
  EXPECT_FALSE(write_safetensors(path("no_such_dir/f"), {{"f", DType::kF32, {1}, &x}}, &err));
  EXPECT_NE(err.find("cannot open"), std::string::npos) << err;
}

TEST_F(SafetensorsTest, RejectsMissingAndShortFiles) {
  EXPECT_NE(load_error(path("absent.safetensors")).find("cannot open"), std::string::npos);
  EXPECT_NE(load_error(dir_path()).find("directory"), std::string::npos);
  const std::string p = path("short.safetensors");
  std::ofstream(p, std::ios::binary) << "abc";
  EXPECT_NE(load_error(p).find("too short"), std::string::npos);
}

TEST_F(SafetensorsTest, RejectsMalformedHeaders) {
  const std::string good = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  struct Bad {
    const char* name;
    std::string header;
    size_t data_bytes;
    int64_t declared;
    const char* expect;
  };
  const Bad bad[] = {
      {"length_past_end", good, 8, 1000, "larger than the file"},
      {"truncated_data", good, 4, -1, "reach past the data buffer"},
      {"not_json", "{\"x\": [1, 2", 0, -1, "not valid JSON"},
      {"not_object", "[1, 2, 3]", 0, -1, "not a JSON object"},
      {"tiny_header", "{", 0, -1, "too short"},
      {"unknown_dtype", R"({"x":{"dtype":"F13","shape":[2],"data_offsets":[0,8]}})", 8, -1,
       "tensor 'x': unknown dtype 'F13'"},
      {"size_mismatch", R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, -1,
       "tensor 'x': data_offsets [0, 8] span 8 bytes but F32 [3] needs 12"},
      {"begin_after_end", R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8, -1,
       "begin is after end"},
      {"negative_dim", R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, -1,
       "shape: -2 is not a non-negative integer"},
      {"float_dim", R"({"x":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8, -1, "shape: 2.0"},
      {"missing_shape", R"({"x":{"dtype":"F32","data_offsets":[0,8]}})", 8, -1, "tensor 'x': shape"},
      {"missing_dtype", R"({"x":{"shape":[2],"data_offsets":[0,8]}})", 8, -1, "tensor 'x': dtype"},
      {"bad_offsets", R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8, -1,
       "tensor 'x': data_offsets"},
      {"entry_not_object", R"({"x":3})", 0, -1, "tensor 'x': expected an object"},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, -1, "overlap"},
      {"duplicate",
       R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       8, -1, "names 'x' twice"},
      {"bad_metadata", R"({"__metadata__":{"k":1}})", 0, -1, "__metadata__"},
      {"huge_dims", R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8, -1,
       "too many"},
  };
  for (const Bad& b : bad) {
    const std::string p = write_raw(std::string(b.name) + ".safetensors", b.header, b.data_bytes, b.declared);
    const std::string err = load_error(p);
    EXPECT_NE(err.find(b.expect), std::string::npos) << b.name << ": " << err;
  }
}

}  // namespace
}  // namespace gdn::cli
