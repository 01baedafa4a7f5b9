//! The ZCA whitening loss (CW-RGP, CW, CW-GP, and ZCA batch whitening)
//! with its gradient in closed form.
//!
//! Forward, per whitened group (SPEC §2): the centred data matrix `A`
//! (`s` samples × `v` variables), `Σ = κ AᵀA + eps·I` with
//! `κ = (1 − eps)/(s − minus)`, `Σ = U Λ Uᵀ`, `Φ = U Λ^{-1/2} Uᵀ`,
//! whitened `Â = A Φ`. The pair loss `L` of [`crate::pairwise_view_loss`]
//! follows.
//!
//! Backward: with `G = ∂L/∂Â` and `B = AᵀG`, the Daleckii–Krein formula
//! for `Φ = f(Σ)`, `f(λ) = λ^{-1/2}`, gives
//!
//! ```text
//! ∂L/∂Σ = U (F ∘ Uᵀ sym(B) U) Uᵀ,   F_ij = (f(λ_i) − f(λ_j))/(λ_i − λ_j) = −1 / (√λ_i √λ_j (√λ_i + √λ_j))
//! ∂L/∂A = G Φ + 2κ A ∂L/∂Σ
//! ```
//!
//! then back through the centring and the gather. `F` in this form has
//! no `1/(λ_i − λ_j)`, so close eigenvalues cost no precision (autograd's
//! eigh backward divides by the gaps), and the whole backward is six
//! batched matrix products: no autograd graph through the decomposition
//! is recorded.
//!
//! Layout: the sub-batch split is one row gather of the flattened
//! `[views·m, d]` input and the group partition one channel gather per
//! sub-batch matrix (an index of `d` entries broadcast over its rows);
//! the way back is the inverse channel gather and one row gather by the
//! inverse order.
//!
//! On the CPU the `n = views·m/w` sub-batch matrices are split into one
//! contiguous range per core, and each range's gather, centring,
//! covariance, decomposition, `Φ`, `Â` (and later its backward) run on a
//! thread of their own with libtorch single-threaded: no OpenMP team to
//! synchronise, and the decomposition, which LAPACK runs one matrix at a
//! time, uses every core. In `f32` the decomposition is whitening-core's
//! own [`whitening_core::symmetric_eigen`] (2–2.5× faster than MKL's
//! `ssyevd` at these sizes on the machines measured), in `f64` and on
//! other devices libtorch's `linalg_eigh`.
//!
//! The loss returned carries this gradient through the surrogate
//! `(H·∂L/∂H).sum() + sg(L − (H·∂L/∂H).sum())`, whose value is `L` and
//! whose gradient with respect to `H` (and so to every parameter upstream)
//! is `∂L/∂H`. Second derivatives through it are not supported.

use rand::Rng;
use tch::{Device, Kind, Tensor};
use whitening_core::{
    covariance_of_centred, random_group_partition, random_sub_batches, WhiteningAxis,
    WhiteningConfig, WhiteningError,
};

use crate::single_threaded::SingleThreadedScope;
use crate::whitening_loss::pairwise_view_loss_and_grad;
use crate::LossError;

/// The pair loss of one random sub-batch split of `h: [views, m, d]`
/// whitened by the ZCA configuration `cfg`, and (when `want_grad`) its
/// gradient with respect to `h`, in `h`'s example order. Nothing is
/// recorded on the autograd tape.
pub(crate) fn zca_loss_and_grad<R: Rng + ?Sized>(
    h: &Tensor,
    cfg: &WhiteningConfig,
    w_size: i64,
    normalized: bool,
    want_grad: bool,
    rng: &mut R,
) -> Result<(Tensor, Option<Tensor>), LossError> {
    let h = h.detach();
    let device = h.device();
    let _single = (device == Device::Cpu).then(SingleThreadedScope::enter);
    let (views, m, d) = (h.size()[0], h.size()[1], h.size()[2]);
    let order = random_sub_batches(m, w_size, rng)?;
    cfg.validate(w_size, d)?;
    let (w, n) = (w_size, views * (m / w_size));
    let perms = if cfg.random_partition {
        random_group_partition(n, d, rng)
    } else {
        Tensor::arange(d, (Kind::Int64, Device::Cpu))
            .unsqueeze(0)
            .expand([n, d], false)
            .contiguous()
    };
    // Row `i·w + j` of the layout is example `order[s·w + j]` of view `v`
    // for sub-batch matrix `i = v·(m/w) + s`; `rows` maps it into the
    // flattened `[views·m, d]` input and `inverse` maps back.
    let rows: Vec<i64> = (0..views)
        .flat_map(|v| order.iter().map(move |&r| v * m + r))
        .collect();
    let mut inverse = vec![0i64; rows.len()];
    for (i, &r) in rows.iter().enumerate() {
        inverse[r as usize] = i as i64;
    }
    let inverse = Tensor::from_slice(&inverse).to_device(device);
    let layout = Layout {
        axis: cfg.axis,
        w,
        d,
        g: cfg.groups,
    };
    // The `n` sub-batch matrices (each `g` whitened groups) are
    // independent until the pair loss: on the CPU they are split into one
    // contiguous range per core, each gathered, whitened and (later)
    // differentiated by its own thread with libtorch single-threaded
    // (see `on_threads`).
    let parts = cpu_parts(device, n);
    let chunks: Vec<Chunk> = split_even(n, parts)
        .map(|(start, len)| {
            let range = (start * w) as usize..((start + len) * w) as usize;
            let perm = perms.narrow(0, start, len);
            let inverse_perm = perm.argsort(-1, false);
            // Row indices into the chunk's `[len·d, ·]` channel-major view.
            let offsets = Tensor::arange(len, (Kind::Int64, Device::Cpu)).unsqueeze(1) * d;
            Chunk {
                rows: Tensor::from_slice(&rows[range]).to_device(device),
                channel_rows: (&perm + &offsets).view([-1]).to_device(device),
                inverse_channel_rows: (&inverse_perm + &offsets).view([-1]).to_device(device),
                perm: perm.to_device(device),
                inverse_perm: inverse_perm.to_device(device),
            }
        })
        .collect();
    let h2 = h.view([views * m, d]);
    let (samples, _) = cfg.samples_and_vars(w, d);
    let denom = samples as f64 - cfg.minus;
    let eps = cfg.eps;
    // Tensors are `Send` but not `Sync`: each job owns its chunk and a
    // shallow clone of the (read-only) input.
    let jobs: Vec<(Chunk, Tensor)> = chunks
        .into_iter()
        .map(|c| (c, h2.shallow_clone()))
        .collect();
    let forwards = on_threads(jobs, |(c, x)| {
        let a = layout.centre(&layout.gather(&x, &c));
        let f = forward(a, denom, eps)?;
        let out_rows = layout.scatter(&f.out, &c);
        Ok::<_, LossError>((f, c, out_rows))
    });
    let forwards = forwards.into_iter().collect::<Result<Vec<_>, _>>()?;
    let z = Tensor::cat(&forwards.iter().map(|f| &f.2).collect::<Vec<_>>(), 0)
        .index_select(0, &inverse)
        .view_as(&h);

    let (loss, g_z) = pairwise_view_loss_and_grad(&z, normalized, want_grad);
    let Some(g_z) = g_z else {
        return Ok((loss, None));
    };
    let g_z2 = g_z.view([views * m, d]);
    let kappa = (1.0 - eps) / denom;
    let jobs: Vec<(Forward, Chunk, Tensor)> = forwards
        .into_iter()
        .map(|(f, c, _)| (f, c, g_z2.shallow_clone()))
        .collect();
    let g_rows = on_threads(jobs, |(f, c, g_z)| {
        let g_out = layout.gather(&g_z, &c);
        let g_a = layout.centre(&backward(&f, &g_out, kappa));
        layout.scatter(&g_a, &c)
    });
    let g_h = Tensor::cat(&g_rows, 0)
        .index_select(0, &inverse)
        .view_as(&h);
    Ok((loss, Some(g_h)))
}

/// One thread's share of the sub-batch matrices: the input rows of its
/// matrices (`w` per matrix, in layout order) and each matrix's channel
/// permutation `[len, d]` with its inverse.
struct Chunk {
    rows: Tensor,
    perm: Tensor,
    inverse_perm: Tensor,
    /// `i·d + perm[i][t]` for matrix `i` of the chunk and channel `t`:
    /// the channel permutation as a row gather of a `[len·d, w]` view.
    channel_rows: Tensor,
    inverse_channel_rows: Tensor,
}

/// Where the whitened groups of a `[w, d]` sub-batch matrix live.
#[derive(Clone, Copy)]
struct Layout {
    axis: WhiteningAxis,
    w: i64,
    d: i64,
    g: i64,
}

impl Layout {
    /// The chunk's groups, `[len·g, c, w]` (CW: samples are channels) or
    /// `[len·g, w, c]` (BW), taken from the flattened `[views·m, d]`
    /// tensor `x`: its rows by the sub-batch order, its channels by each
    /// matrix's partition.
    fn gather(&self, x: &Tensor, chunk: &Chunk) -> Tensor {
        let len = chunk.perm.size()[0];
        let (w, d, g) = (self.w, self.d, self.g);
        let x = x.index_select(0, &chunk.rows).view([len, w, d]);
        match self.axis {
            // Channel-major `[len·d, w]`: the partition is a row gather
            // that lands directly in the `[len, g, c, w]` layout.
            WhiteningAxis::Channel => x
                .transpose(1, 2)
                .contiguous()
                .view([len * d, w])
                .index_select(0, &chunk.channel_rows)
                .view([len * g, d / g, w]),
            WhiteningAxis::Batch => {
                let index = chunk.perm.unsqueeze(1).expand([len, w, d], false);
                x.gather(2, &index, false)
                    .view([len, w, g, d / g])
                    .permute([0, 2, 1, 3])
                    .contiguous()
                    .view([len * g, w, d / g])
            }
        }
    }

    /// The inverse of [`Layout::gather`]: `[len·w, d]` rows in layout order
    /// with the channels back in place.
    fn scatter(&self, t: &Tensor, chunk: &Chunk) -> Tensor {
        let len = chunk.perm.size()[0];
        let (w, d, g) = (self.w, self.d, self.g);
        match self.axis {
            WhiteningAxis::Channel => t
                .view([len * d, w])
                .index_select(0, &chunk.inverse_channel_rows)
                .view([len, d, w])
                .transpose(1, 2)
                .reshape([len * w, d]),
            WhiteningAxis::Batch => {
                let t = t
                    .view([len, g, w, d / g])
                    .permute([0, 2, 1, 3])
                    .reshape([len, w, d]);
                let index = chunk.inverse_perm.unsqueeze(1).expand([len, w, d], false);
                t.gather(2, &index, false).view([len * w, d])
            }
        }
    }

    /// Centring of the gathered groups, and of their gradient (the
    /// centring is a projection, so its backward is itself): CW centres
    /// each example over all `d` channels (the published code's and the
    /// peer's choice; SPEC §2's per-group centring differs — see
    /// `whitening_core::whiten`), BW each channel over the sub-batch.
    fn centre(&self, t: &Tensor) -> Tensor {
        match self.axis {
            WhiteningAxis::Channel => {
                let (g, w) = (self.g, self.w);
                let v = t.view([-1, g, self.d / g, w]);
                (&v - v.mean_dim(&[1i64, 2][..], true, None)).view_as(t)
            }
            WhiteningAxis::Batch => t - t.mean_dim(&[1i64][..], true, None),
        }
    }
}

/// `0..n` in `parts` contiguous `(start, len)` ranges of near-equal size.
fn split_even(n: i64, parts: i64) -> impl Iterator<Item = (i64, i64)> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts).map(move |p| {
        let start = n * p / parts;
        (start, n * (p + 1) / parts - start)
    })
}

/// What the backward of one chunk of matrices keeps from its forward.
struct Forward {
    a: Tensor,
    u: Tensor,
    sqrt_l: Tensor,
    phi: Tensor,
    out: Tensor,
}

/// `Σ = κ AᵀA + eps·I = U Λ Uᵀ`, `Φ = U Λ^{-1/2} Uᵀ`, `Â = A Φ` for a chunk
/// `a: [b, s, v]` of centred matrices.
fn forward(a: Tensor, denom: f64, eps: f64) -> Result<Forward, LossError> {
    let cov = covariance_of_centred(&a, denom, eps);
    let (lambda, u) = whitening_core::symmetric_eigen::eigh(&cov)?;
    ensure_positive(&lambda)?;
    let sqrt_l = lambda.sqrt();
    let phi = (&u * sqrt_l.reciprocal().unsqueeze(-2)).matmul(&u.transpose(-1, -2));
    let out = a.matmul(&phi);
    Ok(Forward {
        a,
        u,
        sqrt_l,
        phi,
        out,
    })
}

/// `∂L/∂A = G Φ + 2κ A ∂L/∂Σ` for one chunk (the module doc's formula),
/// with `g_out = G = ∂L/∂Â`.
fn backward(f: &Forward, g_out: &Tensor, kappa: f64) -> Tensor {
    let b = f.a.transpose(-1, -2).matmul(g_out);
    let b_sym = (&b + b.transpose(-1, -2)) * 0.5;
    let (si, sj) = (f.sqrt_l.unsqueeze(-1), f.sqrt_l.unsqueeze(-2));
    let factor = -((&si * &sj) * (&si + &sj)).reciprocal();
    let ut = f.u.transpose(-1, -2);
    let g_cov =
        f.u.matmul(&(ut.matmul(&b_sym).matmul(&f.u) * factor))
            .matmul(&ut);
    g_out.matmul(&f.phi).baddbmm(&f.a, &g_cov, 1.0, 2.0 * kappa)
}

/// How many chunks to split `b` independent matrices into: one per core
/// (at most 8) on the CPU, one on other devices (their kernels are
/// already parallel).
fn cpu_parts(device: Device, b: i64) -> i64 {
    if device != Device::Cpu {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    cores.clamp(1, 8).min(b.max(1))
}

/// `f` over `inputs`, the first on this thread and each other on a thread
/// of its own, results in input order. Runs inside the caller's
/// [`SingleThreadedScope`]: libtorch reads its thread count from a
/// process-wide setting when a new thread first calls it, so every
/// worker's libtorch calls are single-threaded too, and the parallelism
/// is exactly one chunk per thread, with no OpenMP team to synchronise
/// (the reason the scope exists; batched `eigh` hands matrices to LAPACK
/// one at a time, so splitting the batch is the only way it uses two
/// cores).
fn on_threads<I: Send, T: Send>(inputs: Vec<I>, f: impl Fn(I) -> T + Sync) -> Vec<T> {
    if inputs.len() <= 1 {
        return inputs.into_iter().map(&f).collect();
    }
    std::thread::scope(|s| {
        let mut inputs = inputs.into_iter();
        let first = inputs.next().expect("at least two inputs");
        let f = &f;
        let workers: Vec<_> = inputs.map(|i| s.spawn(move || f(i))).collect();
        let mut out = vec![f(first)];
        out.extend(
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
        );
        out
    })
}

/// The smallest eigenvalue must be positive and the largest finite, or
/// `Λ^{-1/2}` is not finite.
fn ensure_positive(lambda: &Tensor) -> Result<(), LossError> {
    let (min, max) = (
        lambda.min().double_value(&[]),
        lambda.max().double_value(&[]),
    );
    if min > 0.0 && max.is_finite() {
        return Ok(());
    }
    Err(WhiteningError::NonFinite {
        kind: "ZCA".into(),
        condition: if min > 0.0 { max / min } else { f64::INFINITY },
        min_eig: min,
        max_eig: max,
    }
    .into())
}

/// `L` as a tensor whose gradient with respect to `h` is `grad`:
/// `(h·grad).sum() + sg(L − (h·grad).sum())`.
pub(crate) fn with_gradient(h: &Tensor, loss: &Tensor, grad: &Tensor) -> Tensor {
    let surrogate = (h * grad).sum(loss.kind());
    &surrogate + (loss - surrogate.detach())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The premise of `on_threads`: a thread started inside the scope
    /// runs libtorch single-threaded without entering the scope itself,
    /// and the chunks come back in order.
    #[test]
    fn workers_inherit_the_single_thread_setting_and_keep_order() {
        let before = tch::get_num_threads();
        let _single = SingleThreadedScope::enter();
        let got = on_threads((0..3).collect(), |i: i64| {
            let t = Tensor::from_slice(&[i as f32]).matmul(&Tensor::from_slice(&[2f32]));
            (i, tch::get_num_threads(), t.double_value(&[]))
        });
        assert_eq!(
            got,
            vec![(0, 1, 0.0), (1, 1, 2.0), (2, 1, 4.0)],
            "thread count before the scope: {before}"
        );
    }
}
