//! The linear probe's step on the CPU as one fused pass over the batch.
//!
//! For each row `x_r` of a mini-batch (read in place from the feature
//! matrix by its index: no per-epoch permuted copy of the features), the
//! logits `θ x_r + b`, the softmax, `g_r = (p_r − y_r)/B`, and the
//! accumulation `∂L/∂θ += g_r x_rᵀ` happen while `x_r` is in L1. Rows go
//! four at a time and classes four at a time, so each load of `θ` serves
//! four rows; the batch is split over rayon's threads, each with its own
//! gradient buffer, summed at the end. The arithmetic is the tensor path's
//! (f32 products and sums, f32 softmax); only the summation order differs.
//!
//! On x86-64 CPUs with AVX2 + FMA (chosen at run time) the kernel is
//! written in intrinsics (`avx2`); elsewhere a portable version over
//! fixed-size lane arrays runs.

// `target_feature` functions are `unsafe` to call; each call is guarded by
// the matching run-time CPU check.
#![allow(unsafe_code)]

use rayon::prelude::*;

/// The training rows of the probe, borrowed from a contiguous `[n, d]` f32
/// feature matrix, with labels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeData<'a> {
    pub x: &'a [f32],
    pub y: &'a [i64],
    pub d: usize,
}

/// Parameters `θ = [W | b]` as `[classes, d + 1]`, row-major, f32.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub classes: usize,
    pub d: usize,
}

impl Shape {
    fn d1(&self) -> usize {
        self.d + 1
    }
    /// Classes rounded up to whole blocks of [`CB`].
    fn padded(&self) -> usize {
        self.classes.div_ceil(CB) * CB
    }
}

/// Rows per tile and classes per block of the register tile.
const R: usize = 4;
const CB: usize = 4;
/// Rows per rayon task: large enough that a task's gradient buffer is
/// worth its summation.
const ROWS_PER_TASK: usize = 256;

/// `∂L/∂θ` of the mean softmax cross-entropy over `rows` of `data`, into
/// `grad` (`[classes, d + 1]`, overwritten). `theta` is `[classes, d + 1]`.
pub(crate) fn batch_grad(
    data: ProbeData<'_>,
    shape: Shape,
    theta: &[f32],
    rows: &[usize],
    grad: &mut [f32],
) {
    assert_eq!(data.d, shape.d, "features and parameters disagree on d");
    assert_eq!(data.x.len(), data.y.len() * data.d, "features are [n, d]");
    let (cp, d1) = (shape.padded(), shape.d1());
    // θ padded with zero rows to whole class blocks (padded classes get
    // logit 0 and are left out of the softmax).
    let mut padded = vec![0f32; cp * d1];
    padded[..shape.classes * d1].copy_from_slice(&theta[..shape.classes * d1]);
    let scale = 1.0 / rows.len().max(1) as f32;
    let tasks: Vec<&[usize]> = rows.chunks(ROWS_PER_TASK).collect();
    let partials: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|chunk| {
            let mut g = vec![0f32; cp * d1];
            accumulate(data, shape, &padded, chunk, scale, &mut g);
            g
        })
        .collect();
    let out = &mut grad[..shape.classes * d1];
    out.fill(0.0);
    for p in &partials {
        for (o, v) in out.iter_mut().zip(&p[..shape.classes * d1]) {
            *o += v;
        }
    }
}

/// Dispatches to the AVX2 + FMA kernel where the CPU has it (every x86-64
/// CPU with AVX-512 has it too), to the portable one elsewhere.
fn accumulate(
    data: ProbeData<'_>,
    shape: Shape,
    theta: &[f32],
    rows: &[usize],
    scale: f32,
    grad: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if whitening_core::cpu::has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { avx2::accumulate(data, shape, theta, rows, scale, grad) };
            return;
        }
    }
    accumulate_generic::<8, false>(data, shape, theta, rows, scale, grad);
}

/// The softmax of the real classes of one row of logits, turned in place
/// into `g = (p − onehot(label))·scale`.
#[inline(always)]
fn softmax_grad(row: &mut [f32], label: usize, scale: f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
    row[label] -= 1.0;
    for v in row.iter_mut() {
        *v *= scale;
    }
}

/// [`softmax_grad`] for each row of a tile's logits (rows `stride` apart,
/// `classes` real classes each); rows past the tile's live ones (a short
/// last tile) get `g = 0`.
#[inline(always)]
fn tile_softmax_grad(
    logits: &mut [f32],
    stride: usize,
    classes: usize,
    labels: &[i64],
    tile: &[usize],
    scale: f32,
) {
    for (r, row) in logits.chunks_mut(stride).enumerate() {
        let row = &mut row[..classes];
        match tile.get(r) {
            Some(&i) => softmax_grad(row, labels[i] as usize, scale),
            None => row.fill(0.0),
        }
    }
}

/// The x86-64 kernel in AVX2 + FMA intrinsics, 8 lanes of f32.
///
/// Per tile of [`RT`] rows: the logits in register blocks of 4 rows × 2
/// classes (8 accumulators, each load of `x` serving two classes and each
/// load of `θ` four rows), then per class one pass over `d` that adds
/// `Σ_r g[r][c] x_r` to the gradient row with the 8 broadcast `g[r][c]`
/// in registers (one load and one store of the gradient per 8 FMAs).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{tile_softmax_grad, ProbeData, Shape};
    use std::arch::x86_64::*;

    /// Rows per tile.
    const RT: usize = 8;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    /// [`super::accumulate`] for CPUs with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA. Bounds: `data.x` holds
    /// `data.y.len()` rows of `d`, every index in `rows` is a row of it,
    /// and `theta` and `grad` hold at least `classes` rows of `d + 1`
    /// (asserted on entry; the pointer arithmetic below stays inside).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn accumulate(
        data: ProbeData<'_>,
        shape: Shape,
        theta: &[f32],
        rows: &[usize],
        scale: f32,
        grad: &mut [f32],
    ) {
        let (d, d1, classes) = (shape.d, shape.d + 1, shape.classes);
        let n = data.y.len();
        assert!(data.x.len() >= n * d && theta.len() >= classes * d1 && grad.len() >= classes * d1);
        assert!(rows.iter().all(|&i| i < n), "row index out of range");
        let chunks = d / 8;
        let mut logits = vec![0f32; RT * classes];
        for tile in rows.chunks(RT) {
            let live = tile.len();
            // A short last tile repeats its first row with g = 0.
            let xp: [*const f32; RT] = std::array::from_fn(|r| {
                data.x.as_ptr().add(tile[if r < live { r } else { 0 }] * d)
            });
            for half in 0..RT / 4 {
                let xr = &xp[4 * half..4 * half + 4];
                for c in (0..classes).step_by(2) {
                    let two = c + 1 < classes;
                    let t0 = theta.as_ptr().add(c * d1);
                    let t1 = if two { t0.add(d1) } else { t0 };
                    let mut a = [_mm256_setzero_ps(); 8];
                    for k in 0..chunks {
                        let o = k * 8;
                        let v0 = _mm256_loadu_ps(t0.add(o));
                        let v1 = _mm256_loadu_ps(t1.add(o));
                        for r in 0..4 {
                            let x = _mm256_loadu_ps(xr[r].add(o));
                            a[2 * r] = _mm256_fmadd_ps(x, v0, a[2 * r]);
                            a[2 * r + 1] = _mm256_fmadd_ps(x, v1, a[2 * r + 1]);
                        }
                    }
                    for r in 0..4 {
                        for (j, tp) in [(0, t0), (1, t1)].into_iter().take(1 + two as usize) {
                            let mut s = hsum(a[2 * r + j]);
                            for k in chunks * 8..d {
                                s = (*tp.add(k)).mul_add(*xr[r].add(k), s);
                            }
                            logits[(4 * half + r) * classes + c + j] = s + *tp.add(d);
                        }
                    }
                }
            }
            tile_softmax_grad(&mut logits, classes, classes, data.y, tile, scale);
            for c in 0..classes {
                let gr: [f32; RT] = std::array::from_fn(|r| logits[r * classes + c]);
                let gv: [__m256; RT] = std::array::from_fn(|r| _mm256_set1_ps(gr[r]));
                let out = grad.as_mut_ptr().add(c * d1);
                for k in 0..chunks {
                    let o = k * 8;
                    let mut acc = _mm256_loadu_ps(out.add(o));
                    for r in 0..RT {
                        acc = _mm256_fmadd_ps(gv[r], _mm256_loadu_ps(xp[r].add(o)), acc);
                    }
                    _mm256_storeu_ps(out.add(o), acc);
                }
                for k in chunks * 8..d {
                    let mut acc = *out.add(k);
                    for r in 0..RT {
                        acc = gr[r].mul_add(*xp[r].add(k), acc);
                    }
                    *out.add(k) = acc;
                }
                *out.add(d) += gr.iter().sum::<f32>();
            }
        }
    }
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Adds the gradient of `rows` (scaled by `scale` = 1/B) into `grad`
/// (`[padded classes, d + 1]`); `theta` is padded the same way.
#[inline(always)]
fn accumulate_generic<const L: usize, const FMA: bool>(
    data: ProbeData<'_>,
    shape: Shape,
    theta: &[f32],
    rows: &[usize],
    scale: f32,
    grad: &mut [f32],
) {
    let (d, d1, cp, classes) = (shape.d, shape.d1(), shape.padded(), shape.classes);
    let chunks = d / L;
    let mut logits = vec![0f32; R * cp];
    for tile in rows.chunks(R) {
        // The tile's rows; a short last tile repeats its first row with a
        // zero weight.
        let live = tile.len();
        let xs: [&[f32]; R] = std::array::from_fn(|r| {
            let i = tile[if r < live { r } else { 0 }];
            &data.x[i * d..(i + 1) * d]
        });
        // Logits, four classes × four rows per pass over the features.
        for cb in (0..cp).step_by(CB) {
            let th: [&[f32]; CB] =
                std::array::from_fn(|c| &theta[(cb + c) * d1..(cb + c + 1) * d1]);
            let mut acc = [[[0f32; L]; CB]; R];
            for k in 0..chunks {
                let o = k * L;
                let xv: [[f32; L]; R] =
                    std::array::from_fn(|r| std::array::from_fn(|l| xs[r][o + l]));
                for c in 0..CB {
                    let t: [f32; L] = std::array::from_fn(|l| th[c][o + l]);
                    for r in 0..R {
                        for l in 0..L {
                            acc[r][c][l] = madd::<FMA>(t[l], xv[r][l], acc[r][c][l]);
                        }
                    }
                }
            }
            for r in 0..R {
                for c in 0..CB {
                    let mut s: f32 = acc[r][c].iter().sum();
                    for k in chunks * L..d {
                        s = madd::<FMA>(th[c][k], xs[r][k], s);
                    }
                    logits[r * cp + cb + c] = s + th[c][d];
                }
            }
        }
        // Softmax over the real classes, then g = (p − onehot)·scale in place.
        tile_softmax_grad(&mut logits, cp, classes, data.y, tile, scale);
        // ∂L/∂θ_c += Σ_r g[r][c] x_r (and the bias column += Σ_r g[r][c]).
        for c in 0..classes {
            let gr: [f32; R] = std::array::from_fn(|r| logits[r * cp + c]);
            let out = &mut grad[c * d1..(c + 1) * d1];
            for k in 0..chunks {
                let o = k * L;
                let mut a: [f32; L] = std::array::from_fn(|l| out[o + l]);
                for r in 0..R {
                    for l in 0..L {
                        a[l] = madd::<FMA>(gr[r], xs[r][o + l], a[l]);
                    }
                }
                out[o..o + L].copy_from_slice(&a);
            }
            for k in chunks * L..d {
                let mut a = out[k];
                for r in 0..R {
                    a = madd::<FMA>(gr[r], xs[r][k], a);
                }
                out[k] = a;
            }
            out[d] += gr.iter().sum::<f32>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The gradient in f64 straight from the formula, one row at a time.
    fn oracle(
        x: &[f32],
        y: &[i64],
        d: usize,
        classes: usize,
        theta: &[f32],
        rows: &[usize],
    ) -> Vec<f64> {
        let d1 = d + 1;
        let mut g = vec![0f64; classes * d1];
        for &i in rows {
            let xi = &x[i * d..(i + 1) * d];
            let logits: Vec<f64> = (0..classes)
                .map(|c| {
                    let th = &theta[c * d1..(c + 1) * d1];
                    th[d] as f64
                        + xi.iter()
                            .zip(th)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                })
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let s: f64 = e.iter().sum();
            for c in 0..classes {
                let gc =
                    (e[c] / s - if y[i] as usize == c { 1.0 } else { 0.0 }) / rows.len() as f64;
                for k in 0..d {
                    g[c * d1 + k] += gc * xi[k] as f64;
                }
                g[c * d1 + d] += gc;
            }
        }
        g
    }

    #[test]
    fn fused_gradient_matches_the_formula_in_f64() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // d not a multiple of 16 (tails), classes not a multiple of 4
        // (padding), a row count that is not a multiple of 4 (short tile)
        // and more rows than one rayon task.
        for (n, d, classes, b) in [(700, 37, 10, 603), (50, 512, 3, 13), (9, 5, 1, 9)] {
            let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-2.0..2.0)).collect();
            let y: Vec<i64> = (0..n)
                .map(|_| rng.random_range(0..classes as i64))
                .collect();
            let theta: Vec<f32> = (0..classes * (d + 1))
                .map(|_| rng.random_range(-0.5..0.5))
                .collect();
            let rows: Vec<usize> = (0..b).map(|_| rng.random_range(0..n)).collect();
            let mut grad = vec![f32::NAN; classes * (d + 1)];
            batch_grad(
                ProbeData { x: &x, y: &y, d },
                Shape { classes, d },
                &theta,
                &rows,
                &mut grad,
            );
            let want = oracle(&x, &y, d, classes, &theta, &rows);
            for (i, (g, w)) in grad.iter().zip(&want).enumerate() {
                // f32 sums of ≤ 700 terms of size ≤ 2: a few 1e-6 absolute.
                assert!(
                    (*g as f64 - w).abs() < 2e-5,
                    "n {n} d {d} C {classes}: [{i}] {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_gradient() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (n, d, classes): (usize, usize, usize) = (64, 45, 6);
        let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let y: Vec<i64> = (0..n)
            .map(|_| rng.random_range(0..classes as i64))
            .collect();
        let theta: Vec<f32> = (0..classes.div_ceil(CB) * CB * (d + 1))
            .map(|i| {
                if i < classes * (d + 1) {
                    rng.random_range(-0.5..0.5)
                } else {
                    0.0
                }
            })
            .collect();
        let rows: Vec<usize> = (0..n).collect();
        let data = ProbeData { x: &x, y: &y, d };
        let shape = Shape { classes, d };
        let run = |f: &dyn Fn(&mut [f32])| {
            let mut g = vec![0f32; theta.len()];
            f(&mut g);
            g
        };
        let base = run(&|g| accumulate_generic::<8, false>(data, shape, &theta, &rows, 0.5, g));
        let best = run(&|g| accumulate(data, shape, &theta, &rows, 0.5, g));
        for (a, b) in base.iter().zip(&best) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
