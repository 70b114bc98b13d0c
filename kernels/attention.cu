// Paged attention over tealight's KV cache (`[num_blocks * block_size, kv_heads, head_dim]` per
// layer, block tables per sequence). The cache may be narrower than the activations (q and out):
// f16/bf16, or fp8 e4m3 with per-layer scales (vLLM's `k_scale`/`v_scale`: stored = x / scale),
// so every kernel is templated on both types; the host folds `k_scale` into the score scale, and
// `v_scale` multiplies the output. Every kernel here has a CPU twin of the same algorithm in
// src/kernels/paged_attention.rs; the index arrays come from `AttentionPlan` (src/kernels/plan.rs),
// built once per step on the host and read by both.
//
// 1. `tl_paged_attention_*`: one CTA per (query token, kv head, head chunk, key partition).
//    Used for decode tokens, and for every token when the tensor-core path does not apply. The
//    CTA holds the (up to 8) query heads sharing its KV head, so K and V are read once for all of
//    them (GQA). Scores of the partition live in shared memory; softmax and the P·V sum in f32.
//    With one partition the result is written straight to `out`; otherwise each partition writes
//    its unnormalised sum and its (max, sum of exponentials) and `tl_paged_reduce_*` merges them
//    (flash-decoding).
// 2. `tl_prefill_attention_*`: prefill chunks on the tensor cores (mma.sync m16n8k16, bf16/f16 in,
//    f32 accumulate; the operand type is the cache's when it is 16-bit, else the activations'),
//    FlashAttention-2 style: one CTA per (tile of 64 query rows, kv head), where a
//    row is one (token, query head) pair of one chunk, so the heads of a GQA group share every K/V
//    tile. Keys stream through shared memory in blocks of 64 (looked up through the block table),
//    with an online softmax; causal: row (token at position p) sees keys 0..=p, cached prefix
//    included.
#include "common.cuh"

// Each dtype build leaves some helpers unused (no tensor-core path for f32).
#pragma nv_diag_suppress 177

#define TL_NEG_INF (-__int_as_float(0x7f800000))

namespace {

constexpr int kMaxGroup = 8;    // query heads per CTA in the paged kernel
constexpr int kPagedWarps = 4;  // 128 threads
constexpr int kUnroll = 4;      // keys in flight per thread group

// Threads that share one key's dot product: the most (≤ 32, power of two) that still give each
// thread a full 16-byte load, so a warp reads 32/TPK whole rows per step.
__host__ __device__ constexpr int tpk_for(int d, int vec) {
  int t = 32;
  while (t > 1 && (d % t != 0 || d / t < vec)) t /= 2;
  return t;
}

// C: the cache's element. Loads of 16 bytes, but at most 8 elements (an fp8 row slice of 16
// would double the registers that hold keys in flight).
template <typename C, int D> struct PagedShape {
  static constexpr int VEC = 16 / (int)sizeof(C) < 8 ? 16 / (int)sizeof(C) : 8;
  static constexpr int TPK = tpk_for(D, VEC);  // threads per key (QK phase)
  static constexpr int EPT = D / TPK;          // elements per thread per key
  static constexpr int KPW = 32 / TPK;         // keys per warp per step
  static constexpr int DPL = (D + 31) / 32;    // output dims per lane (PV phase)
  static_assert(D % TPK == 0, "TPK must divide D");
  static_assert(D % DPL == 0, "DPL must divide D");
};

// Shared memory (floats): [2 * kMaxGroup] stats, then the larger of the score rows
// [kMaxGroup][partition] and the cross-warp sums [kPagedWarps][kMaxGroup][D].
// `scale` includes the cache's k_scale; the output is multiplied by `v_scale`.
template <typename T, typename C, int D>
__device__ __forceinline__ void paged_attention(
    T* __restrict__ out, float* __restrict__ part_acc, float* __restrict__ part_ml,
    const T* __restrict__ q, const C* __restrict__ k_cache, const C* __restrict__ v_cache,
    const uint32_t* __restrict__ work_tokens, const uint32_t* __restrict__ token_seq,
    const uint32_t* __restrict__ token_visible, const uint32_t* __restrict__ block_tables,
    uint32_t max_blocks, uint32_t block_size, uint32_t num_heads, uint32_t num_kv_heads,
    uint32_t partition_size, uint32_t max_partitions, float scale, float v_scale) {
  using S = PagedShape<C, D>;
  constexpr int TPK = S::TPK, EPT = S::EPT, KPW = S::KPW, DPL = S::DPL;
  constexpr int NT = kPagedWarps * 32;

  const uint32_t group = num_heads / num_kv_heads;
  const uint32_t head_chunks = (group + kMaxGroup - 1) / kMaxGroup;
  const uint32_t w = blockIdx.x;
  const uint32_t h = blockIdx.y / head_chunks;
  const uint32_t chunk = blockIdx.y % head_chunks;
  const uint32_t p = blockIdx.z;
  const uint32_t t = work_tokens[w];
  const uint32_t visible = token_visible[t];
  const uint32_t start = p * partition_size;
  if (start >= visible) return;  // uniform over the CTA, before any barrier
  const int n = (int)min(partition_size, visible - start);
  const uint32_t g0 = chunk * kMaxGroup;
  const int gn = (int)min((uint32_t)kMaxGroup, group - g0);
  const uint32_t* table = block_tables + (size_t)token_seq[t] * max_blocks;

  TL_DYNAMIC_SMEM(float, smem);
  float* stats = smem;                  // m[kMaxGroup], l[kMaxGroup]
  float* scores = smem + 2 * kMaxGroup;  // [kMaxGroup][partition_size]
  float* sums = scores;                  // reused after the P·V loop: [warps][kMaxGroup][D]

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int lk = lane % TPK;  // slice of the key row this thread reads
  const int kw = lane / TPK;  // which of the warp's keys

  // The query heads of this chunk, this thread's slice of each.
  const size_t q_row = (size_t)t * num_heads + (size_t)h * group + g0;
  float qv[kMaxGroup][EPT];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g < gn) {
      tl_load_f32<T, EPT>(q + (q_row + g) * D + lk * EPT, qv[g]);
    } else {
      tl_zero(qv[g]);
    }
  }

  // Phase 1: scores of the partition's keys, scaled.
  for (int j0 = warp * KPW; j0 < n; j0 += kPagedWarps * KPW * kUnroll) {
    float kv[kUnroll][EPT];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * kPagedWarps * KPW + kw;
      if (j < n) {
        const uint32_t slot = tl_slot_of(table, start + j, block_size);
        tl_load_f32<C, EPT>(k_cache + ((size_t)slot * num_kv_heads + h) * D + lk * EPT, kv[u]);
      } else {
        tl_zero(kv[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * kPagedWarps * KPW + kw;
#pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        if (g < gn) {  // uniform over the CTA: the shuffles below see every lane
          float s = 0.f;
#pragma unroll
          for (int e = 0; e < EPT; ++e) s = fmaf(qv[g][e], kv[u][e], s);
#pragma unroll
          for (int o = TPK / 2; o > 0; o >>= 1) s += __shfl_xor_sync(TL_FULL_MASK, s, o);
          if (lk == 0 && j < n) scores[g * partition_size + j] = s * scale;
        }
      }
    }
  }
  __syncthreads();

  // Phase 2: per head, max and sum of exponentials; scores become exp(s - max).
  for (int g = warp; g < gn; g += kPagedWarps) {
    float* row = scores + g * partition_size;
    float m = TL_NEG_INF;
    for (int j = lane; j < n; j += 32) m = fmaxf(m, row[j]);
    m = tl_warp_max(m);
    float l = 0.f;
    for (int j = lane; j < n; j += 32) {
      const float e = expf(row[j] - m);
      row[j] = e;
      l += e;
    }
    l = tl_warp_sum(l);
    if (lane == 0) {
      stats[g] = m;
      stats[kMaxGroup + g] = l;
    }
  }
  __syncthreads();

  // Phase 3: P·V. Warps split the keys, lanes split the head dimension.
  const int d0 = lane * DPL;
  const bool lane_active = d0 < D;
  float acc[kMaxGroup][DPL];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) tl_zero(acc[g]);
  for (int j0 = warp; j0 < n; j0 += kPagedWarps * kUnroll) {
    float vv[kUnroll][DPL];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * kPagedWarps;
      if (j < n && lane_active) {
        const uint32_t slot = tl_slot_of(table, start + j, block_size);
        tl_load_f32<C, DPL>(v_cache + ((size_t)slot * num_kv_heads + h) * D + d0, vv[u]);
      } else {
        tl_zero(vv[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int j = j0 + u * kPagedWarps;
      if (j < n) {
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) {
          if (g < gn) {
            const float pw = scores[g * partition_size + j];
#pragma unroll
            for (int e = 0; e < DPL; ++e) acc[g][e] = fmaf(pw, vv[u][e], acc[g][e]);
          }
        }
      }
    }
  }
  __syncthreads();  // every warp is done with `scores`: reuse the space for the sums
  if (lane_active) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < gn) {
#pragma unroll
        for (int e = 0; e < DPL; ++e) sums[(warp * kMaxGroup + g) * D + d0 + e] = acc[g][e];
      }
    }
  }
  __syncthreads();

  const bool direct = max_partitions == 1;
  const size_t item = ((size_t)w * gridDim.y + blockIdx.y) * max_partitions + p;
  for (int i = threadIdx.x; i < gn * D; i += NT) {
    const int g = i / D, d = i % D;
    float v = 0.f;
#pragma unroll
    for (int wi = 0; wi < kPagedWarps; ++wi) v += sums[(wi * kMaxGroup + g) * D + d];
    if (direct) {
      out[(q_row + g) * D + d] = tl_from_float<T>(v / stats[kMaxGroup + g] * v_scale);
    } else {
      part_acc[(item * kMaxGroup + g) * D + d] = v;
    }
  }
  if (!direct && threadIdx.x < (unsigned)gn) {
    part_ml[(item * kMaxGroup + threadIdx.x) * 2 + 0] = stats[threadIdx.x];
    part_ml[(item * kMaxGroup + threadIdx.x) * 2 + 1] = stats[kMaxGroup + threadIdx.x];
  }
}

// Merges the partitions of one (work token, kv head, head chunk):
// out = Σ_p e^(m_p - M) acc_p / Σ_p e^(m_p - M) l_p, with M = max_p m_p.
template <typename T>
__device__ __forceinline__ void paged_reduce(T* __restrict__ out,
                                             const float* __restrict__ part_acc,
                                             const float* __restrict__ part_ml,
                                             const uint32_t* __restrict__ work_tokens,
                                             const uint32_t* __restrict__ token_visible,
                                             uint32_t num_heads, uint32_t num_kv_heads,
                                             uint32_t head_dim, uint32_t partition_size,
                                             uint32_t max_partitions, float v_scale) {
  const uint32_t group = num_heads / num_kv_heads;
  const uint32_t head_chunks = (group + kMaxGroup - 1) / kMaxGroup;
  const uint32_t w = blockIdx.x;
  const uint32_t h = blockIdx.y / head_chunks;
  const uint32_t chunk = blockIdx.y % head_chunks;
  const uint32_t t = work_tokens[w];
  const uint32_t parts = (token_visible[t] + partition_size - 1) / partition_size;
  const uint32_t g0 = chunk * kMaxGroup;
  const uint32_t gn = min((uint32_t)kMaxGroup, group - g0);
  const size_t item0 = ((size_t)w * gridDim.y + blockIdx.y) * max_partitions;
  const size_t q_row = (size_t)t * num_heads + (size_t)h * group + g0;
  for (uint32_t i = threadIdx.x; i < gn * head_dim; i += blockDim.x) {
    const uint32_t g = i / head_dim, d = i % head_dim;
    float m_max = TL_NEG_INF;
    for (uint32_t p = 0; p < parts; ++p) {
      m_max = fmaxf(m_max, part_ml[((item0 + p) * kMaxGroup + g) * 2]);
    }
    float l = 0.f, acc = 0.f;
    for (uint32_t p = 0; p < parts; ++p) {
      const size_t at = (item0 + p) * kMaxGroup + g;
      const float wgt = expf(part_ml[at * 2] - m_max);
      l = fmaf(wgt, part_ml[at * 2 + 1], l);
      acc = fmaf(wgt, part_acc[at * head_dim + d], acc);
    }
    out[(q_row + g) * head_dim + d] = tl_from_float<T>(acc / l * v_scale);
  }
}

// ---- tensor-core prefill -------------------------------------------------------------------

constexpr int kTileRows = 64;  // query rows per CTA (4 warps × 16)
constexpr int kTileKeys = 64;  // keys per shared-memory block
constexpr int kPrefillWarps = 4;

template <typename T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  __device__ __forceinline__ static void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    tl_mma_m16n8k16_bf16(c, a, b0, b1);
  }
  __device__ __forceinline__ static uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x = lo (low 16 bits), .y = hi
    return *reinterpret_cast<uint32_t*>(&v);
  }
};
template <> struct Mma<__half> {
  __device__ __forceinline__ static void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                             uint32_t b1) {
    tl_mma_m16n8k16_f16(c, a, b0, b1);
  }
  __device__ __forceinline__ static uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

__device__ __forceinline__ uint32_t pack_u16(uint16_t lo, uint16_t hi) {
  return (uint32_t)lo | ((uint32_t)hi << 16);
}

// The tensor cores' operand type for activations T over a cache of C: the cache's when it is
// 16-bit (its values reach the mma unrounded; only q is rounded, once), else (fp8, which widens
// exactly to either) the activations'.
template <typename T, typename C> struct MmaOf { using type = C; };
template <typename T> struct MmaOf<T, __nv_fp8_e4m3> { using type = T; };

// Eight cache elements widened to the mma type, stored as 16 bytes of shared memory.
template <typename C, typename M, typename E>
__device__ __forceinline__ void stage_widened(E* dst, const C* src) {
  float x[8];
  tl_load_f32<C, 8>(src, x);
  *reinterpret_cast<uint4*>(dst) = make_uint4(M::pack(x[0], x[1]), M::pack(x[2], x[3]),
                                              M::pack(x[4], x[5]), M::pack(x[6], x[7]));
}

// Rows of the tile: r in [0, 64) is row `row0 + r` of its chunk, i.e. token (row0 + r) / group,
// query head (row0 + r) % group. Warp w owns rows 16w..16w+15; in the mma fragments thread
// (gid = lane / 4, tig = lane % 4) holds rows 16w + gid ("a") and 16w + gid + 8 ("b").
// `scale_log2` includes the cache's k_scale; the output is multiplied by `v_scale`.
template <typename T, typename C, int D>
__device__ __forceinline__ void prefill_attention(
    T* __restrict__ out, const T* __restrict__ q, const C* __restrict__ k_cache,
    const C* __restrict__ v_cache, const uint32_t* __restrict__ tile_seq,
    const uint32_t* __restrict__ tile_row0, const uint32_t* __restrict__ seq_q_start,
    const uint32_t* __restrict__ seq_q_len, const uint32_t* __restrict__ seq_ctx_len,
    const uint32_t* __restrict__ block_tables, uint32_t max_blocks, uint32_t block_size,
    uint32_t num_heads, uint32_t num_kv_heads, float scale_log2, float v_scale) {
  static_assert(D % 16 == 0 && D <= 128, "head_dim must be a multiple of 16, at most 128");
  constexpr int KS = D / 16;           // k-steps of Q·Kᵀ
  constexpr int NK = kTileKeys / 8;    // n-tiles of S (8 keys each)
  constexpr int ND = D / 8;            // n-tiles of O (8 dims each)
  constexpr int LD = D + 8;            // padded shared row (elements): conflict-free fragments
  constexpr int CHUNKS = D / 8;        // pieces of 8 elements (16 shared bytes) per row
  constexpr int NT = kPrefillWarps * 32;
  using E = typename MmaOf<T, C>::type;  // what the shared stage holds and the mma reads
  using M = Mma<E>;

  __shared__ __align__(16) E sk[kTileKeys * LD];
  __shared__ __align__(16) E sv[kTileKeys * LD];

  const uint32_t group = num_heads / num_kv_heads;
  const uint32_t seq = tile_seq[blockIdx.x];
  const uint32_t row0 = tile_row0[blockIdx.x];
  const uint32_t h = blockIdx.y;
  const uint32_t q_len = seq_q_len[seq];
  const uint32_t q_start = seq_q_start[seq];
  const uint32_t first_pos = seq_ctx_len[seq] - q_len;
  const uint32_t rows = q_len * group;
  const uint32_t last_row = min(row0 + kTileRows, rows) - 1;
  const uint32_t kmax = first_pos + last_row / group + 1;  // keys any row of the tile sees
  const uint32_t* table = block_tables + (size_t)seq * max_blocks;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;

  // This thread's two rows: validity, causal limit (last visible key) and q/out row index.
  bool valid[2];
  int limit[2];
  size_t row_index[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const uint32_t r = row0 + warp * 16 + gid + i * 8;
    valid[i] = r < rows;
    const uint32_t token = valid[i] ? r / group : 0;
    const uint32_t g = valid[i] ? r % group : 0;
    limit[i] = valid[i] ? (int)(first_pos + token) : -1;
    row_index[i] = ((size_t)(q_start + token) * num_heads + (size_t)h * group + g) * D;
  }

  // Q fragments (A operand, row-major 16×16 per k-step): columns (2tig, 2tig+1) of rows a and b,
  // then the same 8 columns on.
  uint32_t qf[KS][4];
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
    for (int f = 0; f < 4; ++f) {
      const int i = f & 1;
      const int col = ks * 16 + 2 * tig + (f >> 1) * 8;
      const T* src = q + row_index[i] + col;
      if (!valid[i]) {
        qf[ks][f] = 0u;
      } else if constexpr (std::is_same_v<T, E>) {
        qf[ks][f] = *reinterpret_cast<const uint32_t*>(src);
      } else {
        qf[ks][f] = M::pack(tl_to_float(src[0]), tl_to_float(src[1]));
      }
    }
  }

  float o[ND][4];
#pragma unroll
  for (int i = 0; i < ND; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_run[2] = {TL_NEG_INF, TL_NEG_INF};
  float l_run[2] = {0.f, 0.f};  // this thread's share of the row sums (quad-reduced at the end)

  const uint16_t* sk16 = reinterpret_cast<const uint16_t*>(sk);
  const uint16_t* sv16 = reinterpret_cast<const uint16_t*>(sv);

  for (uint32_t kb = 0; kb < kmax; kb += kTileKeys) {
    // K and V blocks into shared memory; keys past kmax are zero (never NaN times zero). A cache
    // of the mma's type is copied as it is; an fp8 one is widened on the way (exactly).
    for (int c = threadIdx.x; c < kTileKeys * CHUNKS; c += NT) {
      const int key = c / CHUNKS, part = c % CHUNKS;
      const uint32_t kp = kb + key;
      E* dk = sk + key * LD + part * 8;
      E* dv = sv + key * LD + part * 8;
      if (kp < kmax) {
        const size_t off =
            ((size_t)tl_slot_of(table, kp, block_size) * num_kv_heads + h) * D + part * 8;
        if constexpr (std::is_same_v<C, E>) {
          tl_cp_async_16(dk, k_cache + off);
          tl_cp_async_16(dv, v_cache + off);
        } else {
          stage_widened<C, M>(dk, k_cache + off);
          stage_widened<C, M>(dv, v_cache + off);
        }
      } else {
        *reinterpret_cast<uint4*>(dk) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(dv) = make_uint4(0, 0, 0, 0);
      }
    }
    tl_cp_async_wait_all();
    __syncthreads();

    // S = Q·Kᵀ for this warp's 16 rows × 64 keys.
    float s[NK][4];
#pragma unroll
    for (int nt = 0; nt < NK; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      const uint16_t* krow = sk16 + (nt * 8 + gid) * LD;
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(krow + ks * 16 + 2 * tig);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(krow + ks * 16 + 8 + 2 * tig);
        M::run(s[nt], qf[ks], b0, b1);
      }
    }

    // Scale (log2 domain), causal mask, online softmax per row.
    float alpha[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float mx = TL_NEG_INF;
#pragma unroll
      for (int nt = 0; nt < NK; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int kp = (int)kb + nt * 8 + 2 * tig + e;
          float& x = s[nt][i * 2 + e];
          x = kp <= limit[i] ? x * scale_log2 : TL_NEG_INF;
          mx = fmaxf(mx, x);
        }
      }
      mx = fmaxf(mx, __shfl_xor_sync(TL_FULL_MASK, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(TL_FULL_MASK, mx, 2));
      const float m_new = fmaxf(m_run[i], mx);
      const float base = m_new == TL_NEG_INF ? 0.f : m_new;  // a row with nothing visible yet
      alpha[i] = exp2f(m_run[i] - base);
      m_run[i] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < NK; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[nt][i * 2 + e];
          x = exp2f(x - base);
          sum += x;
        }
      }
      l_run[i] = l_run[i] * alpha[i] + sum;
    }
#pragma unroll
    for (int dt = 0; dt < ND; ++dt) {
      o[dt][0] *= alpha[0];
      o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1];
      o[dt][3] *= alpha[1];
    }

    // O += P·V: the S accumulators of two adjacent key tiles are the A fragment of one k-step.
#pragma unroll
    for (int kk = 0; kk < kTileKeys / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = M::pack(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = M::pack(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = M::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = M::pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
      const uint16_t* v0 = sv16 + (kk * 16 + 2 * tig) * LD;
#pragma unroll
      for (int dt = 0; dt < ND; ++dt) {
        const int col = dt * 8 + gid;
        const uint32_t b0 = pack_u16(v0[col], v0[LD + col]);
        const uint32_t b1 = pack_u16(v0[8 * LD + col], v0[9 * LD + col]);
        M::run(o[dt], pa, b0, b1);
      }
    }
    __syncthreads();  // the next block overwrites sk/sv
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float l = l_run[i];
    l += __shfl_xor_sync(TL_FULL_MASK, l, 1);
    l += __shfl_xor_sync(TL_FULL_MASK, l, 2);
    if (valid[i]) {
      const float inv = v_scale / l;
      T* dst = out + row_index[i];
#pragma unroll
      for (int dt = 0; dt < ND; ++dt) {
        const int col = dt * 8 + 2 * tig;
        dst[col] = tl_from_float<T>(o[dt][i * 2] * inv);
        dst[col + 1] = tl_from_float<T>(o[dt][i * 2 + 1] * inv);
      }
    }
  }
}

}  // namespace

// ---- entry points ----------------------------------------------------------------------------
// NAME is the activation dtype, then `_kv` and the cache's where that differs: bf16, bf16_kvfp8.

#define TL_PAGED(NAME, T, C, D)                                                                  \
  extern "C" __global__ void __launch_bounds__(kPagedWarps * 32) tl_paged_attention_##NAME##_d##D( \
      T* out, float* part_acc, float* part_ml, const T* q, const C* k_cache, const C* v_cache,   \
      const uint32_t* work_tokens, const uint32_t* token_seq, const uint32_t* token_visible,    \
      const uint32_t* block_tables, uint32_t max_blocks, uint32_t block_size,                   \
      uint32_t num_heads, uint32_t num_kv_heads, uint32_t partition_size,                       \
      uint32_t max_partitions, float scale, float v_scale) {                                    \
    paged_attention<T, C, D>(out, part_acc, part_ml, q, k_cache, v_cache, work_tokens,         \
                             token_seq, token_visible, block_tables, max_blocks, block_size,   \
                             num_heads, num_kv_heads, partition_size, max_partitions, scale,   \
                             v_scale);                                                         \
  }

#define TL_REDUCE(NAME, T)                                                                     \
  extern "C" __global__ void tl_paged_reduce_##NAME(                                           \
      T* out, const float* part_acc, const float* part_ml, const uint32_t* work_tokens,        \
      const uint32_t* token_visible, uint32_t num_heads, uint32_t num_kv_heads,                \
      uint32_t head_dim, uint32_t partition_size, uint32_t max_partitions, float v_scale) {    \
    paged_reduce<T>(out, part_acc, part_ml, work_tokens, token_visible, num_heads,             \
                    num_kv_heads, head_dim, partition_size, max_partitions, v_scale);          \
  }

#define TL_PREFILL(NAME, T, C, D)                                                                \
  extern "C" __global__ void __launch_bounds__(kPrefillWarps * 32)                               \
      tl_prefill_attention_##NAME##_d##D(                                                        \
          T* out, const T* q, const C* k_cache, const C* v_cache, const uint32_t* tile_seq,      \
          const uint32_t* tile_row0, const uint32_t* seq_q_start, const uint32_t* seq_q_len,     \
          const uint32_t* seq_ctx_len, const uint32_t* block_tables, uint32_t max_blocks,        \
          uint32_t block_size, uint32_t num_heads, uint32_t num_kv_heads, float scale_log2,      \
          float v_scale) {                                                                       \
    prefill_attention<T, C, D>(out, q, k_cache, v_cache, tile_seq, tile_row0, seq_q_start,      \
                               seq_q_len, seq_ctx_len, block_tables, max_blocks, block_size,    \
                               num_heads, num_kv_heads, scale_log2, v_scale);                   \
  }

// Head dims with kernels (src/kernels/mod.rs lists the same); others fall back to `generic`.
#define TL_PAGED_ALL(NAME, T, C) \
  TL_PAGED(NAME, T, C, 32)       \
  TL_PAGED(NAME, T, C, 48)       \
  TL_PAGED(NAME, T, C, 64)       \
  TL_PAGED(NAME, T, C, 128)      \
  TL_PAGED(NAME, T, C, 256)      \
  TL_REDUCE(NAME, T)

#define TL_PREFILL_ALL(NAME, T, C) \
  TL_PREFILL(NAME, T, C, 32)       \
  TL_PREFILL(NAME, T, C, 48)       \
  TL_PREFILL(NAME, T, C, 64)       \
  TL_PREFILL(NAME, T, C, 128)

// build.rs compiles this file once per (activation, cache) pair, `-DTL_UNIT_<NAME>`, so a process
// loads (and the driver JIT-compiles) only the module it runs; the emulator defines them all.
// Tensor cores for 16-bit activations only (src/kernels/mod.rs: `prefill_supported`).
#if defined(TL_UNIT_f32)
TL_PAGED_ALL(f32, float, float)
#endif
#if defined(TL_UNIT_f32_kvf16)
TL_PAGED_ALL(f32_kvf16, float, __half)
#endif
#if defined(TL_UNIT_f32_kvbf16)
TL_PAGED_ALL(f32_kvbf16, float, __nv_bfloat16)
#endif
#if defined(TL_UNIT_f32_kvfp8)
TL_PAGED_ALL(f32_kvfp8, float, __nv_fp8_e4m3)
#endif

#if defined(TL_UNIT_f16)
TL_PAGED_ALL(f16, __half, __half)
TL_PREFILL_ALL(f16, __half, __half)
#endif
#if defined(TL_UNIT_f16_kvbf16)
TL_PAGED_ALL(f16_kvbf16, __half, __nv_bfloat16)
TL_PREFILL_ALL(f16_kvbf16, __half, __nv_bfloat16)
#endif
#if defined(TL_UNIT_f16_kvfp8)
TL_PAGED_ALL(f16_kvfp8, __half, __nv_fp8_e4m3)
TL_PREFILL_ALL(f16_kvfp8, __half, __nv_fp8_e4m3)
#endif

#if defined(TL_UNIT_bf16)
TL_PAGED_ALL(bf16, __nv_bfloat16, __nv_bfloat16)
TL_PREFILL_ALL(bf16, __nv_bfloat16, __nv_bfloat16)
#endif
#if defined(TL_UNIT_bf16_kvf16)
TL_PAGED_ALL(bf16_kvf16, __nv_bfloat16, __half)
TL_PREFILL_ALL(bf16_kvf16, __nv_bfloat16, __half)
#endif
#if defined(TL_UNIT_bf16_kvfp8)
TL_PAGED_ALL(bf16_kvfp8, __nv_bfloat16, __nv_fp8_e4m3)
TL_PREFILL_ALL(bf16_kvfp8, __nv_bfloat16, __nv_fp8_e4m3)
#endif
