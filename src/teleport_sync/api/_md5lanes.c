/* MD5 of eight independent byte streams at once, one stream per 32-bit lane of an AVX2 register.
 *
 * A part's MD5 is what S3-style storage answers as its ETag, so checking each part costs one
 * MD5 of every byte sent. One MD5 stream cannot go faster than one block after another, but the
 * parts of an upload are independent: hashing up to eight of them side by side does eight
 * blocks' work in about the time of one on a core with AVX2. Python's hashlib (OpenSSL) remains
 * the reference and the fallback (teleport_sync.api.hashing); the tests compare the two on
 * random inputs of every length class.
 *
 * One function: blocks(state, buffers, nblocks). `state` is a writable buffer of 32 uint32:
 * a0..a7, b0..b7, c0..c7, d0..d7 (lane i's MD5 state is a[i], b[i], c[i], d[i]). `buffers` is a
 * sequence of 1 to 8 bytes-like objects, each holding at least nblocks * 64 bytes; lane i reads
 * buffers[i]. Lanes without a buffer read zeros, and their state is meaningless. The GIL is
 * released while the blocks are hashed. Two kernels give the same digests: AVX2, and where the
 * CPU has AVX-512VL the same eight lanes with its one-instruction rotations and round
 * functions (kernel() says which runs here).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_AVX2_KERNEL 1
#else
#define HAVE_AVX2_KERNEL 0
#endif

#define LANES 8
#define BLOCK 64

static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

#if HAVE_AVX2_KERNEL

/* One MD5 step: a = b + rotl(a + f(b, c, d) + K[i] + M[g], s). ROTL and F1..F4 are defined
 * per instruction set below, before each kernel is written out from MD5_BLOCKS. */
#define STEP(f, a, b, c, d, i, g, s)                                                        \
    do {                                                                                    \
        __m256i t = _mm256_add_epi32(_mm256_add_epi32((a), f((b), (c), (d))),               \
                                     _mm256_add_epi32(_mm256_set1_epi32((int)K[i]), m[g])); \
        (a) = _mm256_add_epi32((b), ROTL(t, s));                                            \
    } while (0)

/* Transpose an 8x8 matrix of uint32: rows[j] = word k of lane j ... into cols[k] = lane j's word
 * k in element j. */
__attribute__((target("avx2"))) static inline void transpose8(__m256i r[8]) {
    __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/* The 64 steps of one block, in all eight lanes. */
#define MD5_64_STEPS \
    STEP(F1, a, b, c, d, 0, 0, 7);   STEP(F1, d, a, b, c, 1, 1, 12); \
    STEP(F1, c, d, a, b, 2, 2, 17);  STEP(F1, b, c, d, a, 3, 3, 22); \
    STEP(F1, a, b, c, d, 4, 4, 7);   STEP(F1, d, a, b, c, 5, 5, 12); \
    STEP(F1, c, d, a, b, 6, 6, 17);  STEP(F1, b, c, d, a, 7, 7, 22); \
    STEP(F1, a, b, c, d, 8, 8, 7);   STEP(F1, d, a, b, c, 9, 9, 12); \
    STEP(F1, c, d, a, b, 10, 10, 17); STEP(F1, b, c, d, a, 11, 11, 22); \
    STEP(F1, a, b, c, d, 12, 12, 7); STEP(F1, d, a, b, c, 13, 13, 12); \
    STEP(F1, c, d, a, b, 14, 14, 17); STEP(F1, b, c, d, a, 15, 15, 22); \
    STEP(F2, a, b, c, d, 16, 1, 5);  STEP(F2, d, a, b, c, 17, 6, 9); \
    STEP(F2, c, d, a, b, 18, 11, 14); STEP(F2, b, c, d, a, 19, 0, 20); \
    STEP(F2, a, b, c, d, 20, 5, 5);  STEP(F2, d, a, b, c, 21, 10, 9); \
    STEP(F2, c, d, a, b, 22, 15, 14); STEP(F2, b, c, d, a, 23, 4, 20); \
    STEP(F2, a, b, c, d, 24, 9, 5);  STEP(F2, d, a, b, c, 25, 14, 9); \
    STEP(F2, c, d, a, b, 26, 3, 14); STEP(F2, b, c, d, a, 27, 8, 20); \
    STEP(F2, a, b, c, d, 28, 13, 5); STEP(F2, d, a, b, c, 29, 2, 9); \
    STEP(F2, c, d, a, b, 30, 7, 14); STEP(F2, b, c, d, a, 31, 12, 20); \
    STEP(F3, a, b, c, d, 32, 5, 4);  STEP(F3, d, a, b, c, 33, 8, 11); \
    STEP(F3, c, d, a, b, 34, 11, 16); STEP(F3, b, c, d, a, 35, 14, 23); \
    STEP(F3, a, b, c, d, 36, 1, 4);  STEP(F3, d, a, b, c, 37, 4, 11); \
    STEP(F3, c, d, a, b, 38, 7, 16); STEP(F3, b, c, d, a, 39, 10, 23); \
    STEP(F3, a, b, c, d, 40, 13, 4); STEP(F3, d, a, b, c, 41, 0, 11); \
    STEP(F3, c, d, a, b, 42, 3, 16); STEP(F3, b, c, d, a, 43, 6, 23); \
    STEP(F3, a, b, c, d, 44, 9, 4);  STEP(F3, d, a, b, c, 45, 12, 11); \
    STEP(F3, c, d, a, b, 46, 15, 16); STEP(F3, b, c, d, a, 47, 2, 23); \
    STEP(F4, a, b, c, d, 48, 0, 6);  STEP(F4, d, a, b, c, 49, 7, 10); \
    STEP(F4, c, d, a, b, 50, 14, 15); STEP(F4, b, c, d, a, 51, 5, 21); \
    STEP(F4, a, b, c, d, 52, 12, 6); STEP(F4, d, a, b, c, 53, 3, 10); \
    STEP(F4, c, d, a, b, 54, 10, 15); STEP(F4, b, c, d, a, 55, 1, 21); \
    STEP(F4, a, b, c, d, 56, 8, 6);  STEP(F4, d, a, b, c, 57, 15, 10); \
    STEP(F4, c, d, a, b, 58, 6, 15); STEP(F4, b, c, d, a, 59, 13, 21); \
    STEP(F4, a, b, c, d, 60, 4, 6);  STEP(F4, d, a, b, c, 61, 11, 10); \
    STEP(F4, c, d, a, b, 62, 2, 15); STEP(F4, b, c, d, a, 63, 9, 21);

/* The body of a kernel: nblocks blocks of every lane, the state loaded and stored once. */
#define MD5_BLOCKS(state, p, nblocks)                                                       \
    do {                                                                                    \
        __m256i a = _mm256_loadu_si256((const __m256i *)((state) + 0));                     \
        __m256i b = _mm256_loadu_si256((const __m256i *)((state) + 8));                     \
        __m256i c = _mm256_loadu_si256((const __m256i *)((state) + 16));                    \
        __m256i d = _mm256_loadu_si256((const __m256i *)((state) + 24));                    \
        const __m256i ones = _mm256_set1_epi32(-1);                                         \
        (void)ones;                                                                         \
        for (Py_ssize_t n = 0; n < (nblocks); n++) {                                        \
            __m256i m[16];                                                                  \
            for (int half = 0; half < 2; half++) {                                          \
                for (int j = 0; j < LANES; j++)                                             \
                    m[half * 8 + j] =                                                       \
                        _mm256_loadu_si256((const __m256i *)((p)[j] + n * BLOCK + half * 32)); \
                transpose8(m + half * 8);                                                   \
            }                                                                               \
            __m256i aa = a, bb = b, cc = c, dd = d;                                         \
            MD5_64_STEPS;                                                                   \
            a = _mm256_add_epi32(a, aa);                                                    \
            b = _mm256_add_epi32(b, bb);                                                    \
            c = _mm256_add_epi32(c, cc);                                                    \
            d = _mm256_add_epi32(d, dd);                                                    \
        }                                                                                   \
        _mm256_storeu_si256((__m256i *)((state) + 0), a);                                   \
        _mm256_storeu_si256((__m256i *)((state) + 8), b);                                   \
        _mm256_storeu_si256((__m256i *)((state) + 16), c);                                  \
        _mm256_storeu_si256((__m256i *)((state) + 24), d);                                  \
    } while (0)

/* AVX2: a rotation is two shifts and an or; the round functions two or three operations. */
#define ROTL(x, s) _mm256_or_si256(_mm256_slli_epi32((x), (s)), _mm256_srli_epi32((x), 32 - (s)))
#define F1(b, c, d) _mm256_or_si256(_mm256_and_si256((b), (c)), _mm256_andnot_si256((b), (d)))
#define F2(b, c, d) _mm256_or_si256(_mm256_and_si256((d), (b)), _mm256_andnot_si256((d), (c)))
#define F3(b, c, d) _mm256_xor_si256(_mm256_xor_si256((b), (c)), (d))
#define F4(b, c, d) _mm256_xor_si256((c), _mm256_or_si256((b), _mm256_xor_si256((d), ones)))

__attribute__((target("avx2"))) static void blocks_avx2(uint32_t *state, const uint8_t *const *p,
                                                        Py_ssize_t nblocks) {
    MD5_BLOCKS(state, p, nblocks);
}

#undef ROTL
#undef F1
#undef F2
#undef F3
#undef F4

/* AVX-512VL on the same 256-bit registers: a rotation is one instruction (vprold), and each
 * round function one ternary-logic instruction (vpternlogd; the immediate is the function's
 * truth table over b, c, d): about six operations a step instead of ten. */
#define ROTL(x, s) _mm256_rol_epi32((x), (s))
#define F1(b, c, d) _mm256_ternarylogic_epi32((b), (c), (d), 0xCA) /* b ? c : d */
#define F2(b, c, d) _mm256_ternarylogic_epi32((b), (c), (d), 0xE4) /* d ? b : c */
#define F3(b, c, d) _mm256_ternarylogic_epi32((b), (c), (d), 0x96) /* b ^ c ^ d */
#define F4(b, c, d) _mm256_ternarylogic_epi32((b), (c), (d), 0x39) /* c ^ (b | ~d) */

__attribute__((target("avx2,avx512f,avx512vl"))) static void blocks_avx512vl(
    uint32_t *state, const uint8_t *const *p, Py_ssize_t nblocks) {
    MD5_BLOCKS(state, p, nblocks);
}

#endif /* HAVE_AVX2_KERNEL */

/* The best kernel this CPU runs: 2 AVX-512VL, 1 AVX2, 0 none. */
static int cpu_level(void) {
#if HAVE_AVX2_KERNEL
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        return 2;
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

static int avx2_usable(void) { return cpu_level() >= 1; }

static PyObject *md5lanes_blocks(PyObject *self, PyObject *args) {
    Py_buffer state;
    PyObject *buffers;
    Py_ssize_t nblocks;
    const char *kernel = NULL; /* "avx2" asks for the AVX2 kernel where a faster one exists */
    if (!PyArg_ParseTuple(args, "w*On|z", &state, &buffers, &nblocks, &kernel))
        return NULL;
    PyObject *seq = PySequence_Fast(buffers, "buffers must be a sequence");
    if (seq == NULL) {
        PyBuffer_Release(&state);
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    Py_buffer views[LANES];
    Py_ssize_t held = 0;
    PyObject *result = NULL;
    uint8_t *pad = NULL;
    static const uint8_t zeros[BLOCK] = {0};
    const uint8_t *p[LANES];
    if (!avx2_usable()) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no AVX2");
        goto done;
    }
    if (state.len != (Py_ssize_t)(4 * LANES * sizeof(uint32_t)) || count < 1 || count > LANES ||
        nblocks < 0) {
        PyErr_SetString(PyExc_ValueError, "state is 32 uint32; 1 to 8 buffers; nblocks >= 0");
        goto done;
    }
    for (; held < count; held++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, held), &views[held], PyBUF_SIMPLE) < 0)
            goto done;
        if (views[held].len < nblocks * BLOCK) {
            held++;
            PyErr_SetString(PyExc_ValueError, "a buffer is shorter than nblocks * 64 bytes");
            goto done;
        }
        p[held] = (const uint8_t *)views[held].buf;
    }
    /* Lanes without a buffer read zeros. */
    if (count < LANES && nblocks > 1) {
        pad = PyMem_Calloc((size_t)nblocks, BLOCK);
        if (pad == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t j = count; j < LANES; j++)
        p[j] = pad != NULL ? pad : zeros;
#if HAVE_AVX2_KERNEL
    if (cpu_level() >= 2 && (kernel == NULL || strcmp(kernel, "avx2") != 0)) {
        Py_BEGIN_ALLOW_THREADS blocks_avx512vl((uint32_t *)state.buf, p, nblocks);
        Py_END_ALLOW_THREADS
    } else {
        Py_BEGIN_ALLOW_THREADS blocks_avx2((uint32_t *)state.buf, p, nblocks);
        Py_END_ALLOW_THREADS
    }
#endif
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_Free(pad);
    for (Py_ssize_t j = 0; j < held; j++)
        PyBuffer_Release(&views[j]);
    Py_DECREF(seq);
    PyBuffer_Release(&state);
    return result;
}

static PyObject *md5lanes_available(PyObject *self, PyObject *unused) {
    return PyBool_FromLong(avx2_usable());
}

static PyObject *md5lanes_kernel(PyObject *self, PyObject *unused) {
    static const char *names[] = {NULL, "avx2", "avx512vl"};
    int level = cpu_level();
    if (level == 0)
        Py_RETURN_NONE;
    return PyUnicode_FromString(names[level]);
}

static PyMethodDef methods[] = {
    {"blocks", md5lanes_blocks, METH_VARARGS,
     "blocks(state, buffers, nblocks[, kernel]): hash nblocks 64-byte blocks of up to 8 "
     "buffers; kernel=\"avx2\" asks for the AVX2 kernel even where AVX-512VL is there."},
    {"available", md5lanes_available, METH_NOARGS, "Can this CPU run the 8-lane kernel?"},
    {"kernel", md5lanes_kernel, METH_NOARGS,
     "The kernel blocks() uses here: \"avx512vl\", \"avx2\", or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_md5lanes", "MD5 of eight streams at once (AVX2).", -1, methods,
};

PyMODINIT_FUNC PyInit__md5lanes(void) { return PyModule_Create(&module); }
