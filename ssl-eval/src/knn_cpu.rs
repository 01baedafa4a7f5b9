//! The CPU path of [`crate::knn::nearest_neighbours`]: the exact integer
//! prefilter of [`crate::knn_quant`] where it applies (AVX2, ≥ 2²⁵ pairs),
//! else OpenBLAS `sgemm` blocks, each followed at once by a per-row top-k
//! scan, one test block per rayon task. The prefilter also hands the rows it
//! cannot narrow down to the sgemm blocks.
//!
//! Why not libtorch's `addmm` + `topk`: on the AMD machines this project is
//! measured on, OpenBLAS's sgemm runs the `[10 000 × 512]·[512 × 50 000]`
//! product at ~125 GFLOP/s on 2 cores where libtorch's MKL reaches ~87
//! (measured side by side with the torch and numpy of the set-up), and a
//! scan that keeps the k best of a row while the block is still in cache
//! replaces `topk` + sort + merge over the whole block. Each task runs a
//! single-threaded sgemm on its own rows, so the two phases never wait on
//! each other's threads (OpenBLAS's own threads spin after a call and would
//! compete with the scan).
//!
//! Ranking keys are those of the tensor path: `‖b‖² − 2a·b` (Euclidean) or
//! `−â·b̂` (cosine, rows pre-normalised), ordered by (key, training index):
//! a scan in increasing index that admits a candidate only when its key is
//! strictly smaller than the current k-th keeps the smaller index on ties,
//! also at the k-th place.

// FFI to OpenBLAS (linked through ndarray-linalg's `openblas-system`).
#![allow(unsafe_code)]

use std::os::raw::c_int;

use rayon::prelude::*;

use crate::knn_quant::PrefilterStats;
use crate::EvalError;

#[link(name = "openblas")]
extern "C" {
    fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn openblas_get_num_threads() -> c_int;
    fn openblas_set_num_threads(n: c_int);
}

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// Test rows per task and training rows per sgemm call. Each call packs
/// its training block again, so tasks need enough rows to amortise that
/// (with 64 rows, packing took 30% of the time); a `256 × 4096` f32 block
/// is 4 MiB, still in L3 when the scan reads it. Measured (50k × 512
/// train, 10k test, 2 cores): 64×8192 7.5 s, 256×4096 4.7 s, 384×4096
/// 4.8 s, 512×2048 5.1 s, 256×8192 5.1 s.
const TASK_ROWS: usize = 256;
const BLOCK_COLS: usize = 4096;

/// `c[m × n] = alpha · a[m × k] · b[n × k]ᵀ`, row-major, by OpenBLAS.
fn gemm_nt(m: usize, n: usize, k: usize, alpha: f32, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
    let dim = |v: usize| c_int::try_from(v).expect("k-NN block dimension fits a BLAS int");
    // SAFETY: the three slices hold at least m·k, n·k and m·n elements
    // (asserted above), which is all sgemm reads and writes with these
    // leading dimensions; the C call keeps no pointer after returning.
    unsafe {
        cblas_sgemm(
            ROW_MAJOR,
            NO_TRANS,
            TRANS,
            dim(m),
            dim(n),
            dim(k),
            alpha,
            a.as_ptr(),
            dim(k),
            b.as_ptr(),
            dim(k),
            0.0,
            c.as_mut_ptr(),
            dim(n),
        );
    }
}

/// OpenBLAS single-threaded until dropped (each rayon task runs its own
/// sgemm), then its previous thread count again.
struct SingleThreadedBlas(c_int);

impl SingleThreadedBlas {
    fn enter() -> Self {
        // SAFETY: plain getters/setters of OpenBLAS's thread count.
        let previous = unsafe { openblas_get_num_threads() };
        unsafe { openblas_set_num_threads(1) };
        Self(previous)
    }
}

impl Drop for SingleThreadedBlas {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe { openblas_set_num_threads(self.0) };
    }
}

/// Inserts `(key, idx)` into the sorted `k`-best lists, after any equal
/// keys (they have smaller indices), dropping the last.
#[inline]
fn insert(keys: &mut [f32], idx: &mut [i64], key: f32, i: i64) {
    let k = keys.len();
    let mut p = k - 1;
    while p > 0 && key < keys[p - 1] {
        keys[p] = keys[p - 1];
        idx[p] = idx[p - 1];
        p -= 1;
    }
    keys[p] = key;
    idx[p] = i;
}

/// One CPU ranking problem: the `k` training rows with the smallest keys
/// `bias[j] + alpha·(a·b_j)` for every test row `a`. `train` is `[n, d]`,
/// `test` `[q, d]`, both contiguous f32; `bias[j]` is `‖b_j‖²` (Euclidean)
/// or 0 (cosine, rows pre-normalised) and `alpha` −2 or −1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Problem<'a> {
    pub train: &'a [f32],
    pub test: &'a [f32],
    pub bias: &'a [f32],
    pub d: usize,
    pub k: usize,
    pub alpha: f32,
}

/// What [`k_best`] finds: `(indices, keys, prefilter statistics)`.
pub(crate) type Ranked = (Vec<i64>, Vec<f32>, Option<PrefilterStats>);

/// The `k` best training rows of every test row: `(indices, keys)`, both
/// `[q, k]` row-major, best first, by the exact 7-bit prefilter of
/// [`crate::knn_quant`] where it applies (AVX2, a large problem), else by
/// [`k_best_sgemm`]; with what the prefilter did, `None` when it did not run.
pub(crate) fn k_best(p: &Problem<'_>, train_block: usize) -> Result<Ranked, EvalError> {
    let exact = |rows: &[f32]| k_best_sgemm(&Problem { test: rows, ..*p }, train_block);
    match crate::knn_quant::k_best(p, false, &exact) {
        Some(found) => found.map(|(idx, keys, stats)| (idx, keys, Some(stats))),
        None => exact(p.test).map(|(idx, keys)| (idx, keys, None)),
    }
}

/// The `k` best training rows of every test row: `(indices, keys)`, both
/// `[q, k]` row-major, best first, by OpenBLAS blocks of `train_block`
/// training rows (at most 4096).
pub(crate) fn k_best_sgemm(
    p: &Problem<'_>,
    train_block: usize,
) -> Result<(Vec<i64>, Vec<f32>), EvalError> {
    let Problem {
        train,
        test,
        bias,
        d,
        k,
        alpha,
    } = *p;
    let (n, q) = (train.len() / d.max(1), test.len() / d.max(1));
    assert!(k >= 1 && k <= n && bias.len() == n);
    let cols = train_block.clamp(k, BLOCK_COLS).min(n);
    let mut keys = vec![f32::INFINITY; q * k];
    let mut idx = vec![-1i64; q * k];
    let _single = SingleThreadedBlas::enter();
    keys.par_chunks_mut(TASK_ROWS * k)
        .zip(idx.par_chunks_mut(TASK_ROWS * k))
        .zip(test.par_chunks(TASK_ROWS * d))
        .for_each(|((keys, idx), a)| {
            let rows = a.len() / d;
            let mut buf = vec![0f32; rows * cols];
            for c0 in (0..n).step_by(cols) {
                let w = cols.min(n - c0);
                let buf = &mut buf[..rows * w];
                gemm_nt(rows, w, d, alpha, a, &train[c0 * d..(c0 + w) * d], buf);
                let bias = &bias[c0..c0 + w];
                for r in 0..rows {
                    let (kr, ir) = (&mut keys[r * k..(r + 1) * k], &mut idx[r * k..(r + 1) * k]);
                    let mut worst = kr[k - 1];
                    for (j, (&v, &b)) in buf[r * w..(r + 1) * w].iter().zip(bias).enumerate() {
                        let key = v + b;
                        if key < worst {
                            insert(kr, ir, key, (c0 + j) as i64);
                            worst = kr[k - 1];
                        }
                    }
                }
            }
        });
    if idx.contains(&-1) {
        return Err(EvalError::NonFinite(
            "k-NN distances (the features hold NaN or infinite values)".into(),
        ));
    }
    Ok((idx, keys))
}
