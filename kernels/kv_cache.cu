// KV-cache write by slot mapping (vLLM's `reshape_and_cache`): row i of `src`
// (`[T, kv_heads, head_dim]`) is copied to row `slots[i]` of `cache` (`[slots, kv_heads, head_dim]`).
// The copy is type-agnostic: the host picks the widest word that divides the row's bytes and the
// two base offsets. CPU twin: `write_kv_cpu` in src/kernels/kv_write.rs.
//
// Also: a fill kernel used to poison outputs before a checked launch (kernel-check).
#include "common.cuh"

template <typename W>
__device__ __forceinline__ void write_kv_slots(W* __restrict__ cache, const W* __restrict__ src,
                                               const uint32_t* __restrict__ slots,
                                               uint32_t row_words, uint32_t rows) {
  const uint32_t row = blockIdx.x;
  if (row >= rows) return;
  const size_t dst_row = (size_t)slots[row] * row_words;
  const size_t src_row = (size_t)row * row_words;
  for (uint32_t i = threadIdx.x; i < row_words; i += blockDim.x) {
    cache[dst_row + i] = src[src_row + i];
  }
}

extern "C" __global__ void tl_write_kv_w16(uint4* cache, const uint4* src, const uint32_t* slots,
                                           uint32_t row_words, uint32_t rows) {
  write_kv_slots(cache, src, slots, row_words, rows);
}

extern "C" __global__ void tl_write_kv_w8(uint2* cache, const uint2* src, const uint32_t* slots,
                                          uint32_t row_words, uint32_t rows) {
  write_kv_slots(cache, src, slots, row_words, rows);
}

extern "C" __global__ void tl_write_kv_w4(uint32_t* cache, const uint32_t* src,
                                          const uint32_t* slots, uint32_t row_words,
                                          uint32_t rows) {
  write_kv_slots(cache, src, slots, row_words, rows);
}

extern "C" __global__ void tl_write_kv_w2(uint16_t* cache, const uint16_t* src,
                                          const uint32_t* slots, uint32_t row_words,
                                          uint32_t rows) {
  write_kv_slots(cache, src, slots, row_words, rows);
}

// Fills `n` 16-bit words with `value` (0xffff is a NaN in both f16 and bf16; two of them make an
// f32 NaN).
extern "C" __global__ void tl_fill_u16(uint16_t* dst, uint32_t value, uint64_t n) {
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (uint64_t)gridDim.x * blockDim.x) {
    dst[i] = (uint16_t)value;
  }
}
