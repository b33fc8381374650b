// Scalar conversions between the storage dtypes and float/double.
// bf16: the top half of an IEEE binary32, rounded to nearest even.
// fp16: IEEE binary16, converted exactly (float -> half rounds to nearest even).
#pragma once

#include <cstdint>
#include <cstring>

#include "gdn/gdn.h"

namespace gdn {

inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      uint32_t m = man;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t float_to_half(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {                                               // subnormal or zero in half
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half_way = 1u << (shift - 1);
    if (rem > half_way || (rem == half_way && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = abs - 0x38000000u;  // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<uint16_t>(sign | (r >> 13));
}

// Reads element `i` (in elements from `base`) of a floating tensor as float.
inline float load_float(const void* base, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(base)[i];
    case DType::kBF16:
      return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::kF16:
      return half_to_float(static_cast<const uint16_t*>(base)[i]);
    default:
      return 0.0f;
  }
}

// Writes `x` rounded to `dtype` at element `i`.
inline void store_float(void* base, DType dtype, int64_t i, float x) {
  switch (dtype) {
    case DType::kF32:
      static_cast<float*>(base)[i] = x;
      break;
    case DType::kBF16:
      static_cast<uint16_t*>(base)[i] = float_to_bf16(x);
      break;
    case DType::kF16:
      static_cast<uint16_t*>(base)[i] = float_to_half(x);
      break;
    default:
      break;
  }
}

// Reads element `i` of an integer tensor.
inline int64_t load_int(const void* base, DType dtype, int64_t i) {
  return dtype == DType::kI64 ? static_cast<const int64_t*>(base)[i] : static_cast<const int32_t*>(base)[i];
}

}  // namespace gdn
