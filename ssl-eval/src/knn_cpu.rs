//! The CPU path of [`crate::knn::nearest_neighbours`]: the exact integer
//! prefilter of [`crate::knn_quant`] where it applies (AVX2, ≥ 2²⁵ pairs),
//! else `sgemm` blocks (matrixmultiply, pure Rust: AVX-512, AVX2+FMA, AVX
//! or SSE2 kernels chosen at run time), each followed at once by a per-row
//! top-k scan, one test block per rayon task. The prefilter also hands the
//! rows it cannot narrow down to the sgemm blocks.
//!
//! Why not libtorch's `addmm` + `topk`: a scan that keeps the k best of a
//! row while the block is still in cache replaces `topk` + sort + merge over
//! the whole block, and each task runs a single-threaded sgemm on its own
//! rows, so the two phases never wait on each other's threads. The sgemm
//! was OpenBLAS's until matrixmultiply matched it (2 cores of an AMD EPYC
//! with AVX-512 under load, best of 5 per run, 5 runs: k-NN of 640 test
//! rows among 50 000 × 512 in 0.16–0.29 s against OpenBLAS's 0.20–0.53 s;
//! matrixmultiply's AVX2 kernel alone was within 15% of OpenBLAS), which
//! leaves ssl-eval without a system library.
//! (A program that switches on matrixmultiply's `threading` feature makes
//! each call multi-threaded too; ours leaves it off.)
//!
//! Ranking keys are those of the tensor path: `‖b‖² − 2a·b` (Euclidean) or
//! `−â·b̂` (cosine, rows pre-normalised), ordered by (key, training index):
//! a scan in increasing index that admits a candidate only when its key is
//! strictly smaller than the current k-th keeps the smaller index on ties,
//! also at the k-th place.

// matrixmultiply's sgemm takes raw pointers and strides.
#![allow(unsafe_code)]

use rayon::prelude::*;

use crate::knn_quant::PrefilterStats;
use crate::EvalError;

/// Test rows per task and training rows per sgemm call. Each call packs
/// its training block again, so tasks need enough rows to amortise that
/// (with 64 rows, packing took 30% of the time); a `256 × 4096` f32 block
/// is 4 MiB, still in L3 when the scan reads it. Measured (50k × 512
/// train, 10k test, 2 cores): 64×8192 7.5 s, 256×4096 4.7 s, 384×4096
/// 4.8 s, 512×2048 5.1 s, 256×8192 5.1 s.
const TASK_ROWS: usize = 256;
const BLOCK_COLS: usize = 4096;

/// `c[m × n] = alpha · a[m × k] · b[n × k]ᵀ`, row-major, single-threaded.
fn gemm_nt(m: usize, n: usize, k: usize, alpha: f32, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
    let stride = |v: usize| isize::try_from(v).expect("k-NN block dimension fits an isize");
    // SAFETY: the three slices hold at least m·k, n·k and m·n elements
    // (asserted above); with these strides (a: rows of k, bᵀ: columns of
    // k, c: rows of n) sgemm reads and writes only inside them, and keeps
    // no pointer after returning. `c` is exclusively borrowed.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            stride(k),
            1,
            b.as_ptr(),
            1,
            stride(k),
            0.0,
            c.as_mut_ptr(),
            stride(n),
            1,
        );
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
/// `[q, k]` row-major, best first, by sgemm blocks of `train_block`
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
