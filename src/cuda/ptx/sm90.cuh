// Hopper (sm_90a) primitives of the sm90 state pass: warpgroup matrix
// multiply-accumulate (PTX ISA 9.7.15, "wgmma"), its shared-memory matrix
// descriptors (9.7.15.5.1), and thin wrappers over CCCL's cuda::ptx for the
// mbarriers (9.7.13.15) and the bulk tensor copies (9.7.9.25) that feed it.
//
// Register fragments, per warp w of the warpgroup (rows 16 w .. 16 w + 15 of
// the 64-row tile; g = lane / 4, t = lane % 4), are those of mma.sync
// (mma_sm80.cuh) repeated over the n-tiles: accumulator d[nt][e] holds
// D(16 w + g + 8 (e / 2), 8 nt + 2 t + e % 2); a bf16 A fragment of a 16-wide
// k-step is the m16n8k16 A fragment; a tf32 A fragment of an 8-wide k-step is
// the m16n8k8 one (a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)).
//
// Shared-memory operands use the 128-byte swizzle: rows of 128 bytes, whose
// 16-byte units are permuted by unit ^= row % 8, in atoms of 8 rows (1024
// bytes, 1024-aligned), which is what a bulk tensor copy with
// CU_TENSOR_MAP_SWIZZLE_128B writes.
#pragma once

#include <cstdint>
#include <cuda/ptx>

#include "cuda/prep/tile_layout.cuh"
#include "cuda/ptx/sync.cuh"

namespace gdn::cuda::sm90 {

// A shared-memory matrix descriptor with the 128-byte swizzle. For a K-major
// operand (each row of the M or N dimension holds consecutive k), rows are
// 128 bytes apart, atoms of 8 rows `sbo` bytes apart, and a k-step starts
// `32 * step` bytes into the row; `lbo` is unused. For an MN-major operand
// (16-bit types only, transposed in the instruction), each 128-byte row
// holds 64 consecutive m (or n) of one k: `lbo` is the distance between
// 64-wide panels along m (n) and `sbo` between groups of 8 k.
__device__ __forceinline__ uint64_t smem_desc(const void* smem, uint32_t lbo, uint32_t sbo) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return (uint64_t{(addr & 0x3FFFF) >> 4}) | (uint64_t{lbo >> 4} << 16) | (uint64_t{sbo >> 4} << 32) |
         (uint64_t{1} << 62);
}

// Orders this thread's register writes before the warpgroup's next wgmma.
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// Waits until at most N committed groups of this warpgroup are pending.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accesses of an accumulator across a wait.
template <int NT>
__device__ __forceinline__ void wgmma_fence_operand(float (&d)[NT][4]) {
#pragma unroll
  for (int i = 0; i < NT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[i][e])::"memory");
}
// Zeroes an accumulator of NT n-tiles.
template <int NT>
__device__ __forceinline__ void zero_acc(float (&d)[NT][4]) {
#pragma unroll
  for (int i = 0; i < NT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) d[i][e] = 0.f;
}
// The accumulator operands of a wgmma: n-tiles 0..7 (N = 64) of d, and
// the registers they bind to in the instruction text.
#define GDN_WGMMA_TILE(d, i) "+f"(d[i][0]), "+f"(d[i][1]), "+f"(d[i][2]), "+f"(d[i][3])
#define GDN_WGMMA_ACC8(d)                                                                 \
  GDN_WGMMA_TILE(d, 0), GDN_WGMMA_TILE(d, 1), GDN_WGMMA_TILE(d, 2), GDN_WGMMA_TILE(d, 3), \
      GDN_WGMMA_TILE(d, 4), GDN_WGMMA_TILE(d, 5), GDN_WGMMA_TILE(d, 6), GDN_WGMMA_TILE(d, 7)
#define GDN_WGMMA_REGS32                                                                        \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define GDN_WGMMA_REGS64                                                                        \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
  "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
  "%56, %57, %58, %59, %60, %61, %62, %63}"

// D[64, 64] (+)= A B with A from registers (4 32-bit registers) and B a
// shared-memory descriptor: `shape_types` names the instruction's shape and
// types, `tail` its scale and transpose immediates.
#define GDN_WGMMA_RS_N64(shape_types, tail, d, a, b)                                                 \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\nwgmma.mma_async.sync.aligned." shape_types \
               " " GDN_WGMMA_REGS32 ", {%32, %33, %34, %35}, %36, p, " tail ";\n}\n"                 \
               : GDN_WGMMA_ACC8(d)                                                                   \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1))
// The same with N = 128, the accumulator as two 64-column halves d0, d1.
#define GDN_WGMMA_RS_N128(shape_types, tail, d0, d1, a, b)                                           \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\nwgmma.mma_async.sync.aligned." shape_types \
               " " GDN_WGMMA_REGS64 ", {%64, %65, %66, %67}, %68, p, " tail ";\n}\n"                 \
               : GDN_WGMMA_ACC8(d0), GDN_WGMMA_ACC8(d1)                                              \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1))

// D[64, 64] += A B: A bf16 from registers, B bf16 from shared memory (K-major).
__device__ __forceinline__ void wgmma_bf16_rs_n64(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b) {
  GDN_WGMMA_RS_N64("m64n64k16.f32.bf16.bf16", "1, 1, 0", d, a, b);
}
// D[64, 64] += A B: A bf16 from registers, B bf16 from shared memory (MN-major, transposed).
__device__ __forceinline__ void wgmma_bf16_rs_n64_tb(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b) {
  GDN_WGMMA_RS_N64("m64n64k16.f32.bf16.bf16", "1, 1, 1", d, a, b);
}
// [D0 | D1] [64, 64 + 64] += A B: A bf16 from registers, B bf16 from shared
// memory (K-major), the accumulator given as its two 64-column halves.
__device__ __forceinline__ void wgmma_bf16_rs_n128(float (&d0)[8][4], float (&d1)[8][4],
                                                   const uint32_t (&a)[4], uint64_t b) {
  GDN_WGMMA_RS_N128("m64n128k16.f32.bf16.bf16", "1, 1, 0", d0, d1, a, b);
}
// D[64, 128] += A B: A bf16 from registers, B bf16 from shared memory (MN-major, transposed).
__device__ __forceinline__ void wgmma_bf16_rs_n128_tb(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b) {
  float(&d0)[8][4] = *reinterpret_cast<float(*)[8][4]>(&d[0]);
  float(&d1)[8][4] = *reinterpret_cast<float(*)[8][4]>(&d[8]);
  GDN_WGMMA_RS_N128("m64n128k16.f32.bf16.bf16", "1, 1, 1", d0, d1, a, b);
}
// D[64, 64] += A B: A tf32 from registers, B tf32 from shared memory, K-major
// (tf32 takes no transpose immediates).
__device__ __forceinline__ void wgmma_tf32_rs_n64(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b) {
  GDN_WGMMA_RS_N64("m64n64k8.f32.tf32.tf32", "1, 1", d, a, b);
}

// D[64, 64] += A B: A and B bf16 from shared memory, both K-major.
__device__ __forceinline__ void wgmma_bf16_ss_n64(float (&d)[8][4], uint64_t a, uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, "
      "0;\nwgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " GDN_WGMMA_REGS32
      ", %32, %33, p, 1, 1, 0, 0;\n}\n"
      : GDN_WGMMA_ACC8(d)
      : "l"(a), "l"(b), "r"(1));
}

#undef GDN_WGMMA_RS_N128
#undef GDN_WGMMA_RS_N64
#undef GDN_WGMMA_REGS64
#undef GDN_WGMMA_REGS32
#undef GDN_WGMMA_ACC8
#undef GDN_WGMMA_TILE

// mbarriers and bulk tensor copies (CCCL cuda::ptx).
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  ::cuda::ptx::mbarrier_init(bar, count);
}
// Makes the initialised barriers visible to the other threads and to the
// asynchronous proxy.
__device__ __forceinline__ void mbar_init_fence() {
  ::cuda::ptx::fence_mbarrier_init(::cuda::ptx::sem_release, ::cuda::ptx::scope_cluster);
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  (void)::cuda::ptx::mbarrier_arrive(bar);
}
// Arrives and announces `bytes` of copies that complete on the barrier.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  (void)::cuda::ptx::mbarrier_arrive_expect_tx(::cuda::ptx::sem_release, ::cuda::ptx::scope_cta,
                                               ::cuda::ptx::space_shared, bar, bytes);
}
// Blocks until the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  while (!::cuda::ptx::mbarrier_try_wait_parity(bar, parity)) {
  }
}
// Orders this thread's generic shared-memory writes before the async
// proxy's later accesses of them (wgmma operand reads, bulk copies into the
// same bytes); a barrier after it extends that to the other threads.
__device__ __forceinline__ void fence_async_shared() {
  ::cuda::ptx::fence_proxy_async(::cuda::ptx::space_shared);
}
// Orders this thread's acquired view of global memory (a ready mark
// another CTA released) before its later bulk copies from global memory,
// which read through the async proxy.
__device__ __forceinline__ void fence_async_global() {
  ::cuda::ptx::fence_proxy_async(::cuda::ptx::space_global);
}
// Raises (lowers) the registers per thread of the executing warpgroup to N,
// a multiple of 8 in 24..256; every warp of the warpgroup executes it (PTX
// ISA 9.7.17.1, setmaxnreg; the CCCL of CUDA 13.0 has no wrapper for it).
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg takes a multiple of 8 in 24..256");
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg takes a multiple of 8 in 24..256");
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(N));
}
// A 3-D box of the tensor map into shared memory, completing on `bar`.
__device__ __forceinline__ void tma_load_3d(void* dst, const void* map, int32_t c0, int32_t c1, int32_t c2,
                                            uint64_t* bar) {
  const int32_t coords[3] = {c0, c1, c2};
  ::cuda::ptx::cp_async_bulk_tensor(::cuda::ptx::space_cluster, ::cuda::ptx::space_global, dst, map, coords,
                                    bar);
}
// A bulk copy of `bytes` (a multiple of 16, both addresses 16-byte aligned)
// from global to shared memory, completing on `bar` (PTX ISA 9.7.9.25,
// cp.async.bulk).
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  ::cuda::ptx::cp_async_bulk(::cuda::ptx::space_cluster, ::cuda::ptx::space_global, dst, src, bytes, bar);
}
}  // namespace gdn::cuda::sm90
