// Runs tealight's CUDA kernels (the .cu sources themselves, compiled as host C++ against
// emu.h) on a case written by `tealight debug kernels --small --dump DIR`, and compares with
// the Rust twins' results stored in the case. Launch geometry is the one src/kernels/cuda.rs
// uses (grids, block of 128, shared bytes, word size of the KV write).
//
//   g++ -std=c++20 -O1 -pthread -fno-strict-aliasing -I kernels kernels/emu/run_case.cpp -o run_case
//   ./run_case DIR/case-00.bin ...
//
// Case layout (little endian): u32 header
//   [0] magic "TLC2"  [1] dtype 0 f32 | 1 f16 | 2 bf16  [2] heads [3] kv heads [4] head_dim
//   [5] block size [6] tokens [7] cache slots [8] max blocks [9] partition size
//   [10] max partitions [11..13] paged grid x y z [14] paged shared bytes [15] prefill tiles
//   [16] packed length [17..36] ranges (start, end) of slots, block_tables, token_seq,
//   token_visible, work_tokens, seq_q_start, seq_q_len, seq_ctx_len, tile_seq, tile_row0
//   [37] scale (f32 bits, k_scale folded in)  [38] cache dtype (as [1], 3 fp8 e4m3)
//   [39] v_scale (f32 bits)
// then packed u32[len]; then raw elements: q, k cache, v cache (before), k new, v new (in the
// cache's dtype), k cache, v cache (after, twin), out (twin).
#define TL_EMULATE 1
#define TL_UNIT_f32 1
#define TL_UNIT_f32_kvf16 1
#define TL_UNIT_f32_kvbf16 1
#define TL_UNIT_f32_kvfp8 1
#define TL_UNIT_f16 1
#define TL_UNIT_f16_kvbf16 1
#define TL_UNIT_f16_kvfp8 1
#define TL_UNIT_bf16 1
#define TL_UNIT_bf16_kvf16 1
#define TL_UNIT_bf16_kvfp8 1
#include "../attention.cu"
#include "../kv_cache.cu"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

namespace {

struct Case {
  std::vector<uint32_t> h;
  std::vector<uint32_t> packed;
  std::vector<unsigned char> rest;
  size_t at = 0;
  uint32_t range_start(int i) const { return h[17 + 2 * i]; }
  uint32_t range_len(int i) const { return h[18 + 2 * i] - h[17 + 2 * i]; }
  const uint32_t* view(int i) const { return packed.data() + range_start(i); }
  template <typename T> std::vector<T> take(size_t n) {
    std::vector<T> v(n);
    std::memcpy(v.data(), rest.data() + at, n * sizeof(T));
    at += n * sizeof(T);
    return v;
  }
};

enum Range { kSlots, kTables, kTokenSeq, kVisible, kWork, kQStart, kQLen, kCtxLen, kTileSeq, kTileRow0 };

template <typename T> double widen(T x);
template <> double widen(float x) { return x; }
template <> double widen(__half x) { return __half2float(x); }
template <> double widen(__nv_bfloat16 x) { return __bfloat162float(x); }

constexpr int kHeaderWords = 40;

using PagedFn = void (*)(void*, float*, float*, const void*, const void*, const void*, const uint32_t*,
                         const uint32_t*, const uint32_t*, const uint32_t*, uint32_t, uint32_t, uint32_t,
                         uint32_t, uint32_t, uint32_t, float, float);
using ReduceFn = void (*)(void*, const float*, const float*, const uint32_t*, const uint32_t*, uint32_t,
                          uint32_t, uint32_t, uint32_t, uint32_t, float);
using PrefillFn = void (*)(void*, const void*, const void*, const void*, const uint32_t*, const uint32_t*,
                           const uint32_t*, const uint32_t*, const uint32_t*, const uint32_t*, uint32_t,
                           uint32_t, uint32_t, uint32_t, float, float);

#define TL_FN(kind, name) reinterpret_cast<kind>(reinterpret_cast<void*>(&name))

struct Kernels {
  PagedFn paged = nullptr;
  ReduceFn reduce = nullptr;
  PrefillFn prefill = nullptr;
};

// The kernels of activation dtype `dtype` over a cache of `cache` (codes as in the header).
Kernels kernels_for(int dtype, int cache, int d) {
  Kernels k;
  const int pair = dtype * 4 + cache;
#define TL_PICK(NAME, PAIR)                                                            \
  if (pair == PAIR) {                                                                  \
    switch (d) {                                                                       \
      case 32: k.paged = TL_FN(PagedFn, tl_paged_attention_##NAME##_d32); break;       \
      case 48: k.paged = TL_FN(PagedFn, tl_paged_attention_##NAME##_d48); break;       \
      case 64: k.paged = TL_FN(PagedFn, tl_paged_attention_##NAME##_d64); break;       \
      case 128: k.paged = TL_FN(PagedFn, tl_paged_attention_##NAME##_d128); break;     \
      case 256: k.paged = TL_FN(PagedFn, tl_paged_attention_##NAME##_d256); break;     \
    }                                                                                  \
    k.reduce = TL_FN(ReduceFn, tl_paged_reduce_##NAME);                                \
  }
  TL_PICK(f32, 0 * 4 + 0)
  TL_PICK(f32_kvf16, 0 * 4 + 1)
  TL_PICK(f32_kvbf16, 0 * 4 + 2)
  TL_PICK(f32_kvfp8, 0 * 4 + 3)
  TL_PICK(f16, 1 * 4 + 1)
  TL_PICK(f16_kvbf16, 1 * 4 + 2)
  TL_PICK(f16_kvfp8, 1 * 4 + 3)
  TL_PICK(bf16, 2 * 4 + 2)
  TL_PICK(bf16_kvf16, 2 * 4 + 1)
  TL_PICK(bf16_kvfp8, 2 * 4 + 3)
#define TL_PICK_PREFILL(NAME, PAIR)                                                    \
  if (pair == PAIR) {                                                                  \
    switch (d) {                                                                       \
      case 32: k.prefill = TL_FN(PrefillFn, tl_prefill_attention_##NAME##_d32); break; \
      case 48: k.prefill = TL_FN(PrefillFn, tl_prefill_attention_##NAME##_d48); break; \
      case 64: k.prefill = TL_FN(PrefillFn, tl_prefill_attention_##NAME##_d64); break; \
      case 128: k.prefill = TL_FN(PrefillFn, tl_prefill_attention_##NAME##_d128); break; \
    }                                                                                  \
  }
  TL_PICK_PREFILL(f16, 1 * 4 + 1)
  TL_PICK_PREFILL(f16_kvbf16, 1 * 4 + 2)
  TL_PICK_PREFILL(f16_kvfp8, 1 * 4 + 3)
  TL_PICK_PREFILL(bf16, 2 * 4 + 2)
  TL_PICK_PREFILL(bf16_kvf16, 2 * 4 + 1)
  TL_PICK_PREFILL(bf16_kvfp8, 2 * 4 + 3)
  return k;
}

// The KV write as cuda.rs launches it: the widest word dividing the row (offsets are 0 here).
template <typename T>
void write_kv(std::vector<T>& cache, const std::vector<T>& src, const uint32_t* slots, uint32_t rows,
              uint32_t row_elems) {
  const size_t row_bytes = row_elems * sizeof(T);
  const size_t word = row_bytes % 16 == 0 ? 16 : row_bytes % 8 == 0 ? 8 : row_bytes % 4 == 0 ? 4 : 2;
  if (row_bytes % word != 0) throw "emu: a KV row of an odd number of bytes";
  const uint32_t row_words = (uint32_t)(row_bytes / word);
  dim3 grid{rows, 1, 1}, block{std::min<uint32_t>((row_words + 31) / 32, 8) * 32, 1, 1};
  void* dst = cache.data();
  const void* s = src.data();
  tl_emu::launch(grid, block, 0, [&] {
    switch (word) {
      case 16: tl_write_kv_w16((uint4*)dst, (const uint4*)s, slots, row_words, rows); break;
      case 8: tl_write_kv_w8((uint2*)dst, (const uint2*)s, slots, row_words, rows); break;
      case 4: tl_write_kv_w4((uint32_t*)dst, (const uint32_t*)s, slots, row_words, rows); break;
      default: tl_write_kv_w2((uint16_t*)dst, (const uint16_t*)s, slots, row_words, rows); break;
    }
  });
}

// T: activations (q, out); C: the cache.
template <typename T, typename C> int run(Case& c, const std::string& name) {
  const uint32_t heads = c.h[2], kv_heads = c.h[3], d = c.h[4], block_size = c.h[5], tokens = c.h[6],
                 slots = c.h[7], max_blocks = c.h[8], psize = c.h[9], pmax = c.h[10], gx = c.h[11],
                 gy = c.h[12], gz = c.h[13], smem = c.h[14], tiles = c.h[15];
  float scale, v_scale;
  std::memcpy(&scale, &c.h[37], 4);
  std::memcpy(&v_scale, &c.h[39], 4);
  const size_t nq = (size_t)tokens * heads * d, nc = (size_t)slots * kv_heads * d,
               nn = (size_t)tokens * kv_heads * d;
  auto q = c.take<T>(nq);
  auto k = c.take<C>(nc);
  auto v = c.take<C>(nc);
  auto k_new = c.take<C>(nn);
  auto v_new = c.take<C>(nn);
  auto k_want = c.take<C>(nc);
  auto v_want = c.take<C>(nc);
  auto out_want = c.take<T>(nq);

  write_kv(k, k_new, c.view(kSlots), tokens, kv_heads * d);
  write_kv(v, v_new, c.view(kSlots), tokens, kv_heads * d);
  const bool cache_exact = std::memcmp(k.data(), k_want.data(), nc * sizeof(C)) == 0 &&
                           std::memcmp(v.data(), v_want.data(), nc * sizeof(C)) == 0;

  std::vector<T> out(nq);
  std::memset(out.data(), 0xff, nq * sizeof(T));  // NaN in every dtype
  Kernels fns = kernels_for((int)c.h[1], (int)c.h[38], (int)d);
  if (gx > 0) {
    if (!fns.paged) { std::printf("%s: no paged kernel for d=%u\n", name.c_str(), d); return 1; }
    const bool split = pmax > 1;
    std::vector<float> acc(split ? (size_t)gx * gy * gz * 8 * d : 0), ml(split ? (size_t)gx * gy * gz * 16 : 0);
    tl_emu::launch({gx, gy, gz}, {128, 1, 1}, smem, [&] {
      fns.paged(out.data(), split ? acc.data() : nullptr, split ? ml.data() : nullptr, q.data(), k.data(),
                v.data(), c.view(kWork), c.view(kTokenSeq), c.view(kVisible), c.view(kTables), max_blocks,
                block_size, heads, kv_heads, psize, pmax, scale, v_scale);
    });
    if (split) {
      tl_emu::launch({gx, gy, 1}, {128, 1, 1}, 0, [&] {
        fns.reduce(out.data(), acc.data(), ml.data(), c.view(kWork), c.view(kVisible), heads, kv_heads, d, psize,
                   pmax, v_scale);
      });
    }
  }
  if (tiles > 0) {
    if (!fns.prefill) { std::printf("%s: no prefill kernel for d=%u\n", name.c_str(), d); return 1; }
    tl_emu::launch({tiles, kv_heads, 1}, {128, 1, 1}, 0, [&] {
      fns.prefill(out.data(), q.data(), k.data(), v.data(), c.view(kTileSeq), c.view(kTileRow0), c.view(kQStart),
                  c.view(kQLen), c.view(kCtxLen), c.view(kTables), max_blocks, block_size, heads, kv_heads,
                  scale * 1.4426950408889634f, v_scale);
    });
  }
  double num = 0, den = 0;
  size_t nan = 0;
  for (size_t i = 0; i < nq; ++i) {
    const double a = widen(out[i]), b = widen(out_want[i]);
    if (std::isnan(a)) { ++nan; continue; }
    num += (a - b) * (a - b);
    den += b * b;
  }
  const double rel = std::sqrt(num / den);
  // The mma operand's rounding (src/kernels/check.rs: `tolerance`): the cache's type if it is
  // 16-bit, else the activations'.
  const uint32_t operand = (c.h[38] == 1 || c.h[38] == 2) ? c.h[38] : c.h[1];
  const double tol = operand == 0 ? 1e-5 : operand == 1 ? 2e-3 : 1e-2;
  const bool ok = cache_exact && nan == 0 && rel <= tol;
  std::printf("%-44s tokens %4u tiles %3u partition %3ux%-3u cache %-5s nan %zu rel_err %.2e  %s\n", name.c_str(),
              tokens, tiles, psize, pmax, cache_exact ? "exact" : "DIFF", nan, rel, ok ? "ok" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int failed = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    Case c;
    c.h.resize(kHeaderWords);
    std::memcpy(c.h.data(), bytes.data(), kHeaderWords * 4);
    if (c.h[0] != 0x32434c54u) { std::printf("%s: not a case file\n", argv[i]); return 2; }
    c.packed.resize(c.h[16]);
    std::memcpy(c.packed.data(), bytes.data() + kHeaderWords * 4, c.h[16] * 4);
    c.rest.assign(bytes.begin() + kHeaderWords * 4 + c.h[16] * 4, bytes.end());
    std::string name = argv[i];
    try {
      switch (c.h[1] * 4 + c.h[38]) {
        case 0 * 4 + 0: failed += run<float, float>(c, name); break;
        case 0 * 4 + 1: failed += run<float, __half>(c, name); break;
        case 0 * 4 + 2: failed += run<float, __nv_bfloat16>(c, name); break;
        case 0 * 4 + 3: failed += run<float, __nv_fp8_e4m3>(c, name); break;
        case 1 * 4 + 1: failed += run<__half, __half>(c, name); break;
        case 1 * 4 + 2: failed += run<__half, __nv_bfloat16>(c, name); break;
        case 1 * 4 + 3: failed += run<__half, __nv_fp8_e4m3>(c, name); break;
        case 2 * 4 + 2: failed += run<__nv_bfloat16, __nv_bfloat16>(c, name); break;
        case 2 * 4 + 1: failed += run<__nv_bfloat16, __half>(c, name); break;
        case 2 * 4 + 3: failed += run<__nv_bfloat16, __nv_fp8_e4m3>(c, name); break;
        default: std::printf("%s: no kernels for this pair of dtypes\n", argv[i]); ++failed;
      }
    } catch (const char* e) {
      std::printf("%s: emulator: %s\n", argv[i], e);
      ++failed;
    }
  }
  return failed ? 1 : 0;
}
