//! Exact k-NN on x86-64 CPUs with AVX2 through a 7-bit integer prefilter:
//! the CPU path of [`crate::knn_cpu::k_best`] when the problem is large
//! (≥ 2²⁵ test × train pairs).
//!
//! Why: the ranking product `a·b` over all (test, train) pairs is the whole
//! cost of k-NN. AVX2 has no fast `f32` path beyond FMA (16 multiply-adds a
//! cycle), but `vpmaddubsw` multiplies 32 byte pairs per instruction; on the
//! Zen 3 machines this project is measured on, a `vpmaddubsw`+`vpaddw` loop
//! runs ~100 G multiply-adds/s per core against ~40 G for `vfmadd231ps`.
//!
//! How, and why the result is exact:
//! 1. Every row `x` is quantised with its own scale `s = max|x_i| / 63`:
//!    `q = round(x / s) ∈ [−63, 63]`, `x̃ = s·q`, `e = x − x̃`; `‖x̃‖` and
//!    `‖e‖` are kept (in f64). Test rows are stored offset by +63 (unsigned
//!    bytes, as `vpmaddubsw` wants them), training rows signed, packed eight
//!    rows to a panel.
//! 2. A register kernel forms `D = q_a·q_b` exactly in integers (i16 pair
//!    sums of at most `2·2·126·63 = 31 752` cannot saturate), so
//!    `ã·b̃ = s_a s_b D`, and by Cauchy–Schwarz
//!    `|a·b − ã·b̃| ≤ ‖e_a‖‖b̃‖ + ‖ã‖‖e_b‖ + ‖e_a‖‖e_b‖`. That bounds the key
//!    `bias + α·a·b` of every pair within `k̃ ∓ δ`, where
//!    `k̃ = bias + α·s_a s_b D` and `δ = |α|·(that bound)` plus a margin for
//!    the f32 rounding of `k̃` and `k̃ ∓ δ`.
//! 3. The k-th smallest true key is at most the k-th smallest `k̃ + δ`, so
//!    every member of the true top k (ties at the k-th place included) has
//!    `k̃ − δ` at most that. A running scan keeps exactly those candidates
//!    (its threshold only falls as it goes, so nothing it drops could
//!    return): ~250 of 50 000 per row on the benchmark's data.
//! 4. Each candidate's key is recomputed in f32 from the features, the
//!    pairs bucketed by training row so each training row is read once per
//!    group of test rows; its rounding is bounded by `γ_m‖a‖‖b‖`
//!    (`m = d/8 + 16` roundings per product on any summation path).
//! 5. The candidates whose f32 key lies within twice that bound of the k-th
//!    smallest get their exact key, summed in f64 from the f32 features
//!    (each product exact), and are ranked by (key, index).
//!
//! A row whose candidates pass [`MAX_CANDIDATES`] (data with a huge dynamic
//! range inside a row, or thousands of near-equal distances) is handed to
//! the sgemm path instead; so is everything when the CPU lacks AVX2, the
//! inputs are not finite, or `d` is too large for exact i32 conversion.
//!
//! The ranking keys are the exact ones (up to f64 rounding), where the
//! sgemm and tensor paths rank f32-rounded keys: on near-ties the order may
//! differ from theirs, never from exact arithmetic.

// SIMD intrinsics on raw pointers into slices whose bounds are checked
// before each kernel call.
#![allow(unsafe_code)]

use rayon::prelude::*;

use crate::knn_cpu::Problem;

/// Largest quantised magnitude: 7-bit signed levels.
const LEVELS: f32 = 63.0;
/// Offset that makes a test row's levels unsigned (`vpmaddubsw`'s first operand).
const OFFSET: i32 = 63;
/// Training rows per packed panel: one ymm of i32 results.
const PANEL: usize = 8;
/// Test rows per kernel call (6 × 2 accumulators + 2 loads + 1 constant
/// of the 16 ymm registers).
const ROWS: usize = 6;
/// Bytes of `k` per i16 accumulation: two 4-byte groups.
const KSTEP: usize = 8;
/// Test rows per rayon task: its quantised rows (96 KiB at d = 512) and one
/// training block stay in L2 together.
const CHUNK_ROWS: usize = ROWS * 32;
/// Training panels per block: 512 rows, 256 KiB at d = 512.
const BLOCK_PANELS: usize = 64;
/// Test rows whose candidates are refined together (a multiple of
/// [`CHUNK_ROWS`]): bounds the candidate lists' memory (≤ 2304 ×
/// [`MAX_CANDIDATES`] pairs) while each training row is still read once
/// for ~2000 test rows.
const GROUP_ROWS: usize = CHUNK_ROWS * 12;
/// Training rows per refinement task.
const REFINE_ROWS: usize = 256;
/// Candidates a test row may hold before it is handed to the exact path.
pub(crate) const MAX_CANDIDATES: usize = 4096;
/// Smallest problem (test × train rows) the prefilter is used for: below,
/// quantisation and packing cost more than they save (measured, Gaussian
/// clusters: 5 000 × 1 000 × 512 took 0.14 s against sgemm's 0.10 s,
/// 20 000 × 2 000 × 128 0.17 s against 0.18 s, 50 000 × 10 000 × 128 0.86 s
/// against 1.44 s).
pub(crate) const MIN_PAIRS: usize = 1 << 25;
/// f32 unit roundoff.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// What the prefilter did, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct PrefilterStats {
    /// Test rows ranked from their candidates.
    pub ranked: usize,
    /// Test rows handed to the exact sgemm path.
    pub fallback: usize,
    /// Mean candidates per ranked test row.
    pub mean_candidates: f64,
}

/// The k best of each test row, `[q, k]` row-major: (training indices,
/// keys, what the prefilter did).
pub(crate) type Found = (Vec<i64>, Vec<f32>, PrefilterStats);

/// The exact path for the rows the prefilter gives up on: test rows
/// (`[m, d]`) in, their (indices, keys) out.
pub(crate) type ExactPath<'a> =
    dyn Fn(&[f32]) -> Result<(Vec<i64>, Vec<f32>), crate::EvalError> + 'a;

/// Quantised rows of one matrix.
struct Quantised {
    /// `[rows, kpad]` offset levels (test) or panel-packed levels (train).
    bytes: Vec<u8>,
    /// Per row: the scale `s`, `‖x̃‖`, `‖e‖`, `Σ q`.
    scale: Vec<f32>,
    norm_q: Vec<f64>,
    norm_e: Vec<f64>,
    sum_q: Vec<i32>,
}

/// `d` rounded up to whole kernel steps.
fn padded(d: usize) -> usize {
    d.div_ceil(KSTEP) * KSTEP
}

/// Quantises `x` (`[n, d]`); `levels[i]` receives row `i`'s levels, padded
/// with zeros to `kpad`. Returns (scale, ‖x̃‖, ‖e‖, Σq) per row.
fn quantise_row(x: &[f32], levels: &mut [i8]) -> (f32, f64, f64, i32) {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / LEVELS } else { 1.0 };
    let inv = 1.0 / scale;
    let (mut qq, mut ee, mut sum) = (0f64, 0f64, 0i32);
    for (l, &v) in levels.iter_mut().zip(x) {
        // `as` saturates (and maps NaN from a subnormal scale to 0); the
        // bound below uses whatever level is stored, so it stays valid.
        let q = (v * inv).round().clamp(-LEVELS, LEVELS) as i8;
        *l = q;
        sum += q as i32;
        let approx = scale as f64 * q as f64;
        qq += approx * approx;
        let e = v as f64 - approx;
        ee += e * e;
    }
    // f64 sums of d terms: relative error ≤ d·2⁻⁵³, covered by the
    // factor applied to the bound.
    (scale, qq.sqrt(), ee.sqrt(), sum)
}

/// Quantises the rows of `x` (`[n, d]`) in parallel, `group` rows to a
/// block of `group·kpad` bytes (initialised to `fill`, `rows_out ≥ n` rows
/// in all) that `write(block, row in group, levels)` lays out.
fn quantise(
    x: &[f32],
    d: usize,
    rows_out: usize,
    group: usize,
    fill: u8,
    write: impl Fn(&mut [u8], usize, &[i8]) + Sync,
) -> Quantised {
    let kpad = padded(d);
    let n = x.len() / d;
    let mut bytes = vec![fill; rows_out * kpad];
    let stats: Vec<Vec<(f32, f64, f64, i32)>> = bytes
        .par_chunks_mut(group * kpad)
        .enumerate()
        .map(|(g, block)| {
            let mut levels = vec![0i8; kpad];
            let mut stats = Vec::with_capacity(group);
            for m in 0..group {
                let j = g * group + m;
                if j < n {
                    stats.push(quantise_row(&x[j * d..(j + 1) * d], &mut levels[..d]));
                    write(block, m, &levels);
                } else {
                    stats.push((1.0, 0.0, 0.0, 0));
                }
            }
            stats
        })
        .collect();
    let stats: Vec<_> = stats.into_iter().flatten().collect();
    Quantised {
        bytes,
        scale: stats.iter().map(|s| s.0).collect(),
        norm_q: stats.iter().map(|s| s.1).collect(),
        norm_e: stats.iter().map(|s| s.2).collect(),
        sum_q: stats.iter().map(|s| s.3).collect(),
    }
}

/// Test rows as offset levels `q + 63` (unsigned), `[rows_padded, kpad]`;
/// padding rows hold level 0.
fn quantise_test(x: &[f32], d: usize, rows_padded: usize) -> Quantised {
    let kpad = padded(d);
    quantise(x, d, rows_padded, ROWS, OFFSET as u8, |block, m, levels| {
        for (b, &l) in block[m * kpad..(m + 1) * kpad].iter_mut().zip(levels) {
            *b = (l as i32 + OFFSET) as u8;
        }
    })
}

/// Training rows packed per panel of [`PANEL`] rows as
/// `[k / 4][PANEL][4]` bytes, so one 32-byte load holds four `k` of eight rows.
fn quantise_train(x: &[f32], d: usize) -> Quantised {
    let rows = (x.len() / d).div_ceil(PANEL) * PANEL;
    quantise(x, d, rows, PANEL, 0, |panel, m, levels| {
        for (g, quad) in levels.chunks_exact(4).enumerate() {
            for (i, &l) in quad.iter().enumerate() {
                panel[(g * PANEL + m) * 4 + i] = l as u8;
            }
        }
    })
}

/// Per test row constants of the scan: `k̃ = fma(D, p·s_b, bias)` and the
/// bound `δ = c1·‖b̃‖ + c2·‖e_b‖ + slack` on `|key − k̃|`.
#[derive(Debug, Clone, Copy)]
struct RowSetup {
    p: f32,
    c1: f32,
    c2: f32,
    slack: f32,
}

/// The running state of one test row's scan.
#[derive(Debug, Clone)]
struct Row {
    /// The k smallest upper bounds `k̃ + δ` so far, ascending.
    best: Vec<f32>,
    slack: f32,
    /// Admit a training row when its lower bound `k̃ − δ` is `≤ tau`.
    tau: f32,
    /// (lower bound, training index).
    cands: Vec<(f32, u32)>,
    cap: usize,
    overflow: bool,
}

impl Row {
    fn new(k: usize, slack: f32) -> Self {
        Self {
            best: vec![f32::INFINITY; k],
            slack,
            tau: f32::INFINITY,
            cands: Vec::new(),
            cap: 256,
            overflow: false,
        }
    }

    #[inline(never)]
    fn admit(&mut self, lower: f32, upper: f32, j: u32) {
        if lower > self.tau {
            return;
        }
        self.cands.push((lower, j));
        let k = self.best.len();
        if upper < self.best[k - 1] {
            let mut p = k - 1;
            while p > 0 && upper < self.best[p - 1] {
                self.best[p] = self.best[p - 1];
                p -= 1;
            }
            self.best[p] = upper;
            if self.best[k - 1].is_finite() {
                self.tau = self.best[k - 1] + self.slack;
            }
        }
        if self.cands.len() >= self.cap {
            let tau = self.tau;
            self.cands.retain(|&(c, _)| c <= tau);
            if self.cands.len() > self.cap / 2 {
                self.cap *= 2;
                if self.cap > MAX_CANDIDATES {
                    self.overflow = true;
                    self.tau = f32::NEG_INFINITY;
                    self.cands = Vec::new();
                }
            }
        }
    }
}

/// The k best training rows of every test row of `p`, as
/// [`crate::knn_cpu::k_best`] finds them, or `None` when the prefilter does not
/// apply (no AVX2, a small problem unless `force`, non-finite data, `d`
/// too large). Rows the prefilter gives up on are finished by `exact`.
pub(crate) fn k_best(
    p: &Problem<'_>,
    force: bool,
    exact: &ExactPath<'_>,
) -> Option<Result<Found, crate::EvalError>> {
    let Problem {
        train,
        test,
        bias,
        d,
        k,
        ..
    } = *p;
    #[cfg(target_arch = "x86_64")]
    {
        if !whitening_core::cpu::has_avx2_fma() {
            return None;
        }
        let (n, q) = (train.len() / d.max(1), test.len() / d.max(1));
        // |D| ≤ kpad·63² must convert to f32 exactly (< 2²⁴).
        let usable = d > 0 && padded(d) * 63 * 63 < (1 << 24) && n >= k && n < u32::MAX as usize;
        if !usable || (!force && n * q < MIN_PAIRS) {
            return None;
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !(finite(train) && finite(test) && finite(bias)) {
            return None;
        }
        Some(run(p, exact))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (train, test, bias, d, k, force, exact);
        None
    }
}

#[cfg(target_arch = "x86_64")]
fn run(p: &Problem<'_>, exact: &ExactPath<'_>) -> Result<Found, crate::EvalError> {
    let Problem {
        train,
        test,
        bias,
        d,
        k,
        alpha,
    } = *p;
    // Every row by the exact path, when the prefilter cannot help.
    let all_exact = || -> Result<Found, crate::EvalError> {
        let (idx, keys) = exact(test)?;
        let stats = PrefilterStats {
            ranked: 0,
            fallback: test.len() / d,
            mean_candidates: 0.0,
        };
        Ok((idx, keys, stats))
    };
    let (n, q) = (train.len() / d, test.len() / d);
    let kpad = padded(d);
    let rows_padded = q.div_ceil(ROWS) * ROWS;
    let tq = quantise_train(train, d);
    let aq = quantise_test(test, d, rows_padded);
    let panels = n.div_ceil(PANEL);
    // Per-panel vectors for the scan: the correction OFFSET·Σq_b, α-free
    // scales and the biases (padding rows get a bias that never passes).
    let corr: Vec<i32> = tq.sum_q.iter().map(|&s| OFFSET * s).collect();
    let mut pbias = vec![f32::INFINITY; panels * PANEL];
    pbias[..n].copy_from_slice(bias);
    let b_norm_max = tq.norm_q[..n].iter().fold(0f64, |m, &v| m.max(v));
    let e_norm_max = tq.norm_e[..n].iter().fold(0f64, |m, &v| m.max(v));
    let bias_max = bias.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let alpha_abs = (alpha as f64).abs();
    let a_norm_max = aq.norm_q.iter().fold(0f64, |m, &v| m.max(v));
    if alpha_abs * a_norm_max * b_norm_max + bias_max > 1e36 {
        // Approximate keys could overflow f32: all rows take the exact path.
        return all_exact();
    }
    // Per test row: α·s_a and the per-pair bound δ (module comment) as
    // c1·‖b̃‖ + c2·‖e_b‖, inflated past the f32 rounding of δ itself, plus a
    // slack for the rounding of k̃, k̃ ± δ and the threshold (each ≤ u times
    // |k̃| + δ ≤ `scale` + δ; 12u covers them with room).
    let row_setup = |i: usize| -> RowSetup {
        let (nq, ne) = (aq.norm_q[i], aq.norm_e[i]);
        let (c1, c2) = (alpha_abs * ne, alpha_abs * (nq + ne));
        let delta_max = c1 * b_norm_max + c2 * e_norm_max;
        let scale = alpha_abs * nq * b_norm_max + bias_max;
        let inflate = 1.0 + 1e-5;
        RowSetup {
            p: alpha * aq.scale[i],
            c1: (c1 * inflate) as f32,
            c2: (c2 * inflate) as f32,
            slack: (12.0 * U * (scale + delta_max) * inflate) as f32,
        }
    };
    let norm_q32: Vec<f32> = tq.norm_q.iter().map(|&v| v as f32).collect();
    let norm_e32: Vec<f32> = tq.norm_e.iter().map(|&v| v as f32).collect();
    // Exact norms of the f32 rows bound the f32 refinement's rounding:
    // eight FMA lanes of ≤ d/8 terms, then a pairwise lane sum and the
    // remainder, so at most m = d/8 + 16 roundings per product, and
    // |fl(a·b) − a·b| ≤ γ_m Σ|a_i b_i| ≤ γ_m ‖a‖‖b‖.
    let norm = |x: &[f32]| x.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    let train_norm_max = train.par_chunks(d).map(norm).reduce(|| 0.0, f64::max);
    let gamma = {
        let m = (d / 8 + 16) as f64;
        m * U / (1.0 - m * U)
    };

    let mut idx = vec![-1i64; q * k];
    let mut keys = vec![f32::INFINITY; q * k];
    let mut fallback_rows = Vec::new();
    let mut cand_total = 0usize;
    // The first group is one chunk, a probe: when most of its rows cannot
    // be narrowed down (features whose distances are too concentrated for
    // 7 bits, or a very large training set), the sgemm path takes every row
    // rather than most rows after a wasted scan.
    let mut bounds = vec![0, q.min(CHUNK_ROWS)];
    while bounds[bounds.len() - 1] < q {
        let last = bounds[bounds.len() - 1];
        bounds.push((last + GROUP_ROWS).min(q));
    }
    for (g, w) in bounds.windows(2).enumerate() {
        let (g0, g1) = (w[0], w[1]);
        // 1. The integer scan: each row's candidates (None: too many).
        let chunks: Vec<usize> = (g0..g1).step_by(CHUNK_ROWS).collect();
        let cands: Vec<Option<Vec<u32>>> = chunks
            .into_par_iter()
            .map(|r0| {
                let rows = (g1 - r0).min(CHUNK_ROWS);
                let setup: Vec<RowSetup> = (r0..r0 + rows).map(row_setup).collect();
                let panel = PanelData {
                    corr: &corr,
                    scale: &tq.scale,
                    bias: &pbias,
                    norm_q: &norm_q32,
                    norm_e: &norm_e32,
                };
                // SAFETY: AVX2 and FMA are present (checked in `k_best`).
                unsafe { scan_rows(&tq.bytes, &aq.bytes, &panel, n, kpad, k, r0, &setup) }
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
            .collect();
        if g == 0 && 2 * cands.iter().filter(|c| c.is_none()).count() > cands.len() {
            return all_exact();
        }

        // 2. Each candidate's key in f32 from the features, the pairs
        //    bucketed by training row so each training row is read once.
        let mut offsets = vec![0usize; cands.len() + 1];
        for (i, c) in cands.iter().enumerate() {
            offsets[i + 1] = offsets[i] + c.as_ref().map_or(0, Vec::len);
        }
        let total = offsets[cands.len()];
        cand_total += total;
        let mut start = vec![0usize; n + 1];
        for &j in cands.iter().flatten().flatten() {
            start[j as usize + 1] += 1;
        }
        for j in 0..n {
            start[j + 1] += start[j];
        }
        // pairs[t] = (test row in group, position of the pair in `cands`).
        let mut fill = start.clone();
        let mut pairs = vec![(0u32, 0u32); total];
        for (i, c) in cands.iter().enumerate() {
            for (s, &j) in c.iter().flatten().enumerate() {
                pairs[fill[j as usize]] = (i as u32, (offsets[i] + s) as u32);
                fill[j as usize] += 1;
            }
        }
        let mut by_bucket = vec![0f32; total];
        let mut parts = Vec::new();
        let mut rest = by_bucket.as_mut_slice();
        for j0 in (0..n).step_by(REFINE_ROWS) {
            let j1 = (j0 + REFINE_ROWS).min(n);
            let (head, tail) = rest.split_at_mut(start[j1] - start[j0]);
            parts.push((j0, j1, head));
            rest = tail;
        }
        parts.into_par_iter().for_each(|(j0, j1, out)| {
            for j in j0..j1 {
                let b = &train[j * d..(j + 1) * d];
                for t in start[j]..start[j + 1] {
                    let i = g0 + pairs[t].0 as usize;
                    // SAFETY: AVX2 and FMA are present (checked in `k_best`).
                    let dot = unsafe { dot_f32(&test[i * d..(i + 1) * d], b) };
                    out[t - start[j0]] = bias[j] + alpha * dot;
                }
            }
        });
        let mut refined = vec![0f32; total];
        for (&(_, p), &v) in pairs.iter().zip(&by_bucket) {
            refined[p as usize] = v;
        }

        // 3. Exact keys (f64) for the candidates whose refined key may be
        //    among the k smallest, ranked by (key, index).
        let ranked: Vec<Option<Vec<(f64, u32)>>> = (0..cands.len())
            .into_par_iter()
            .map(|i| {
                let c = cands[i].as_ref()?;
                let r = &refined[offsets[i]..offsets[i + 1]];
                let mut sorted = r.to_vec();
                let (_, &mut kth, _) = sorted.select_nth_unstable_by(k - 1, f32::total_cmp);
                let a = &test[(g0 + i) * d..(g0 + i + 1) * d];
                // |α|·‖a‖·max‖b‖ bounds |α·a·b|; γ of it, its f32 rounding.
                let scale = alpha_abs * norm(a) * train_norm_max;
                let eps = gamma * scale + 2.0 * U * (scale + bias_max);
                let limit = kth as f64 + 2.0 * eps * (1.0 + 1e-6);
                let mut exact_keys: Vec<(f64, u32)> = c
                    .iter()
                    .zip(r)
                    .filter(|&(_, &v)| v as f64 <= limit)
                    .map(|(&j, _)| {
                        let b = &train[j as usize * d..(j as usize + 1) * d];
                        // SAFETY: AVX2 and FMA are present (checked in `k_best`).
                        let dot = unsafe { dot_f64(a, b) };
                        (bias[j as usize] as f64 + alpha as f64 * dot, j)
                    })
                    .collect();
                exact_keys.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
                exact_keys.truncate(k);
                Some(exact_keys)
            })
            .collect();
        for (i, r) in ranked.into_iter().enumerate() {
            let row = g0 + i;
            match r {
                Some(best) => {
                    for (s, (key, j)) in best.into_iter().enumerate() {
                        idx[row * k + s] = j as i64;
                        keys[row * k + s] = key as f32;
                    }
                }
                None => fallback_rows.push(row),
            }
        }
    }

    let mut stats = PrefilterStats {
        ranked: q - fallback_rows.len(),
        fallback: fallback_rows.len(),
        mean_candidates: 0.0,
    };
    stats.mean_candidates = cand_total as f64 / stats.ranked.max(1) as f64;
    if !fallback_rows.is_empty() {
        let rows: Vec<f32> = fallback_rows
            .iter()
            .flat_map(|&i| test[i * d..(i + 1) * d].iter().copied())
            .collect();
        let (fi, fk) = exact(&rows)?;
        for (s, &i) in fallback_rows.iter().enumerate() {
            idx[i * k..(i + 1) * k].copy_from_slice(&fi[s * k..(s + 1) * k]);
            keys[i * k..(i + 1) * k].copy_from_slice(&fk[s * k..(s + 1) * k]);
        }
    }
    Ok((idx, keys, stats))
}

/// The integer scan of test rows `r0..r0 + setup.len()` against every
/// training panel, a block of panels at a time: each row's candidates
/// (training indices whose lower bound `k̃ − δ` is at most the k-th
/// smallest upper bound `k̃ + δ`), or `None` for a row that passed
/// [`MAX_CANDIDATES`]. `setup[i]` belongs to row `r0 + i`.
///
/// # Safety
/// AVX2 and FMA must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn scan_rows(
    train_bytes: &[u8],
    test_bytes: &[u8],
    panel: &PanelData<'_>,
    n: usize,
    kpad: usize,
    k: usize,
    r0: usize,
    setup: &[RowSetup],
) -> Vec<Option<Vec<u32>>> {
    let rows = setup.len();
    let panels = n.div_ceil(PANEL);
    let tiles = rows.div_ceil(ROWS);
    let mut states: Vec<Row> = setup.iter().map(|s| Row::new(k, s.slack)).collect();
    let a0 = &test_bytes[r0 * kpad..(r0 + tiles * ROWS) * kpad];
    let mut out = [[0i32; PANEL]; ROWS];
    let mut lower = [0f32; PANEL];
    let mut upper = [0f32; PANEL];
    for pb0 in (0..panels).step_by(BLOCK_PANELS) {
        let pb1 = (pb0 + BLOCK_PANELS).min(panels);
        for t in 0..tiles {
            let a = &a0[t * ROWS * kpad..(t + 1) * ROWS * kpad];
            let live = (rows - t * ROWS).min(ROWS);
            if states[t * ROWS..t * ROWS + live]
                .iter()
                .all(|st| st.overflow)
            {
                continue; // every row of the tile goes to the exact path
            }
            for p in pb0..pb1 {
                let b = &train_bytes[p * PANEL * kpad..(p + 1) * PANEL * kpad];
                // SAFETY: `a` holds ROWS rows of `kpad` bytes and `b` one
                // panel of PANEL·kpad bytes; AVX2 is present (caller).
                kernel(a, b, kpad, &mut out);
                let j0 = p * PANEL;
                for r in 0..live {
                    let st = &mut states[t * ROWS + r];
                    // SAFETY: each slice holds PANEL values; AVX2, FMA present.
                    let mask = scan(
                        &out[r],
                        panel,
                        j0,
                        &setup[t * ROWS + r],
                        st.tau,
                        &mut lower,
                        &mut upper,
                    );
                    if mask != 0 {
                        for m in 0..PANEL {
                            if mask & (1 << m) != 0 && j0 + m < n {
                                st.admit(lower[m], upper[m], (j0 + m) as u32);
                            }
                        }
                    }
                }
            }
        }
    }
    states
        .into_iter()
        .map(|st| {
            (!st.overflow).then(|| {
                let tau = st.tau;
                st.cands
                    .into_iter()
                    .filter(|&(c, _)| c <= tau)
                    .map(|(_, j)| j)
                    .collect()
            })
        })
        .collect()
}

/// `out[r][m] = Σ_k a_u[r][k] · b[m][k]` for ROWS offset test rows against
/// one panel, exactly in integers.
///
/// # Safety
/// AVX2 must be present; `a.len() ≥ ROWS·kpad`, `b.len() ≥ PANEL·kpad`,
/// `kpad` a multiple of [`KSTEP`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel(a: &[u8], b: &[u8], kpad: usize, out: &mut [[i32; PANEL]; ROWS]) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= ROWS * kpad && b.len() >= PANEL * kpad && kpad.is_multiple_of(KSTEP));
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); ROWS];
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut k = 0;
    while k < kpad {
        // Two 4-byte groups of k for the 8 panel rows.
        let b0 = _mm256_loadu_si256(pb.add(k * PANEL) as *const __m256i);
        let b1 = _mm256_loadu_si256(pb.add((k + 4) * PANEL) as *const __m256i);
        for (r, acc) in acc.iter_mut().enumerate() {
            let ar = pa.add(r * kpad + k);
            let a0 = _mm256_set1_epi32((ar as *const i32).read_unaligned());
            let a1 = _mm256_set1_epi32((ar.add(4) as *const i32).read_unaligned());
            // i16 lanes: 2 products each, twice: |sum| ≤ 4·126·63 < 2¹⁵.
            let h = _mm256_add_epi16(_mm256_maddubs_epi16(a0, b0), _mm256_maddubs_epi16(a1, b1));
            *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(h, ones));
        }
        k += KSTEP;
    }
    for (o, acc) in out.iter_mut().zip(acc) {
        _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, acc);
    }
}

/// Per training row (padded to whole panels) data of the scan.
#[derive(Debug)]
struct PanelData<'a> {
    /// `OFFSET·Σ q_b`: the raw kernel product minus this is `q_a·q_b`.
    corr: &'a [i32],
    scale: &'a [f32],
    /// The key's bias; `+∞` on padding rows.
    bias: &'a [f32],
    norm_q: &'a [f32],
    norm_e: &'a [f32],
}

/// Bounds `k̃ ∓ δ` on the keys of one test row against the panel at
/// training row `j0`, from the kernel's `raw` products; stores them in
/// `lower`/`upper` and returns the mask of lanes with `lower ≤ tau`.
///
/// # Safety
/// AVX2 and FMA must be present; `panel`'s slices hold `j0 + PANEL` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn scan(
    raw: &[i32; PANEL],
    panel: &PanelData<'_>,
    j0: usize,
    row: &RowSetup,
    tau: f32,
    lower: &mut [f32; PANEL],
    upper: &mut [f32; PANEL],
) -> u32 {
    use std::arch::x86_64::*;
    let at = |v: &[f32]| _mm256_loadu_ps(v[j0..j0 + PANEL].as_ptr());
    let dot = _mm256_sub_epi32(
        _mm256_loadu_si256(raw.as_ptr() as *const __m256i),
        _mm256_loadu_si256(panel.corr[j0..j0 + PANEL].as_ptr() as *const __m256i),
    );
    let f = _mm256_mul_ps(_mm256_set1_ps(row.p), at(panel.scale));
    let key = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), f, at(panel.bias));
    let delta = _mm256_fmadd_ps(
        _mm256_set1_ps(row.c1),
        at(panel.norm_q),
        _mm256_fmadd_ps(
            _mm256_set1_ps(row.c2),
            at(panel.norm_e),
            _mm256_set1_ps(row.slack),
        ),
    );
    let lo = _mm256_sub_ps(key, delta);
    let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(lo, _mm256_set1_ps(tau)));
    if mask != 0 {
        _mm256_storeu_ps(lower.as_mut_ptr(), lo);
        _mm256_storeu_ps(upper.as_mut_ptr(), _mm256_add_ps(key, delta));
    }
    mask as u32
}

/// `Σ a_i b_i` in f32: eight FMA lanes in four accumulators over blocks of
/// 32, then eight, a fixed pairwise sum of the lanes and a sequential
/// remainder (at most `d/8 + 16` roundings on any product's path).
///
/// # Safety
/// AVX2 and FMA must be present; `a.len() == b.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (l, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_ps(pa.add(i + 8 * l));
            let y = _mm256_loadu_ps(pb.add(i + 8 * l));
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i)),
            _mm256_loadu_ps(pb.add(i)),
            acc[0],
        );
        i += 8;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), v);
    let mut s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    while i < n {
        s += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    s
}

/// `Σ a_i b_i` in f64 (each product of two f32 is exact in f64), in eight
/// fixed lanes so the result does not depend on the machine.
///
/// # Safety
/// AVX2 and FMA must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] as f64 * y[l] as f64;
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += *x as f64 * *y as f64;
    }
    s
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};
    use whitening_core::cpu::has_avx2_fma;

    /// The integer kernel's products equal the exact dot products of the
    /// levels, also at the extremes of the range (all ±63, offsets 0/126).
    #[test]
    fn kernel_products_are_exact_integers() {
        if !has_avx2_fma() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for d in [1usize, 7, 8, 13, 512] {
            let mut test: Vec<f32> = (0..ROWS * d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut train: Vec<f32> = (0..PANEL * d)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            // Extremes: a row of +max against rows of +max and −max.
            test[..d].fill(1.0);
            train[..d].fill(1.0);
            train[d..2 * d].fill(-1.0);
            let kpad = padded(d);
            let a = quantise_test(&test, d, ROWS);
            let b = quantise_train(&train, d);
            let mut out = [[0i32; PANEL]; ROWS];
            // SAFETY: AVX2 checked; sizes as built above.
            unsafe { kernel(&a.bytes, &b.bytes, kpad, &mut out) };
            let level = |x: &[f32]| -> Vec<i64> {
                let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                x.iter()
                    .map(|v| (v * (1.0 / (max / LEVELS))).round() as i64)
                    .collect()
            };
            for r in 0..ROWS {
                let qa = level(&test[r * d..(r + 1) * d]);
                for m in 0..PANEL {
                    let qb = level(&train[m * d..(m + 1) * d]);
                    let want: i64 = qa.iter().zip(&qb).map(|(x, y)| x * y).sum();
                    let got = out[r][m] as i64 - (OFFSET * b.sum_q[m]) as i64;
                    assert_eq!(got, want, "d {d} row {r} col {m}");
                }
            }
        }
    }

    /// The error bound of the module comment holds on data built to make it
    /// tight (rows parallel to their quantisation errors) and on random rows.
    #[test]
    fn quantisation_error_bound_holds() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let d = 64;
        let mut levels = vec![0i8; d];
        for trial in 0..2000 {
            let gen = |rng: &mut ChaCha8Rng| -> Vec<f32> {
                (0..d)
                    .map(|_| {
                        let z: f32 = StandardNormal.sample(rng);
                        if trial % 2 == 0 {
                            z
                        } else {
                            z.powi(3)
                        }
                    })
                    .collect()
            };
            let (a, b) = (gen(&mut rng), gen(&mut rng));
            let (sa, nqa, nea, _) = quantise_row(&a, &mut levels);
            let qa: Vec<f64> = levels.iter().map(|&l| l as f64).collect();
            let (sb, nqb, neb, _) = quantise_row(&b, &mut levels);
            let qb: Vec<f64> = levels.iter().map(|&l| l as f64).collect();
            let approx =
                sa as f64 * sb as f64 * qa.iter().zip(&qb).map(|(x, y)| x * y).sum::<f64>();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let bound = nea * nqb + nqa * neb + nea * neb;
            assert!(
                (exact - approx).abs() <= bound * (1.0 + 1e-9),
                "trial {trial}"
            );
            // Not vacuous: the bound is within ~100× of the actual error
            // scale for these shapes (a loose bound would let everything in).
            assert!(bound < 0.2 * (nqa * nqb), "trial {trial}: bound {bound}");
        }
    }

    fn brute(
        train: &[f32],
        test: &[f32],
        bias: &[f32],
        d: usize,
        k: usize,
        alpha: f32,
    ) -> Vec<i64> {
        let n = train.len() / d;
        let mut out = Vec::new();
        for a in test.chunks(d) {
            let mut keys: Vec<(f64, usize)> = (0..n)
                .map(|j| {
                    let dot: f64 = a
                        .iter()
                        .zip(&train[j * d..(j + 1) * d])
                        .map(|(x, y)| *x as f64 * *y as f64)
                        .sum();
                    (bias[j] as f64 + alpha as f64 * dot, j)
                })
                .collect();
            keys.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            out.extend(keys[..k].iter().map(|&(_, j)| j as i64));
        }
        out
    }

    fn problem<'a>(
        train: &'a [f32],
        test: &'a [f32],
        bias: &'a [f32],
        d: usize,
        k: usize,
        alpha: f32,
    ) -> Problem<'a> {
        Problem {
            train,
            test,
            bias,
            d,
            k,
            alpha,
        }
    }

    fn no_exact(_: &[f32]) -> Result<(Vec<i64>, Vec<f32>), crate::EvalError> {
        panic!("no row should need the exact path here")
    }

    /// Gaussian clusters (the bench's data, smaller), integer features with
    /// exact ties and duplicated rows, cosine keys, sizes that are not whole
    /// panels, tiles or kernel steps: the prefilter finds the neighbours of
    /// exact f64 arithmetic, in (key, index) order, and ranks every row
    /// from its candidates.
    #[test]
    fn prefilter_matches_f64_brute_force() {
        if !has_avx2_fma() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (case, (n, q, d, k)) in [
            (1000, 50, 64, 5),
            (1003, 37, 61, 1),
            (517, 13, 13, 20),
            (700, 20, 7, 6),
        ]
        .into_iter()
        .enumerate()
        {
            let centres: Vec<f32> = (0..10 * d)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            let row = |rng: &mut ChaCha8Rng| -> Vec<f32> {
                if case == 3 {
                    (0..d).map(|_| rng.random_range(0..3) as f32).collect()
                } else {
                    let c = rng.random_range(0..10usize) * d;
                    (0..d)
                        .map(|i| {
                            let z: f32 = StandardNormal.sample(rng);
                            centres[c + i] + 2.0 * z
                        })
                        .collect::<Vec<f32>>()
                }
            };
            let mut train: Vec<f32> = (0..n).flat_map(|_| row(&mut rng)).collect();
            // Duplicates: exact ties between different training indices.
            let dup = train[5 * d..6 * d].to_vec();
            for r in train.chunks_mut(d).skip(7).step_by(97) {
                r.copy_from_slice(&dup);
            }
            let test: Vec<f32> = (0..q).flat_map(|_| row(&mut rng)).collect();
            for cosine in [false, true] {
                let (train, test) = if cosine {
                    let norm = |x: &[f32]| -> Vec<f32> {
                        x.chunks(d)
                            .flat_map(|r| {
                                let s = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                                r.iter().map(move |v| v / s)
                            })
                            .collect()
                    };
                    (norm(&train), norm(&test))
                } else {
                    (train.clone(), test.clone())
                };
                let (bias, alpha): (Vec<f32>, f32) = if cosine {
                    (vec![0.0; n], -1.0)
                } else {
                    (
                        train
                            .chunks(d)
                            .map(|r| r.iter().map(|v| v * v).sum())
                            .collect(),
                        -2.0,
                    )
                };
                let (idx, keys, stats) =
                    k_best(&problem(&train, &test, &bias, d, k, alpha), true, &no_exact)
                        .unwrap()
                        .unwrap();
                let want = brute(&train, &test, &bias, d, k, alpha);
                assert_eq!(idx, want, "case {case} cosine {cosine}");
                assert_eq!(stats.ranked, q);
                assert!(stats.mean_candidates >= k as f64);
                assert!(keys
                    .windows(2)
                    .enumerate()
                    .all(|(i, w)| (i + 1) % k == 0 || w[0] <= w[1]));
            }
        }
    }

    /// Identical training rows tie every key: no row can be narrowed down,
    /// the probe gives the whole problem to the exact path, and the
    /// neighbours are the smallest indices.
    #[test]
    fn a_problem_the_probe_finds_hopeless_goes_to_the_exact_path_whole() {
        if !has_avx2_fma() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (n, d, k, q) = (MAX_CANDIDATES + 100, 16, 5, 10);
        let row: Vec<f32> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
        let train: Vec<f32> = (0..n).flat_map(|_| row.iter().copied()).collect();
        let test: Vec<f32> = (0..q * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let bias: Vec<f32> = train
            .chunks(d)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        let calls = std::cell::Cell::new(0);
        let exact = |rows: &[f32]| {
            calls.set(calls.get() + 1);
            Ok((
                brute(&train, rows, &bias, d, k, -2.0),
                vec![0.0; rows.len() / d * k],
            ))
        };
        let (idx, _, stats) = k_best(&problem(&train, &test, &bias, d, k, -2.0), true, &exact)
            .unwrap()
            .unwrap();
        assert_eq!((stats.fallback, stats.ranked, calls.get()), (q, 0, 1));
        assert_eq!(idx, (0..q).flat_map(|_| 0..k as i64).collect::<Vec<_>>());
    }

    /// A test row with one huge coordinate, where every training row is 0,
    /// quantises all its other coordinates to zero: its bound admits the
    /// whole training set, so it is handed to the exact path, and the answer
    /// is still right. So is a row of a training set of identical rows.
    #[test]
    fn rows_the_bound_cannot_narrow_go_to_the_exact_path() {
        if !has_avx2_fma() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (n, d, k) = (MAX_CANDIDATES + 900, 32, 5);
        let mut train: Vec<f32> = (0..n * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        train.chunks_mut(d).for_each(|r| r[1] = 0.0);
        let mut test: Vec<f32> = (0..3 * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        test[d + 1] = 1e6;
        let bias: Vec<f32> = train
            .chunks(d)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        let exact = |rows: &[f32]| {
            let idx = brute(&train, rows, &bias, d, k, -2.0);
            Ok((idx, vec![0.0; rows.len() / d * k]))
        };
        let (idx, _, stats) = k_best(&problem(&train, &test, &bias, d, k, -2.0), true, &exact)
            .unwrap()
            .unwrap();
        assert_eq!(stats.fallback, 1, "{stats:?}");
        assert_eq!(idx, brute(&train, &test, &bias, d, k, -2.0));
    }
}
