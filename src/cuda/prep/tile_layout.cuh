// The shared-memory byte layouts the sm90 prefill's wgmma operands use, as
// plain index arithmetic (host and device, any architecture): the sm80 prep
// kernel writes a chunk's Au and L in this layout to the workspace when the
// sm90 state pass reads them, so one bulk copy puts them in place.
//
// 128-byte swizzle: rows of 128 bytes, whose 16-byte units are permuted by
// unit ^= row % 8, in atoms of 8 rows (1024 bytes, 1024-aligned), which is
// what a bulk tensor copy with CU_TENSOR_MAP_SWIZZLE_128B writes.
//
// fp32 64 x 64 matrices (Au, L) are two panels of 32 columns, each 64 rows
// of 128 bytes, with the columns of every group of 8 in the order
// (0 2 4 6 1 3 5 7): a tf32 A fragment taken straight from a wgmma
// accumulator tile holds logical k t at column 2t, and this order puts the
// matching B rows under it.
#pragma once

#include <cstdint>

namespace gdn::cuda {

// Byte offset of the 16-byte unit `unit` (0..7) of row `row` in a
// 128-byte-swizzled tile.
__host__ __device__ constexpr uint32_t swizzle128(uint32_t row, uint32_t unit) {
  return row * 128 + ((unit ^ (row & 7)) << 4);
}

constexpr uint32_t kF32Panel = 64 * 128;           // bytes of one 32-column panel
constexpr uint32_t kF32TileBytes = 2 * kF32Panel;  // a whole 64 x 64 fp32 matrix

// Byte offset of element (i, j) of a 64 x 64 fp32 matrix in the tile layout.
__host__ __device__ constexpr uint32_t f32_tile_offset(int i, int j) {
  const int pos = (j & ~7) | ((j & 7) >> 1) | ((j & 1) << 2);
  return static_cast<uint32_t>(pos >> 5) * kF32Panel + swizzle128(i, (pos & 31) >> 2) +
         static_cast<uint32_t>(pos & 3) * 4;
}
static_assert(f32_tile_offset(63, 63) < kF32TileBytes && f32_tile_offset(0, 1) == 16,
              "two panels of 64 rows; column 1 of a group sits after columns 0 2 4 6");

// The 16 columns of block column bj of a row fill its 16-byte units
// 4 (bj & 1) .. 4 (bj & 1) + 3 (swizzled by the row) of panel bj / 2.
constexpr bool f32_block_units() {
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j) {
      const int bj = j / 16;
      const uint32_t off = f32_tile_offset(i, j), in_panel = off - (bj >> 1) * kF32Panel;
      const uint32_t unit = ((in_panel % 128) >> 4) ^ static_cast<uint32_t>(i & 7);
      if (off / kF32Panel != static_cast<uint32_t>(bj >> 1) || in_panel / 128 != static_cast<uint32_t>(i) ||
          unit / 4 != static_cast<uint32_t>(bj & 1))
        return false;
    }
  return true;
}
static_assert(f32_block_units(), "a block's columns fill four 16-byte units of each row");

// Au and L are lower triangular, so rows 0-31 of panel 1 (columns 32-63) are
// zero: the prep writes the other three quarters to the workspace, and the
// state pass copies those into its slots, whose zero quarter it clears once.
// In bytes: the first kF32KeptHead of a tile and its last kF32KeptTail.
constexpr uint32_t kF32KeptHead = kF32Panel;
constexpr uint32_t kF32KeptTail = kF32Panel / 2;
constexpr uint32_t kF32ZeroQuarter = kF32Panel / 2;  // bytes of panel 1 before its kept rows
__host__ __device__ constexpr bool f32_tile_kept(int i, int j) {
  return i >= 32 || j < 32;
}
static_assert(f32_tile_offset(0, 32) >= kF32KeptHead &&
                  f32_tile_offset(31, 63) < kF32KeptHead + kF32ZeroQuarter,
              "rows 0-31 of columns 32-63 fill the zero quarter");
static_assert(f32_tile_offset(32, 32) >= kF32Panel + kF32ZeroQuarter &&
                  kF32KeptHead + kF32ZeroQuarter + kF32KeptTail == kF32TileBytes,
              "row 32 of panel 1 starts the kept tail");

// A chunk's Au and L stored element by element in the tile layout (the prep
// kernel into the workspace, the fused sm90 state pass into its slot), as
// invert_block_column and mask_products (chunk_prep.cuh) hand them out.
// Nothing is stored in the zero quarter.
struct TiledPrepStores {
  float* au;
  float* l;
  __device__ static void store(float* m, int i, int j, float x) {
    *reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(m) + f32_tile_offset(i, j)) = x;
  }
  // L[i][j], L[i][j + 1] (j even: both in the same panel and quarter).
  __device__ void l_pair(int i, int j, float2 xy) const {
    if (!f32_tile_kept(i, j)) return;
    store(l, i, j, xy.x);
    store(l, i, j + 1, xy.y);
  }
  __device__ void au_element(int i, int j, float x) const { store(au, i, j, x); }
  // Zeros of the 16 x 16 block (bi, bj) of Au above the diagonal, by one
  // warp, a 16-byte unit at a time: each of the block's rows holds four
  // (f32_block_units).
  __device__ void au_zero_block(int bi, int bj, int lane) const {
    if (!f32_tile_kept(bi * 16, bj * 16)) return;
#pragma unroll
    for (int e = 0; e < 16 * 4 / 32; ++e) {
      const int x = lane + 32 * e, row = bi * 16 + x / 4;
      *reinterpret_cast<uint4*>(reinterpret_cast<unsigned char*>(au) + (bj >> 1) * kF32Panel +
                                swizzle128(row, 4 * (bj & 1) + x % 4)) = make_uint4(0, 0, 0, 0);
    }
  }
};

}  // namespace gdn::cuda
