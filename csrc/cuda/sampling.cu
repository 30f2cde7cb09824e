// CUDA bodies of mta::filter_logits and mta::sample: temperature -> top-k -> top-p -> min-p,
// then an inverse-CDF draw. The semantics are those of mta_kernels/sampling/reference.py
// (its module docstring); the reference sorts, this file never does.
//
// EXPERIMENTAL: dispatch never picks these kernels (only MTA_BACKEND=cuda runs them; CUDA
// tensors take the Triton kernels) until a GPU run measures them faster than the Triton
// path. Tests hold them to the reference like every backend.
//
// One thread block per row. Every filter is a threshold on z, so the kept set is
// {order_key(z) >= t} for one order-preserving uint32 key t, found by exact radix select
// (4 levels of 8-bit digits, shared-memory histograms): counts for top-k, probability mass
// for top-p, min-p directly from the row max. Comparing keys, not sorted positions, keeps
// every tie at a cut, as the reference does.
//
// The kernel is the Triton primitives' sequence, one named device function each (see
// mta_kernels/sampling/triton_kernels.py), each reading the row again (z is recomputed
// bit-identically every time):
//   row_max_sum         max, first argmax, sum of exp(z - max), number of non -inf values;
//                       and the raw logits' max and first argmax: a row whose finite max
//                       overflows when divided by T is greedy (the limit T -> 0+)
//   row_cut             min-p in closed form, then
//     radix_select_count  top-k: up to 4 count-histogram levels (stops when the crossing
//                         bucket is kept whole)
//     radix_select_mass   top-p: up to 4 mass-histogram levels (stops when the crossing
//                         bucket has one token; fp32 weights, double bins)
//   write_filtered_row  filter_logits' output | sample: kept_mass (skipped when row_cut
//                       knows it), then inverse_cdf_draw, a block-wide prefix-sum scan in
//                       vocabulary order that stops at the drawn token, and token_logprob.
// No host synchronisation and no allocation besides the outputs: CUDA-graph capturable.

#include "ops.h"

#include <ATen/Dispatch_v2.h>
#include <c10/cuda/CUDAMacros.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_fp16.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <type_traits>

namespace mta {
namespace {

constexpr int kBlock = 1024;
constexpr int kWarps = kBlock / 32;
constexpr int kBins = 256;
constexpr unsigned kFull = 0xffffffffu;
constexpr unsigned kNoDigit = 0xffffffffu;  // a lane that takes no part in a histogram
// key(-FLT_MAX): every key >= this belongs to a value > -inf (NaN counts as -inf).
constexpr uint32_t kFloorKey = 0x00800000u;

// ---------------------------------------------------------------- element access

// Raw 16-bit loads, converted by hand: no aliasing through c10's class types.
__device__ __forceinline__ float bf16_bits_to_float(uint32_t b) { return __uint_as_float(b << 16); }
__device__ __forceinline__ float half_bits_to_float(uint32_t b) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(b)));
}

template <typename T>
struct Io;

template <>
struct Io<float> {
  static constexpr int kVec = 4;  // 16-byte loads
  __device__ static float load1(const float* p) { return __ldg(p); }
  __device__ static void load_vec(const float* p, float (&v)[kVec]) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    v[0] = a.x;
    v[1] = a.y;
    v[2] = a.z;
    v[3] = a.w;
  }
};

template <typename T>
struct Io16 {
  static constexpr int kVec = 8;  // 16-byte loads
  __device__ static float cvt(uint32_t bits) {
    if constexpr (std::is_same_v<T, at::BFloat16>) return bf16_bits_to_float(bits);
    else return half_bits_to_float(bits);
  }
  __device__ static float load1(const T* p) {
    return cvt(__ldg(reinterpret_cast<const unsigned short*>(p)));
  }
  __device__ static void load_vec(const T* p, float (&v)[kVec]) {
    const uint4 a = __ldg(reinterpret_cast<const uint4*>(p));
    const uint32_t w[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {  // little endian: element 2i is the low half
      v[2 * i] = cvt(w[i] & 0xffffu);
      v[2 * i + 1] = cvt(w[i] >> 16);
    }
  }
};

template <>
struct Io<at::BFloat16> : Io16<at::BFloat16> {};
template <>
struct Io<at::Half> : Io16<at::Half> {};

// A row split into segments so that the loop trip count is block-uniform (the warp
// intrinsics below need whole warps): segment 0 is the unaligned head, 1..nchunks are
// 16-byte aligned vectors, nchunks+1 is the tail; segments past that are empty.
template <typename T>
struct Row {
  static constexpr int kVec = Io<T>::kVec;
  const T* p;
  int n, head, nchunks;

  __device__ Row(const T* p_, int n_) : p(p_), n(n_) {
    const int mis = static_cast<int>(reinterpret_cast<uintptr_t>(p_) & 15u);
    head = min(mis ? (16 - mis) / static_cast<int>(sizeof(T)) : 0, n_);
    nchunks = (n_ - head) / kVec;
  }
  __device__ int nseg() const { return nchunks + 2; }

  // Loads segment s into v (missing elements read as -inf); returns its length.
  __device__ int load(int s, float (&v)[kVec], int& start) const {
    if (s >= 1 && s <= nchunks) {
      start = head + (s - 1) * kVec;
      Io<T>::load_vec(p + start, v);
      return kVec;
    }
    int len = 0;
    start = n;
    if (s == 0) {
      start = 0;
      len = head;
    } else if (s == nchunks + 1) {
      start = head + nchunks * kVec;
      len = n - start;
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] = j < len ? Io<T>::load1(p + start + j) : -INFINITY;
    return len;
  }
};

// Calls f(index, x, valid) for every element; every thread calls it the same number of
// times, in increasing index order per thread.
template <typename T, typename F>
__device__ __forceinline__ void for_each(const Row<T>& row, F&& f) {
  constexpr int kVec = Row<T>::kVec;
  for (int s0 = 0; s0 < row.nseg(); s0 += kBlock) {
    float v[kVec];
    int start;
    const int len = row.load(s0 + static_cast<int>(threadIdx.x), v, start);
#pragma unroll
    for (int j = 0; j < kVec; ++j) f(start + j, v[j], j < len);
  }
}

// ---------------------------------------------------------------- numerics

__device__ __forceinline__ bool is_nan(float z) {
  // Bit test: stays a NaN test under fast-math flags.
  return (__float_as_uint(z) & 0x7fffffffu) > 0x7f800000u;
}

struct Scale {
  float temperature;
  bool greedy;
  // z = x / T in IEEE fp32 (__fdiv_rn even under --use_fast_math: the kept set must match
  // the reference bit for bit at ties); greedy rows keep the raw x. NaN counts as -inf.
  __device__ __forceinline__ float operator()(float x) const {
    const float z = greedy ? x : __fdiv_rn(x, temperature);
    return is_nan(z) ? -INFINITY : z;
  }
};

// Order-preserving key (_order_key): a < b <=> key(a) < key(b) for non-NaN floats; -0.0
// and +0.0 share one key so that they compare equal, as floats do.
__device__ __forceinline__ uint32_t order_key(float z) {
  uint32_t b = __float_as_uint(z);
  if (b == 0x80000000u) b = 0u;
  return b ^ (static_cast<uint32_t>(static_cast<int32_t>(b) >> 31) | 0x80000000u);
}

// Unnormalised probability of z given the row max m. With m = +inf the softmax limit puts
// all mass, equally, on the +inf tokens (the reference yields NaN there).
__device__ __forceinline__ float weight(float z, float m) {
  if (m == INFINITY) return z == INFINITY ? 1.f : 0.f;
  return expf(z - m);
}

// Is key inside the bucket chosen by the previous (higher) digits?
__device__ __forceinline__ bool in_prefix(uint32_t key, uint32_t prefix, int shift) {
  return shift == 24 || ((key ^ prefix) >> (shift + 8)) == 0u;
}

__device__ __forceinline__ unsigned lane_id() { return threadIdx.x & 31u; }

// Inclusive prefix sum across the warp (Hillis-Steele over shuffles).
template <typename T>
__device__ __forceinline__ T warp_inclusive_sum(T v, unsigned lane) {
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T y = __shfl_up_sync(kFull, v, o);
    if (lane >= static_cast<unsigned>(o)) v += y;
  }
  return v;
}

// Sum of x over the lanes in `peers` (lanes with the same digit), returned in the lowest
// lane of each group: a log-depth tree over the group, so the order is fixed and the
// result is deterministic (a float atomicAdd on shared memory is a CAS loop whose order
// depends on timing). All 32 lanes must call it.
__device__ __forceinline__ float reduce_peers(unsigned peers, float x) {
  const unsigned lane = lane_id();
  unsigned rank = __popc(peers & ((1u << lane) - 1u));
  unsigned higher = peers & ~((2u << lane) - 1u);  // peers above this lane still unsummed
  while (__any_sync(kFull, higher != 0u)) {
    const int next = __ffs(higher) - 1;
    const float other = __shfl_sync(kFull, x, next < 0 ? static_cast<int>(lane) : next);
    if (next >= 0) x += other;
    // Lanes whose rank has this bit set were just absorbed by the lane below them.
    higher &= ~__ballot_sync(kFull, rank & 1u);
    rank >>= 1;
  }
  return x;
}

// ---------------------------------------------------------------- shared state

struct SelCount {
  int digit;  // -1: the running count never reached k
  int above;  // tokens in higher buckets
  int count;  // tokens in the chosen bucket
};

struct SelMass {
  int digit;      // -1: no bucket holds mass (cannot happen; defensive)
  int count;      // tokens in the chosen bucket
  double before;  // mass of every contributing token above the bucket
  double after;   // ... including the bucket
};

struct Shared {
  // Per-warp mass histograms: no atomics, so a fixed summation order. In double: fp32 bins
  // that sum ~V/32 weights each drift by ~1e-6 relative, which in a CPU emulation moved the
  // top-p cut by one token against the reference in ~1% of rows (V = 32000, p = 0.99).
  double warp_bins[kWarps][kBins];
  double bins[kBins];
  unsigned counts[kBins];
  double dscratch[kWarps];
  double dscratch2[kWarps];
  float fscratch[kWarps];
  float fscratch2[kWarps];
  float fscratch3[kWarps];
  int iscratch[kWarps];
  int iscratch2[kWarps];
  int iscratch3[kWarps];
  // broadcasts
  float m, s_all, xm;
  int arg, nfin, xarg;
  SelCount sel_count;
  SelMass sel_mass;
  double target;
  double tile_total;
  int hit, last_kept;
  double total;
};

// ---------------------------------------------------------------- block reductions

struct MaxSum {
  float m;   // max z (> -inf only)
  float s;   // sum of weight(z, m)
  int arg;   // first index of m
  int n;     // number of z > -inf
  float xm;  // max of the raw x (NaN as -inf)
  int xarg;  // first index of xm

  __device__ void add(const MaxSum& o) {
    const float mn = fmaxf(m, o.m);
    float sn = 0.f;
    if (s > 0.f) sn += s * weight(m, mn);
    if (o.s > 0.f) sn += o.s * weight(o.m, mn);
    if (o.m > m || (o.m == m && o.arg < arg)) arg = o.arg;
    if (o.xm > xm || (o.xm == xm && o.xarg < xarg)) {
      xm = o.xm;
      xarg = o.xarg;
    }
    m = mn;
    s = sn;
    n += o.n;
  }
  __device__ MaxSum shfl_xor(int mask) const {
    return {__shfl_xor_sync(kFull, m, mask),  __shfl_xor_sync(kFull, s, mask),
            __shfl_xor_sync(kFull, arg, mask), __shfl_xor_sync(kFull, n, mask),
            __shfl_xor_sync(kFull, xm, mask), __shfl_xor_sync(kFull, xarg, mask)};
  }
};

__device__ void block_reduce_maxsum(MaxSum v, Shared& sh) {
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v.add(v.shfl_xor(o));
  if (lane_id() == 0) {
    sh.fscratch2[warp] = v.m;
    sh.fscratch[warp] = v.s;
    sh.iscratch[warp] = v.arg;
    sh.iscratch2[warp] = v.n;
    sh.fscratch3[warp] = v.xm;
    sh.iscratch3[warp] = v.xarg;
  }
  __syncthreads();
  if (warp == 0) {
    const int l = lane_id();
    v = {sh.fscratch2[l], sh.fscratch[l], sh.iscratch[l], sh.iscratch2[l], sh.fscratch3[l], sh.iscratch3[l]};
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v.add(v.shfl_xor(o));
    if (l == 0) {
      sh.m = v.m;
      sh.s_all = v.s;
      sh.arg = v.arg;
      sh.nfin = v.n;
      sh.xm = v.xm;
      sh.xarg = v.xarg;
    }
  }
  __syncthreads();
}

// Block sum in a fixed order (deterministic), in double.
__device__ double block_sum(double v, Shared& sh) {
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  if (lane_id() == 0) sh.dscratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = sh.dscratch[lane_id()];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    if (lane_id() == 0) sh.total = v;
  }
  __syncthreads();
  return sh.total;
}

// ---------------------------------------------------------------- bucket selection (warp 0)
// Lane l owns the 8 buckets 255-8l ... 248-8l: the scan runs from the largest digit down.

// First bucket (from the top) at which the running count reaches k_rem.
__device__ void select_count(Shared& sh, int k_rem) {
  const int lane = lane_id();
  int c[8];
  int local = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    c[i] = static_cast<int>(sh.counts[kBins - 1 - 8 * lane - i]);
    local += c[i];
  }
  const int incl = warp_inclusive_sum(local, lane);
  const unsigned hit = __ballot_sync(kFull, incl >= k_rem);
  if (hit == 0u) {
    if (lane == 0) sh.sel_count = {-1, 0, 0};
    return;
  }
  if (lane == __ffs(hit) - 1) {
    int cum = incl - local;
    for (int i = 0; i < 8; ++i) {
      if (cum + c[i] >= k_rem) {
        sh.sel_count = {kBins - 1 - 8 * lane - i, cum, c[i]};
        break;
      }
      cum += c[i];
    }
  }
}

// First bucket (from the top) at which the running mass reaches the target, where the
// target is p * (total mass) at the first level. The running sums are defined so that
// consecutive values come from the same double additions (lane partials chained serially
// by lane 0), hence they are monotone and the choice is consistent: the chosen bucket has
// positive mass, `before` < target <= `after`. If rounding leaves the total short of the
// target, the reference keeps down to the smallest positive-mass token: take the lowest
// bucket with mass.
__device__ void select_mass(Shared& sh, double before, float top_p, bool first_level) {
  const int lane = lane_id();
  const double* s = &sh.bins[kBins - 1 - 8 * lane];  // s[-i]: bucket 255 - 8 lane - i
  double local = 0.0;
#pragma unroll
  for (int i = 0; i < 8; ++i) local += s[-i];
  sh.dscratch[lane] = local;
  __syncwarp();
  if (lane == 0) {
    double e = before;
    for (int l = 0; l < 32; ++l) {
      const double part = sh.dscratch[l];
      sh.dscratch[l] = e;
      e += part;
    }
    // A target > 0 always lands in a bucket with mass (top_p <= 0 keeps just the max).
    if (first_level) sh.target = fmax(static_cast<double>(top_p) * e, 1e-300);
  }
  __syncwarp();
  const double base = sh.dscratch[lane];
  const double target = sh.target;
  // Running sums: base + (s[0] + ... + s[i]), the inner sum accumulated exactly as `local`
  // was, so the last one equals the next lane's base bit for bit.
  int pick = -1, last_pos = -1;
  double b_pick = 0.0, a_pick = 0.0, b_pos = 0.0, a_pos = 0.0;
  double acc = 0.0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const double b = i == 0 ? base : base + acc;
    acc += s[-i];
    const double a = base + acc;
    if (pick < 0 && a >= target) {
      pick = i;
      b_pick = b;
      a_pick = a;
    }
    if (s[-i] > 0.0) {
      last_pos = i;
      b_pos = b;
      a_pos = a;
    }
  }
  unsigned hit = __ballot_sync(kFull, pick >= 0);
  int winner = __ffs(hit) - 1;
  if (hit == 0u) {
    // Rounding left the total short of the target: the lowest bucket with mass.
    pick = last_pos;
    b_pick = b_pos;
    a_pick = a_pos;
    hit = __ballot_sync(kFull, pick >= 0);
    winner = 31 - __clz(hit);  // -1 when hit == 0
  }
  if (hit == 0u) {
    if (lane == 0) sh.sel_mass = {-1, 0, 0.0, 0.0};
  } else if (lane == winner) {
    const int digit = kBins - 1 - 8 * lane - pick;
    sh.sel_mass = {digit, static_cast<int>(sh.counts[digit]), b_pick, a_pick};
  }
}

// ---------------------------------------------------------------- row primitives
// Each matches a Triton primitive of mta_kernels/sampling/triton_kernels.py (named in its
// comment); all threads of the block call them (they synchronise it).

struct RowParams {
  const float* temperature;
  const int64_t* top_k;
  const float* top_p;
  const float* min_p;
  const float* uniform;  // sample only
};

// Pass 1 (_row_max_argmax): max z, first argmax, sum of exp(z - max) and the number of
// z > -inf, into sh.m, sh.arg, sh.s_all, sh.nfin; the raw max and first argmax into sh.xm,
// sh.xarg.
template <typename T>
__device__ __forceinline__ void row_max_sum(const Row<T>& row, const Scale& sc, Shared& sh) {
  MaxSum acc{-INFINITY, 0.f, INT_MAX, 0, -INFINITY, INT_MAX};
  for_each(row, [&](int i, float x, bool ok) {
    if (ok && x > acc.xm) {  // NaN never compares greater
      acc.xm = x;
      acc.xarg = i;
    }
    const float z = sc(x);
    if (!ok || !(z > -INFINITY)) return;
    ++acc.n;
    if (z > acc.m) {  // online softmax: rescale the running sum to the new max
      acc.s = (acc.s > 0.f ? acc.s * weight(acc.m, z) : 0.f) + 1.f;
      acc.m = z;
      acc.arg = i;
    } else {
      acc.s += weight(z, acc.m);
    }
  });
  block_reduce_maxsum(acc, sh);
}

// Top-k (_radix_select by count): the key of the k-th largest z, keeping ties; kFloorKey
// when top-k cannot bind. Tokens below `lo` are not counted; `t` is the min-p key (a cut
// above a whole bucket ends the walk early unless top-p still needs the exact key).
template <typename T>
__device__ __forceinline__ uint32_t radix_select_count(const Row<T>& row, const Scale& sc, Shared& sh, int64_t k,
                                                       uint32_t lo, uint32_t t, bool p_on) {
  const int warp = threadIdx.x / 32;
  uint32_t prefix = 0u;
  int k_rem = static_cast<int>(k);
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < kBins; i += kBlock) sh.counts[i] = 0u;
    __syncthreads();
    for_each(row, [&](int, float x, bool ok) {
      const uint32_t key = order_key(sc(x));
      // atomicAdd(.., 1) compiles to a warp-aggregated shared increment (ATOMS.POPC.INC).
      if (ok && key >= lo && in_prefix(key, prefix, shift)) atomicAdd(&sh.counts[(key >> shift) & 0xffu], 1u);
    });
    __syncthreads();
    if (warp == 0) select_count(sh, k_rem);
    __syncthreads();
    const SelCount sel = sh.sel_count;
    if (sel.digit < 0) break;  // the k-th largest is below t: top-k cannot bind
    const uint32_t lo_key = prefix | (static_cast<uint32_t>(sel.digit) << shift);
    const uint32_t hi_key = lo_key | ((1u << shift) - 1u);
    k_rem -= sel.above;
    if (sel.count == k_rem || shift == 0) return lo_key;  // the whole bucket is kept
    if (!p_on && hi_key < t) break;                       // min-p cuts above the whole bucket
    prefix = lo_key;
  }
  return kFloorKey;
}

// The key threshold of one row and, when known without another pass, the kept mass.
struct Cut {
  uint32_t key;     // keep z iff order_key(z) >= key
  bool mass_known;  // mass below is exact for the kept set
  double mass;
};

// Top-p (_radix_select by mass) over what top-k kept (keys >= t_k): the smallest value
// whose strictly-larger mass is < p * Z; kFloorKey when top-p cannot bind. `t` is the min-p
// key; `cut` gets the kept mass when the walk ends on it.
template <typename T>
__device__ __forceinline__ uint32_t radix_select_mass(const Row<T>& row, const Scale& sc, Shared& sh, float m,
                                                      uint32_t t_k, uint32_t t, const float* top_p, Cut& cut) {
  const int warp = threadIdx.x / 32;
  uint32_t prefix = 0u;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < kWarps * kBins; i += kBlock) (&sh.warp_bins[0][0])[i] = 0.0;
    for (int i = threadIdx.x; i < kBins; i += kBlock) sh.counts[i] = 0u;
    __syncthreads();
    // The first level needs every top-k survivor for Z; below it, tokens under t
    // (min-p) cannot move a cut that matters, so they are skipped.
    const uint32_t lo = shift == 24 ? t_k : max(t_k, t);
    double* my_bins = sh.warp_bins[warp];
    for_each(row, [&](int, float x, bool ok) {
      const float z = sc(x);
      const uint32_t key = order_key(z);
      const bool in = ok && key >= lo && in_prefix(key, prefix, shift);
      if (!__any_sync(kFull, in)) return;  // warp-uniform
      const unsigned digit = in ? (key >> shift) & 0xffu : kNoDigit;
      const unsigned peers = __match_any_sync(kFull, digit);
      const float s = reduce_peers(peers, in ? weight(z, m) : 0.f);
      if (in && lane_id() == static_cast<unsigned>(__ffs(peers) - 1)) {
        atomicAdd(&sh.counts[digit], static_cast<unsigned>(__popc(peers)));
        my_bins[digit] += s;  // group leaders of one warp hold distinct digits
      }
      __syncwarp();  // orders this warp's bin updates across iterations
    });
    __syncthreads();
    for (int d = threadIdx.x; d < kBins; d += kBlock) {
      double s = 0.0;
      for (int w = 0; w < kWarps; ++w) s += sh.warp_bins[w][d];
      sh.bins[d] = s;
    }
    __syncthreads();
    // `before` and p are re-read rather than kept in registers through the row pass.
    if (warp == 0) select_mass(sh, shift == 24 ? 0.0 : sh.sel_mass.before, *top_p, shift == 24);
    __syncthreads();
    const SelMass sel = sh.sel_mass;
    if (sel.digit < 0) break;
    const uint32_t lo_key = prefix | (static_cast<uint32_t>(sel.digit) << shift);
    const uint32_t hi_key = lo_key | ((1u << shift) - 1u);
    if (sel.count == 1 || shift == 0) {
      // Kept mass is exactly `after` unless min-p cuts deeper than top-k/top-p.
      if (t <= max(t_k, lo_key)) {
        cut.mass_known = true;
        cut.mass = sel.after;
      }
      return lo_key;
    }
    if (hi_key < t) break;  // min-p cuts above the whole bucket
    prefix = lo_key;
  }
  return kFloorKey;
}

// _row_cut: the kept set {order_key(z) >= key} of a non-greedy row with a finite logit,
// after row_max_sum: min-p in closed form, then top-k and top-p by radix select.
template <typename T>
__device__ __forceinline__ Cut row_cut(const Row<T>& row, const Scale& sc, Shared& sh, const RowParams& prm,
                                       int64_t b) {
  const float m = sh.m;
  const int64_t k = prm.top_k[b];
  const float p = prm.top_p[b];
  const float mp = prm.min_p[b];
  const bool k_on = k > 0 && k < sh.nfin;  // k >= number of finite values keeps them all
  const bool p_on = p < 1.f;               // false for NaN too
  Cut cut{kFloorKey, false, 0.0};
  uint32_t t = kFloorKey;
  if (mp > 0.f) {  // false for NaN too
    // m + log(min_p) in fp32 like the reference (min_p clamped to 1 so that the max always
    // stays); the log in double is immune to fast-math flags.
    const float lg = static_cast<float>(log(static_cast<double>(fminf(fmaxf(mp, 1e-38f), 1.f))));
    t = max(t, order_key(__fadd_rn(m, lg)));
  }
  // Without top-p the exact t_k matters only above t, so tokens below t are not counted.
  const uint32_t t_k = k_on ? radix_select_count(row, sc, sh, k, p_on ? kFloorKey : t, t, p_on) : kFloorKey;
  const uint32_t t_p = p_on ? radix_select_mass(row, sc, sh, m, t_k, t, prm.top_p + b, cut) : kFloorKey;
  if (t == kFloorKey && t_k == kFloorKey && t_p == kFloorKey) {
    cut.mass_known = true;  // nothing filtered: pass 1 already summed every weight
    cut.mass = sh.s_all;
  }
  cut.key = max(t, max(t_k, t_p));
  return cut;
}

// filter_logits' output row: z where kept (greedy rows: the first argmax only), else -inf.
template <typename T>
__device__ __forceinline__ void write_filtered_row(const Row<T>& row, const Scale& sc, Shared& sh, uint32_t key,
                                                   float* __restrict__ orow) {
  constexpr int kVec = Row<T>::kVec;
  const bool vec_ok = (reinterpret_cast<uintptr_t>(orow + row.head) & 15u) == 0u;
  const int greedy_idx = sc.greedy && sh.xm > -INFINITY ? sh.xarg : -1;  // read late: fewer live registers
  for (int s0 = 0; s0 < row.nseg(); s0 += kBlock) {
    float v[kVec];
    int start;
    const int s = s0 + static_cast<int>(threadIdx.x);
    const int len = row.load(s, v, start);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const float z = sc(v[j]);
      const bool keep = sc.greedy ? start + j == greedy_idx : order_key(z) >= key;
      v[j] = keep ? z : -INFINITY;
    }
    if (len == kVec && s >= 1 && vec_ok) {
#pragma unroll
      for (int j = 0; j < kVec; j += 4)
        *reinterpret_cast<float4*>(orow + start + j) = make_float4(v[j], v[j + 1], v[j + 2], v[j + 3]);
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j)
        if (j < len) orow[start + j] = v[j];
    }
  }
}

// Sum of the kept weights, in double, when row_cut could not know it.
template <typename T>
__device__ __forceinline__ double kept_mass(const Row<T>& row, const Scale& sc, Shared& sh, uint32_t key, float m) {
  float part = 0.f;
  for_each(row, [&](int, float x, bool ok) {
    const float z = sc(x);
    if (ok && order_key(z) >= key) part += weight(z, m);
  });
  return block_sum(part, sh);
}

// _draw: inverse-CDF draw in vocabulary order among the kept tokens: the first whose
// running mass exceeds u * Z (a block-wide prefix-sum scan that stops at the drawn tile).
// Rounding can leave u * Z at or past the end of the running sum: the reference then takes
// the last kept token. u is clamped to >= 0 (NaN -> 0) so the pick is always kept.
template <typename T>
__device__ __forceinline__ int inverse_cdf_draw(const Row<T>& row, const Scale& sc, Shared& sh, uint32_t key, float m,
                                                double z_total, float u) {
  constexpr int kVec = Row<T>::kVec;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const double target = static_cast<double>(fmaxf(u, 0.f)) * z_total;
  if (tid == 0) {
    sh.hit = INT_MAX;
    sh.last_kept = -1;
  }
  __syncthreads();
  const int lane = lane_id();
  double base = 0.0;  // kept mass before this tile
  int last = -1;
  for (int s0 = 0; s0 < row.nseg(); s0 += kBlock) {
    float v[kVec], w[kVec];
    int start;
    row.load(s0 + tid, v, start);  // missing elements read as -inf: weight 0, not kept
    float mine = 0.f;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const float z = sc(v[j]);
      const bool keep = order_key(z) >= key;
      w[j] = keep ? weight(z, m) : 0.f;
      if (keep) last = start + j;
      mine += w[j];
    }
    // Block exclusive prefix sum of the per-thread sums, in double.
    const double incl = warp_inclusive_sum(static_cast<double>(mine), lane);
    double excl = __shfl_up_sync(kFull, incl, 1);
    if (lane == 0) excl = 0.0;
    if (lane == 31) sh.dscratch[warp] = incl;
    __syncthreads();
    if (warp == 0) {
      const double wt = sh.dscratch[lane];
      const double wi = warp_inclusive_sum(static_cast<double>(wt), lane);
      const double we = __shfl_up_sync(kFull, wi, 1);
      sh.dscratch2[lane] = lane == 0 ? 0.0 : we;
      if (lane == 31) sh.tile_total = wi;
    }
    __syncthreads();
    const double thread_base = base + (sh.dscratch2[warp] + excl);
    float run = 0.f;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      run += w[j];
      // First position whose running mass exceeds u * Z (w > 0: only a kept token, even
      // where rounding makes the sums across threads not quite monotone).
      if (w[j] > 0.f && thread_base + static_cast<double>(run) > target) {
        atomicMin(&sh.hit, start + j);
        break;
      }
    }
    base += sh.tile_total;
    __syncthreads();
    if (sh.hit != INT_MAX) break;  // block-uniform
  }
  if (sh.hit == INT_MAX) {
    atomicMax(&sh.last_kept, last);
    __syncthreads();
  }
  return sh.hit != INT_MAX ? sh.hit : sh.last_kept;
}

// _logprob: log p of the drawn token under the kept distribution.
__device__ __forceinline__ float token_logprob(float z, float m, double z_total) {
  const double lz = log(z_total);
  const double lp = m == INFINITY ? -lz : static_cast<double>(z) - static_cast<double>(m) - lz;
  return static_cast<float>(lp);
}

// ---------------------------------------------------------------- the kernel

template <typename T, bool kSample>
__global__ void __launch_bounds__(kBlock, 1)
    sampling_kernel(const T* __restrict__ logits, int V, RowParams prm,
                    float* __restrict__ out,          // filter: [B, V]
                    int64_t* __restrict__ tokens,     // sample: [B]
                    float* __restrict__ logprobs) {   // sample: [B]
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Shared& sh = *reinterpret_cast<Shared*>(smem_raw);  // ~69 KB: dynamic, opted in per device
  const int64_t b = blockIdx.x;
  const Row<T> row(logits + b * V, V);
  const float temperature = prm.temperature[b];
  Scale sc{temperature, !(temperature > 0.f)};

  row_max_sum(row, sc, sh);
  // A finite row max that / T overflows: greedy, as the limit T -> 0+ is (block-uniform:
  // every thread reads the same broadcast). Greedy rows read the raw logits.
  if (!sc.greedy && isfinite(sh.xm) && !isfinite(__fdiv_rn(sh.xm, temperature))) sc.greedy = true;
  const bool has = sc.greedy ? sh.xm > -INFINITY : sh.nfin > 0;
  // Rows without a finite logit keep nothing; greedy rows keep their argmax.
  Cut cut{0xffffffffu, false, 0.0};
  if (has && !sc.greedy) cut = row_cut(row, sc, sh, prm, b);

  if constexpr (!kSample) {
    write_filtered_row(row, sc, sh, cut.key, out + b * V);
  } else {
    if (!has || sc.greedy) {  // block-uniform
      if (threadIdx.x == 0) {
        tokens[b] = has ? sh.xarg : -1;
        logprobs[b] = has ? 0.f : -INFINITY;
      }
      return;
    }
    const float m = sh.m;
    const double z_total = cut.mass_known ? cut.mass : kept_mass(row, sc, sh, cut.key, m);
    const int tok = inverse_cdf_draw(row, sc, sh, cut.key, m, z_total, prm.uniform[b]);
    if (threadIdx.x == 0) {
      tokens[b] = tok;
      logprobs[b] = token_logprob(sc(Io<T>::load1(row.p + tok)), m, z_total);
    }
  }
}

// ---------------------------------------------------------------- host side

void check_param(const at::Tensor& t, const char* name, at::ScalarType dtype, const at::Tensor& logits) {
  TORCH_CHECK(t.device() == logits.device(), name, " must be on ", logits.device(), ", got ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == logits.size(0), name, " must have shape [", logits.size(0),
              "], got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

void check_inputs(const at::Tensor& logits, const at::Tensor& temperature, const at::Tensor& top_k,
                  const at::Tensor& top_p, const at::Tensor& min_p) {
  TORCH_CHECK(logits.is_cuda(), "logits must be a CUDA tensor");
  TORCH_CHECK(logits.dim() == 2, "logits must have shape [B, V], got ", logits.sizes());
  TORCH_CHECK(logits.is_contiguous(), "logits must be contiguous");
  const auto dt = logits.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf,
              "logits must be float32, bfloat16 or float16, got ", dt);
  // In-row indices are int; rows are offset in int64.
  TORCH_CHECK(logits.size(1) <= INT_MAX - 16, "vocabulary too large: ", logits.size(1));
  TORCH_CHECK(logits.size(0) <= INT_MAX, "batch too large: ", logits.size(0));
  check_param(temperature, "temperature", at::kFloat, logits);
  check_param(top_k, "top_k", at::kLong, logits);
  check_param(top_p, "top_p", at::kFloat, logits);
  check_param(min_p, "min_p", at::kFloat, logits);
}

constexpr int kSmem = static_cast<int>(sizeof(Shared));

// The kernels need more shared memory than the default 48 KB: opt in once per kernel and
// device (a function attribute, set in each device's context), not at every launch.
template <typename T, bool kSample>
void opt_in_shared_memory(int device) {
  static std::once_flag done[C10_COMPILE_TIME_MAX_GPUS];
  TORCH_CHECK(device >= 0 && device < C10_COMPILE_TIME_MAX_GPUS, "unexpected CUDA device index ", device);
  std::call_once(done[device], [device] {  // a throw leaves the flag unset: the next launch checks again
    int optin = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    TORCH_CHECK(optin >= kSmem, "mta sampling kernels need ", kSmem,
                " bytes of shared memory per block; this GPU allows ", optin);
    // Not a stream operation: allowed while a CUDA graph is being captured.
    C10_CUDA_CHECK(
        cudaFuncSetAttribute(&sampling_kernel<T, kSample>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  });
}

template <bool kSample>
void launch(const at::Tensor& logits, const RowParams& prm, float* out, int64_t* tokens, float* logprobs) {
  // Exactly the three logits dtypes (AT_DISPATCH_FLOATING_TYPES_AND2 would also build a
  // double kernel, which check_inputs rejects).
  AT_DISPATCH_V2(
      logits.scalar_type(), kSample ? "sample_cuda" : "filter_logits_cuda", AT_WRAP([&] {
        opt_in_shared_memory<scalar_t, kSample>(logits.get_device());
        const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
        sampling_kernel<scalar_t, kSample><<<static_cast<unsigned>(logits.size(0)), kBlock, kSmem, stream>>>(
            logits.data_ptr<scalar_t>(), static_cast<int>(logits.size(1)), prm, out, tokens, logprobs);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }),
      at::kFloat, at::kHalf, at::kBFloat16);
}

}  // namespace

at::Tensor filter_logits_cuda(const at::Tensor& logits, const at::Tensor& temperature,
                              const at::Tensor& top_k, const at::Tensor& top_p,
                              const at::Tensor& min_p) {
  check_inputs(logits, temperature, top_k, top_p, min_p);
  const c10::cuda::CUDAGuard device_guard(logits.device());
  auto out = at::empty(logits.sizes(), logits.options().dtype(at::kFloat));
  if (logits.size(0) == 0 || logits.size(1) == 0) return out;
  const RowParams prm{temperature.data_ptr<float>(), top_k.data_ptr<int64_t>(),
                      top_p.data_ptr<float>(), min_p.data_ptr<float>(), nullptr};
  launch<false>(logits, prm, out.data_ptr<float>(), nullptr, nullptr);
  return out;
}

std::tuple<at::Tensor, at::Tensor> sample_cuda(const at::Tensor& logits,
                                               const at::Tensor& temperature,
                                               const at::Tensor& top_k, const at::Tensor& top_p,
                                               const at::Tensor& min_p,
                                               const at::Tensor& uniform) {
  check_inputs(logits, temperature, top_k, top_p, min_p);
  check_param(uniform, "uniform", at::kFloat, logits);
  const c10::cuda::CUDAGuard device_guard(logits.device());
  const int64_t B = logits.size(0);
  auto tokens = at::empty({B}, logits.options().dtype(at::kLong));
  auto logprobs = at::empty({B}, logits.options().dtype(at::kFloat));
  if (B == 0) return {tokens, logprobs};
  if (logits.size(1) == 0) {  // unreachable after validation; same answer as the reference
    tokens.fill_(-1);
    logprobs.fill_(-std::numeric_limits<float>::infinity());
    return {tokens, logprobs};
  }
  const RowParams prm{temperature.data_ptr<float>(), top_k.data_ptr<int64_t>(),
                      top_p.data_ptr<float>(), min_p.data_ptr<float>(), uniform.data_ptr<float>()};
  launch<true>(logits, prm, nullptr, tokens.data_ptr<int64_t>(), logprobs.data_ptr<float>());
  return {tokens, logprobs};
}

}  // namespace mta
