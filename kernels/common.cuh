// Shared helpers of tealight's CUDA kernels: element conversions and widening vector loads.
//
// Every kernel computes in f32 whatever the storage type (f32, f16, bf16, and fp8 e4m3 for the KV
// cache). Loads are as wide as the element count and alignment allow (16, 8, 4, 2 or 1 bytes);
// callers guarantee that a load of N elements starts at a multiple of N elements from a
// 16-byte-aligned base.
#pragma once

#if defined(TL_EMULATE)
// The kernels compiled as host C++ and run thread by thread on the CPU (kernels/emu/).
#include "emu/emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

#include <type_traits>
#endif

#define TL_FULL_MASK 0xffffffffu

// ---- the few hardware-specific pieces, replaced by kernels/emu/emu.h under TL_EMULATE -------
#if !defined(TL_EMULATE)
#define TL_DYNAMIC_SMEM(T, name) extern __shared__ T name[]

// D += A·B for one warp: m16n8k16, A row-major 16×16, B column-major 16×8, f32 accumulators.
// Fragments as in the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type"):
// with gid = lane / 4 and tig = lane % 4, a[0] = A[gid][2tig..+1], a[1] = A[gid+8][2tig..+1],
// a[2] = A[gid][2tig+8..+9], a[3] = A[gid+8][2tig+8..+9]; b0 = B[2tig..+1][gid],
// b1 = B[2tig+8..+9][gid]; c[0..1] = C[gid][2tig..+1], c[2..3] = C[gid+8][2tig..+1]. The element
// with the lower index sits in the lower 16 bits of each register.
__device__ __forceinline__ void tl_mma_m16n8k16_bf16(float (&c)[4], const uint32_t (&a)[4],
                                                     uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void tl_mma_m16n8k16_f16(float (&c)[4], const uint32_t (&a)[4],
                                                    uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes global → shared without a register round trip; both addresses 16-byte aligned.
__device__ __forceinline__ void tl_cp_async_16(void* smem_dst, const void* gmem_src) {
  const uint32_t dst = (uint32_t)__cvta_generic_to_shared(smem_dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem_src));
}

// Waits for this thread's outstanding cp.async copies (a __syncthreads must follow before other
// threads read them).
__device__ __forceinline__ void tl_cp_async_wait_all() {
  asm volatile("cp.async.commit_group;\n" ::);
  asm volatile("cp.async.wait_group 0;\n" ::);
}
#endif

__device__ __forceinline__ float tl_to_float(float x) { return x; }
__device__ __forceinline__ float tl_to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float tl_to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
// e4m3 ("fn": no infinities) widens exactly; sm_89+ convert in hardware.
__device__ __forceinline__ float tl_to_float(__nv_fp8_e4m3 x) { return static_cast<float>(x); }

template <typename T> __device__ __forceinline__ T tl_from_float(float x);
template <> __device__ __forceinline__ float tl_from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half tl_from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <> __device__ __forceinline__ __nv_bfloat16 tl_from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Widest access (bytes) that divides `bytes`.
__host__ __device__ constexpr int tl_access_bytes(int bytes) {
  return bytes % 16 == 0 ? 16 : bytes % 8 == 0 ? 8 : bytes % 4 == 0 ? 4 : bytes % 2 == 0 ? 2 : 1;
}

template <int BYTES> struct TlWord;
template <> struct TlWord<16> { using type = uint4; };
template <> struct TlWord<8> { using type = uint2; };
template <> struct TlWord<4> { using type = uint32_t; };
template <> struct TlWord<2> { using type = uint16_t; };
template <> struct TlWord<1> { using type = uint8_t; };

// Loads N consecutive elements at `p` and widens them to f32.
template <typename T, int N>
__device__ __forceinline__ void tl_load_f32(const T* __restrict__ p, float (&out)[N]) {
  constexpr int BYTES = tl_access_bytes(N * (int)sizeof(T));
  constexpr int PER = BYTES / (int)sizeof(T);
  static_assert(N % PER == 0, "access width must divide the row");
  using W = typename TlWord<BYTES>::type;
  const W* src = reinterpret_cast<const W*>(p);
#pragma unroll
  for (int i = 0; i < N / PER; ++i) {
    W w = src[i];
    const T* e = reinterpret_cast<const T*>(&w);
#pragma unroll
    for (int j = 0; j < PER; ++j) out[i * PER + j] = tl_to_float(e[j]);
  }
}

template <int N>
__device__ __forceinline__ void tl_zero(float (&out)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = 0.f;
}

__device__ __forceinline__ float tl_warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(TL_FULL_MASK, v, o));
  return v;
}

__device__ __forceinline__ float tl_warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(TL_FULL_MASK, v, o);
  return v;
}

// The cache slot of position `pos` of a sequence (mirrors `batch::slot_of` on the host).
__device__ __forceinline__ uint32_t tl_slot_of(const uint32_t* __restrict__ table, uint32_t pos,
                                               uint32_t block_size) {
  return table[pos / block_size] * block_size + pos % block_size;
}
