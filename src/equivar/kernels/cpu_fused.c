/* The channel-wise tensor-product convolution, fused, for CPUs (see cpu_fused.py).
 *
 * Every function evaluates one partial derivative of the 4-linear form
 *     T(g, x, y, w) = sum_e sum_t c_t g[r(e), o_t + u] w[e, w_t + u] x[s(e), x_t + u] y[e, y_t]
 * (sum over edges e, Clebsch-Gordan terms t and channels u < U_t), with node features and
 * convolution outputs in the "t-layout": each e3nn block [mul, 2l+1] stored as [2l+1, mul], so
 * the channel index u is contiguous and the innermost loops vectorise. When every path has the
 * same number of channels (``uniform_u`` = 8, 16, 32, 64 or 128) that loop has a compile-time
 * length (1.4x faster than a run-time one).
 *
 * Node-indexed results walk a CSR edge list (each row written by one thread, no atomics,
 * deterministic); edge-indexed results are written per edge. No per-edge message tensor is
 * ever stored. Parallel over rows with OpenMP when compiled with -fopenmp (it then shares the
 * process's OpenMP runtime, torch's own, so torch.set_num_threads applies).
 */
#include <stdint.h>
#include <string.h>

/* Multiply-adds below which a call runs on one thread. A parallel region costs microseconds on
 * an idle machine, but on a loaded one every region waits for its slowest thread, which the
 * scheduler may have parked for a whole time slice: small graphs (a molecule, an MD step)
 * measured 17x slower with 2 threads than with 1 beside two busy processes. Work this small
 * gains nothing from threads anyway. */
#define PARALLEL_MIN_WORK (1 << 17)

/* run BODY with N_U a constant when uniform_u is one of the common channel counts */
#define SPECIALISE(BODY, T)                                                                  \
    switch (uniform_u) {                                                                     \
    case 8: { BODY(T, 8) } break;                                                            \
    case 16: { BODY(T, 16) } break;                                                          \
    case 32: { BODY(T, 32) } break;                                                          \
    case 64: { BODY(T, 64) } break;                                                          \
    case 128: { BODY(T, 128) } break;                                                        \
    default: { BODY(T, t_u[t]) } break;                                                      \
    }

/* out[r, dst_t + u] = sum over the CSR row r of c_t y[e, y_t] w[e, w_t + u] src[nbr, src_t + u]
 * (the convolution: src = x, dst = output columns; d/dx: src = g, dst = input columns) */
#define NODE_BODY(T, N_U)                                                                    \
    const int parallel = (int64_t)rowptr[n_rows] * n_terms * (uniform_u ? uniform_u : 16)   \
                         > PARALLEL_MIN_WORK;                                                \
    _Pragma("omp parallel for schedule(dynamic, 8) if(parallel)")                            \
    for (int64_t r = 0; r < n_rows; ++r) {                                                   \
        T* restrict acc = out + r * out_dim;                                                 \
        memset(acc, 0, (size_t)out_dim * sizeof(T));                                         \
        for (int32_t p = rowptr[r]; p < rowptr[r + 1]; ++p) {                                \
            const int64_t e = eid[p], s = nbr[p];                                            \
            const T* restrict xs = src + s * src_dim;                                        \
            const T* restrict ye = y + e * sh_dim;                                           \
            const T* restrict we = w + e * wn;                                               \
            for (int64_t t = 0; t < n_terms; ++t) {                                          \
                const T c = t_c[t] * ye[t_y[t]];                                             \
                const T* restrict xv = xs + t_src[t];                                        \
                const T* restrict wv = we + t_w[t];                                          \
                T* restrict ov = acc + t_dst[t];                                             \
                const int32_t n_u = N_U;                                                     \
                _Pragma("omp simd")                                                          \
                for (int32_t u = 0; u < n_u; ++u) ov[u] += c * wv[u] * xv[u];                \
            }                                                                                \
        }                                                                                    \
    }

/* per edge: gw[e, w_t + u] = sum_t c_t y[e, y_t] g[r, o_t + u] x[s, x_t + u]  (want_w) and
 * gy[e, y_t] = sum_t c_t sum_u g[r, o_t + u] w[e, w_t + u] x[s, x_t + u]  (want_y) */
#define EDGE_BODY(T, N_U)                                                                    \
    const int parallel = n_edges * n_terms * (uniform_u ? uniform_u : 16) > PARALLEL_MIN_WORK; \
    _Pragma("omp parallel for schedule(static) if(parallel)")                                \
    for (int64_t e = 0; e < n_edges; ++e) {                                                  \
        const T* restrict gr = g + (int64_t)receiver[e] * out_dim;                           \
        const T* restrict xs = x + (int64_t)sender[e] * in_dim;                              \
        T* restrict gye = want_y ? gy + e * sh_dim : 0;                                      \
        T* restrict gwe = want_w ? gw + e * wn : 0;                                          \
        const T* restrict ye = want_w ? y + e * sh_dim : 0;                                  \
        const T* restrict we = want_y ? w + e * wn : 0;                                      \
        if (want_y) memset(gye, 0, (size_t)sh_dim * sizeof(T));                              \
        if (want_w) memset(gwe, 0, (size_t)wn * sizeof(T));                                  \
        for (int64_t t = 0; t < n_terms; ++t) {                                              \
            const T* restrict gv = gr + t_o[t];                                              \
            const T* restrict xv = xs + t_x[t];                                              \
            const int32_t n_u = N_U;                                                         \
            if (want_w) {                                                                    \
                const T c = t_c[t] * ye[t_y[t]];                                             \
                T* restrict ov = gwe + t_w[t];                                               \
                _Pragma("omp simd")                                                          \
                for (int32_t u = 0; u < n_u; ++u) ov[u] += c * gv[u] * xv[u];                \
            }                                                                                \
            if (want_y) {                                                                    \
                const T* restrict wv = we + t_w[t];                                          \
                T sum = 0;                                                                   \
                _Pragma("omp simd reduction(+:sum)")                                         \
                for (int32_t u = 0; u < n_u; ++u) sum += gv[u] * wv[u] * xv[u];              \
                gye[t_y[t]] += t_c[t] * sum;                                                 \
            }                                                                                \
        }                                                                                    \
    }

#define DEFINE_KERNELS(T, SUFFIX)                                                            \
void node_slot_##SUFFIX(int64_t n_rows, const int32_t* rowptr, const int32_t* eid,           \
                        const int32_t* nbr, const T* restrict src, int64_t src_dim,          \
                        const T* restrict y, int64_t sh_dim, const T* restrict w,            \
                        int64_t wn, T* restrict out, int64_t out_dim, int64_t n_terms,       \
                        const int32_t* t_src, const int32_t* t_dst, const int32_t* t_y,      \
                        const int32_t* t_w, const int32_t* t_u, const T* t_c,                \
                        int32_t uniform_u) {                                                 \
    SPECIALISE(NODE_BODY, T)                                                                 \
}                                                                                            \
void edge_slots_##SUFFIX(int64_t n_edges, const int32_t* sender, const int32_t* receiver,    \
                         const T* restrict g, int64_t out_dim, const T* restrict x,          \
                         int64_t in_dim, const T* restrict y, int64_t sh_dim,                \
                         const T* restrict w, int64_t wn, T* restrict gy, T* restrict gw,    \
                         int32_t want_y, int32_t want_w, int64_t n_terms,                    \
                         const int32_t* t_x, const int32_t* t_o, const int32_t* t_y,         \
                         const int32_t* t_w, const int32_t* t_u, const T* t_c,               \
                         int32_t uniform_u) {                                                \
    SPECIALISE(EDGE_BODY, T)                                                                 \
}                                                                                            \
/* dst[r, j] = src[r, map[j]]: a column permutation (e3nn layout <-> t-layout) */            \
void gather_cols_##SUFFIX(int64_t n_rows, const T* restrict src, int64_t src_dim,            \
                          T* restrict dst, int64_t dst_dim, const int64_t* map) {            \
    const int parallel = n_rows * dst_dim > PARALLEL_MIN_WORK;                               \
    _Pragma("omp parallel for schedule(static) if(parallel)")                                \
    for (int64_t r = 0; r < n_rows; ++r) {                                                   \
        const T* restrict a = src + r * src_dim;                                             \
        T* restrict b = dst + r * dst_dim;                                                   \
        for (int64_t j = 0; j < dst_dim; ++j) b[j] = a[map[j]];                              \
    }                                                                                        \
}

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
