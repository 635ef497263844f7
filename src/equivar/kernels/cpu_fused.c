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
 * (the convolution: src = x, dst = output columns; d/dx: src = g, dst = input columns); with
 * JVP = 1, the sum of two such forms, (y, w) and (y2, w2), in the same pass over the edges */
#define NODE_BODY_OF(T, N_U, JVP)                                                            \
    const int parallel = (int64_t)rowptr[n_rows] * n_terms * (uniform_u ? uniform_u : 16)   \
                         * (JVP ? 2 : 1) > PARALLEL_MIN_WORK;                                \
    _Pragma("omp parallel for schedule(dynamic, 8) if(parallel)")                            \
    for (int64_t r = 0; r < n_rows; ++r) {                                                   \
        T* restrict acc = out + r * out_dim;                                                 \
        memset(acc, 0, (size_t)out_dim * sizeof(T));                                         \
        for (int32_t p = rowptr[r]; p < rowptr[r + 1]; ++p) {                                \
            const int64_t e = eid[p], s = nbr[p];                                            \
            const T* restrict xs = src + s * src_dim;                                        \
            const T* restrict ye = y + e * sh_dim;                                           \
            const T* restrict we = w + e * wn;                                               \
            const T* restrict ye2 = JVP ? y2 + e * sh_dim : 0;                               \
            const T* restrict we2 = JVP ? w2 + e * wn : 0;                                   \
            for (int64_t t = 0; t < n_terms; ++t) {                                          \
                const T c = t_c[t] * ye[t_y[t]];                                             \
                const T* restrict xv = xs + t_src[t];                                        \
                const T* restrict wv = we + t_w[t];                                          \
                T* restrict ov = acc + t_dst[t];                                             \
                const int32_t n_u = N_U;                                                     \
                if (JVP) {                                                                   \
                    const T c2 = t_c[t] * ye2[t_y[t]];                                       \
                    const T* restrict wv2 = we2 + t_w[t];                                    \
                    _Pragma("omp simd")                                                      \
                    for (int32_t u = 0; u < n_u; ++u)                                        \
                        ov[u] += (c * wv[u] + c2 * wv2[u]) * xv[u];                          \
                } else {                                                                     \
                    _Pragma("omp simd")                                                      \
                    for (int32_t u = 0; u < n_u; ++u) ov[u] += c * wv[u] * xv[u];            \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }
#define NODE_BODY(T, N_U) NODE_BODY_OF(T, N_U, 0)
#define NODE_JVP_BODY(T, N_U) NODE_BODY_OF(T, N_U, 1)

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
    const T* y2 = 0;                                                                         \
    const T* w2 = 0;                                                                         \
    SPECIALISE(NODE_BODY, T)                                                                 \
}                                                                                            \
/* the node slot of T(., y, w) + T(., y2, w2): the backward of the edge pair */              \
void node_jvp_##SUFFIX(int64_t n_rows, const int32_t* rowptr, const int32_t* eid,            \
                       const int32_t* nbr, const T* restrict src, int64_t src_dim,           \
                       const T* restrict y, const T* restrict y2, int64_t sh_dim,            \
                       const T* restrict w, const T* restrict w2, int64_t wn,                \
                       T* restrict out, int64_t out_dim, int64_t n_terms,                    \
                       const int32_t* t_src, const int32_t* t_dst, const int32_t* t_y,       \
                       const int32_t* t_w, const int32_t* t_u, const T* t_c,                 \
                       int32_t uniform_u) {                                                  \
    SPECIALISE(NODE_JVP_BODY, T)                                                             \
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

/* ------------------------------------------------------------------ many-body product basis
 * One partial derivative of the 4-linear form of a channel-wise Clebsch-Gordan product
 * (cpu_product.py):
 *     P(g, b, a, w) = sum_n sum_t c_t sum_u g[n, k_t, u] b[n, i_t, u] a[n, j_t, u] w[n, p_t, u]
 * with node features g, b, a in the t-layout [n, d, mul] and per-node path weights w
 * [n, n_paths, mul] (channel innermost: the channel loop vectorises). ``slot`` (0 = g, 1 = b,
 * 2 = a, 3 = w) names the operand that is missing (NULL) and whose gradient is returned; each
 * node's row of it is summed from the terms held in cache, no [n, mul, d^2] outer product. The
 * terms come sorted by the column they write (cols[slot]): each output column is summed in
 * registers and stored once (1.25x faster than accumulating every term in memory). */
#define PRODUCT_BODY(T, N_U)                                                                 \
    const int parallel = n_rows * n_terms * n_u > PARALLEL_MIN_WORK;                         \
    const int s1 = slot == 0 ? 1 : 0, s2 = slot <= 1 ? 2 : 1, s3 = slot <= 2 ? 3 : 2;        \
    const int32_t *c1 = cols + s1 * n_terms, *c2 = cols + s2 * n_terms,                      \
                  *c3 = cols + s3 * n_terms, *cd = cols + slot * n_terms;                    \
    const int64_t out_dim = slot == 3 ? wdim : dim;                                          \
    const int64_t dims[4] = {dim, dim, dim, wdim};                                           \
    _Pragma("omp parallel for schedule(static) if(parallel)")                                \
    for (int64_t r = 0; r < n_rows; ++r) {                                                   \
        const T* restrict x1 = ops[s1] + r * dims[s1];                                       \
        const T* restrict x2 = ops[s2] + r * dims[s2];                                       \
        const T* restrict x3 = ops[s3] + r * dims[s3];                                       \
        T* restrict acc = out + r * out_dim;                                                 \
        memset(acc, 0, (size_t)out_dim * sizeof(T));                                         \
        const int64_t n_c = N_U;                                                             \
        for (int64_t t = 0; t < n_terms;) {                                                  \
            const int32_t k = cd[t];                                                         \
            T sum[N_U];                                                                      \
            _Pragma("omp simd")                                                              \
            for (int64_t u = 0; u < n_c; ++u) sum[u] = 0;                                    \
            for (; t < n_terms && cd[t] == k; ++t) {                                         \
                const T c = coef[t];                                                         \
                const T* restrict v1 = x1 + (int64_t)c1[t] * N_U;                            \
                const T* restrict v2 = x2 + (int64_t)c2[t] * N_U;                            \
                const T* restrict v3 = x3 + (int64_t)c3[t] * N_U;                            \
                _Pragma("omp simd")                                                          \
                for (int64_t u = 0; u < n_c; ++u) sum[u] += c * v1[u] * v2[u] * v3[u];       \
            }                                                                                \
            T* restrict o = acc + (int64_t)k * N_U;                                          \
            _Pragma("omp simd")                                                              \
            for (int64_t u = 0; u < n_c; ++u) o[u] = sum[u];                                 \
        }                                                                                    \
    }

#define SPECIALISE_MUL(BODY, T)                                                              \
    switch (n_u) {                                                                           \
    case 8: { BODY(T, 8) } break;                                                            \
    case 16: { BODY(T, 16) } break;                                                          \
    case 32: { BODY(T, 32) } break;                                                          \
    case 64: { BODY(T, 64) } break;                                                          \
    case 128: { BODY(T, 128) } break;                                                        \
    default: { BODY(T, n_u) } break;                                                         \
    }

#define DEFINE_PRODUCT(T, SUFFIX)                                                            \
void product_slot_##SUFFIX(int64_t n_rows, int64_t n_u, int64_t dim, int64_t wdim,           \
                           const T* g, const T* b, const T* a, const T* w, T* restrict out,  \
                           int32_t slot, int64_t n_terms, const int32_t* cols,               \
                           const T* coef) {                                                  \
    const T* ops[4] = {g, b, a, w};                                                          \
    SPECIALISE_MUL(PRODUCT_BODY, T)                                                          \
}

DEFINE_PRODUCT(float, f32)
DEFINE_PRODUCT(double, f64)
