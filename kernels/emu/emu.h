// A small SIMT emulator: lets kernels/*.cu compile as host C++ (g++ -DTL_EMULATE) and run on the
// CPU with one OS thread per CUDA thread, so their index math, warp shuffles, barriers and
// tensor-core fragment layouts can be checked against the Rust twins on a machine without a GPU
// (kernels/emu/run_case.cpp, scripts/cuda/emulate.sh).
//
// What it models: threadIdx/blockIdx/blockDim/gridDim; __syncthreads (a barrier of the CTA);
// __shfl_xor_sync (an exchange among the 32 lanes of a warp, all of which must take part);
// static and dynamic shared memory (CTAs run one after another, so a function-static array is the
// CTA's shared memory); mma.sync m16n8k16 (bf16/f16 in, f32 accumulate) computed from the lanes'
// fragments with the PTX ISA's layouts; cp.async as a plain copy. What it does not model: memory
// ordering without barriers, alignment faults, timing. A missing barrier can therefore pass here.
#pragma once

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
#define TL_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(tl_emu::dynamic_smem())

struct uint2 { uint32_t x, y; };
struct uint4 { uint32_t x, y, z, w; };
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }
struct dim3 { uint32_t x = 1, y = 1, z = 1; };

// ---- 16-bit float types (round to nearest even, like the device conversions) -----------------
struct __nv_bfloat16 { uint16_t bits; };
struct __half { uint16_t bits; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
struct __half2 { __half x, y; };

inline float __bfloat162float(__nv_bfloat16 v) {
  uint32_t u = (uint32_t)v.bits << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return {(uint16_t)(u >> 16)};
}
inline float __half2float(__half v) {
  _Float16 h;
  std::memcpy(&h, &v.bits, 2);
  return (float)h;
}
inline __half __float2half_rn(float f) {
  _Float16 h = (_Float16)f;  // IEEE round to nearest even
  __half out;
  std::memcpy(&out.bits, &h, 2);
  return out;
}
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
inline __half2 __floats2half2_rn(float lo, float hi) {
  return {__float2half_rn(lo), __float2half_rn(hi)};
}
// e4m3 "fn" (vLLM's fp8 KV cache): 4 exponent bits (bias 7), 3 mantissa bits, no infinities,
// 0x7f/0xff NaN. Only the widening is modelled: the kernels never write fp8.
struct __nv_fp8_e4m3 {
  uint8_t __x;
  explicit operator float() const {
    const int e = (__x >> 3) & 0xf, m = __x & 7;
    const float sign = (__x & 0x80) ? -1.f : 1.f;
    if ((__x & 0x7f) == 0x7f) return std::nanf("");
    if (e == 0) return sign * std::ldexp((float)m, -9);
    return sign * std::ldexp(1.f + m / 8.f, e - 7);
  }
};

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

template <typename A, typename B> inline auto min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return std::min<C>((C)a, (C)b);
}
template <typename A, typename B> inline auto max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return std::max<C>((C)a, (C)b);
}

// ---- the machine -------------------------------------------------------------------------------
namespace tl_emu {

struct Cta {
  dim3 block_idx, block_dim, grid_dim;
  std::vector<unsigned char> dynamic;
  std::unique_ptr<std::barrier<>> all;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
  // Per-warp exchange areas for shuffles and mma fragments.
  std::vector<float> shfl;                  // [warps][32]
  std::vector<uint32_t> frag;               // [warps][32][10]: a0..a3, b0, b1, c0..c3 (bits)
};

inline Cta* g_cta = nullptr;
inline thread_local dim3 t_thread_idx;

inline unsigned char* dynamic_smem() { return g_cta->dynamic.data(); }
inline unsigned lane() { return t_thread_idx.x % 32; }
inline unsigned warp() { return t_thread_idx.x / 32; }
inline void warp_sync() { g_cta->warps[warp()]->arrive_and_wait(); }

// Runs `body` for every thread of every CTA of the grid; CTAs one after another.
inline void launch(dim3 grid, dim3 block, size_t dynamic_bytes, const std::function<void()>& body) {
  const unsigned threads = block.x * block.y * block.z;
  if (block.y != 1 || block.z != 1 || threads % 32 != 0) throw "emu: 1-D blocks of whole warps only";
  for (uint32_t z = 0; z < grid.z; ++z)
    for (uint32_t y = 0; y < grid.y; ++y)
      for (uint32_t x = 0; x < grid.x; ++x) {
        Cta cta;
        cta.block_idx = {x, y, z};
        cta.block_dim = block;
        cta.grid_dim = grid;
        cta.dynamic.assign(dynamic_bytes + 16, 0xA5);  // garbage, not zeros
        cta.all = std::make_unique<std::barrier<>>(threads);
        for (unsigned w = 0; w < threads / 32; ++w) cta.warps.push_back(std::make_unique<std::barrier<>>(32));
        cta.shfl.assign(threads, 0.f);
        cta.frag.assign(threads * 10, 0u);
        g_cta = &cta;
        std::vector<std::thread> pool;
        pool.reserve(threads);
        for (unsigned t = 0; t < threads; ++t)
          pool.emplace_back([t, &body] {
            t_thread_idx = {t, 0, 0};
            body();
          });
        for (auto& th : pool) th.join();
        g_cta = nullptr;
      }
}

}  // namespace tl_emu

#define threadIdx (tl_emu::t_thread_idx)
#define blockIdx (tl_emu::g_cta->block_idx)
#define blockDim (tl_emu::g_cta->block_dim)
#define gridDim (tl_emu::g_cta->grid_dim)

inline void __syncthreads() { tl_emu::g_cta->all->arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned mask, float v, int offset) {
  if (mask != 0xffffffffu) throw "emu: partial shuffle masks are not modelled";
  float* area = &tl_emu::g_cta->shfl[tl_emu::warp() * 32];
  area[tl_emu::lane()] = v;
  tl_emu::warp_sync();
  const float other = area[tl_emu::lane() ^ (unsigned)offset];
  tl_emu::warp_sync();
  return other;
}

#define TL_DEFINE_EMU_MMA(NAME, TO_FLOAT, T)                                                    \
  inline void NAME(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {          \
    uint32_t* area = &tl_emu::g_cta->frag[tl_emu::warp() * 32 * 10];                          \
    uint32_t* mine = area + tl_emu::lane() * 10;                                               \
    for (int i = 0; i < 4; ++i) mine[i] = a[i];                                                \
    mine[4] = b0;                                                                              \
    mine[5] = b1;                                                                              \
    tl_emu::warp_sync();                                                                       \
    auto half_of = [](uint32_t reg, int hi) {                                                  \
      T v;                                                                                     \
      v.bits = (uint16_t)(hi ? reg >> 16 : reg & 0xffffu);                                     \
      return TO_FLOAT(v);                                                                      \
    };                                                                                         \
    /* A[r][k]: lane (r % 8) * 4 + (k % 8) / 2, register (r / 8) + 2 * (k / 8), half k % 2 */    \
    auto A = [&](int r, int k) {                                                               \
      const uint32_t* l = area + ((r % 8) * 4 + (k % 8) / 2) * 10;                             \
      return half_of(l[(r / 8) + 2 * (k / 8)], k % 2);                                         \
    };                                                                                         \
    /* B[k][n]: lane n * 4 + (k % 8) / 2, register 4 + k / 8, half k % 2 */                     \
    auto B = [&](int k, int n) {                                                               \
      const uint32_t* l = area + (n * 4 + (k % 8) / 2) * 10;                                   \
      return half_of(l[4 + k / 8], k % 2);                                                     \
    };                                                                                         \
    const int gid = tl_emu::lane() / 4, tig = tl_emu::lane() % 4;                              \
    for (int i = 0; i < 4; ++i) {                                                              \
      const int r = gid + 8 * (i / 2), n = 2 * tig + (i % 2);                                  \
      float acc = c[i];                                                                        \
      for (int k = 0; k < 16; ++k) acc += A(r, k) * B(k, n);                                   \
      c[i] = acc;                                                                              \
    }                                                                                          \
    tl_emu::warp_sync();                                                                       \
  }

TL_DEFINE_EMU_MMA(tl_mma_m16n8k16_bf16, __bfloat162float, __nv_bfloat16)
TL_DEFINE_EMU_MMA(tl_mma_m16n8k16_f16, __half2float, __half)

inline void tl_cp_async_16(void* smem_dst, const void* gmem_src) { std::memcpy(smem_dst, gmem_src, 16); }
inline void tl_cp_async_wait_all() {}
