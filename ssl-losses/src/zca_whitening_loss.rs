//! The ZCA whitening loss (CW-RGP, CW, CW-GP, and ZCA batch whitening)
//! with its gradient in closed form.
//!
//! Forward, per whitened group (`docs/reference.md` §2.1–§2.2): the centred
//! data matrix `A` (`s` samples × `v` variables), `Σ = κ AᵀA + eps·I` with
//! `κ = (1 − eps)/(s − minus)`, `Σ = U Λ Uᵀ`, `Φ = U Λ^{-1/2} Uᵀ`, whitened
//! `Â = A Φ`. The pair loss `L` of [`crate::pairwise_view_loss`] follows.
//!
//! Backward: with `G = ∂L/∂Â` and `B = AᵀG`, the Daleckii–Krein formula
//! for `Φ = f(Σ)`, `f(λ) = λ^{-1/2}`, gives
//!
//! ```text
//! ∂L/∂Σ = U (F ∘ Uᵀ sym(B) U) Uᵀ,   F_ij = (f(λ_i) − f(λ_j))/(λ_i − λ_j) = −1 / (√λ_i √λ_j (√λ_i + √λ_j))
//! ∂L/∂A = G Φ + 2κ A ∂L/∂Σ
//! ```
//!
//! then back through the centring and the gather. Both are
//! whitening-core's [`whitening_core::zca_closed_form`]. `F` in this form has
//! no `1/(λ_i − λ_j)`, so close eigenvalues cost no precision (autograd's
//! eigh backward divides by the gaps), and the whole backward is six
//! batched matrix products: no autograd graph through the decomposition
//! is recorded.
//!
//! Layout: the sub-batch split is one row gather of the flattened
//! `[views·m, d]` input and the group partition one row gather of each
//! matrix's channel-major `[d, w]` transpose (CW; BW gathers channels
//! with an index of `d` entries broadcast over the rows); the way back
//! inverts both, and each gradient row is written once, in place.
//!
//! On the CPU the `m/w` sub-batches are split into one contiguous range
//! per core, all views of a sub-batch in the same range. The pair loss
//! couples only the views of one example, so each range is a complete
//! job: its gather, centring, covariances, decompositions, `Φ`, `Â`, its
//! rows' share of the loss and of `∂L/∂Â`, and its backward run on a
//! thread of its own with libtorch single-threaded, with nothing serial
//! in between: no OpenMP team to synchronise, and the decomposition,
//! which LAPACK runs one matrix at a time, uses every core. With fewer
//! sub-batches than cores (`w = m`) the spare cores stay idle. In `f32`
//! the decomposition is whitening-core's own
//! [`whitening_core::symmetric_eigen`] (2–2.5× faster than MKL's `ssyevd`
//! at these sizes on the machines measured), in `f64` and on other
//! devices libtorch's `linalg_eigh`.
//!
//! The loss returned carries this gradient through the surrogate
//! `(H·∂L/∂H).sum() + sg(L − (H·∂L/∂H).sum())`, whose value is `L` and
//! whose gradient with respect to `H` (and so to every parameter upstream)
//! is `∂L/∂H`. Second derivatives through it are not supported.

use rand::Rng;
use tch::{Device, Kind, Tensor};
use whitening_core::{
    random_group_partition, random_sub_batches, zca_whiten_centred, WhiteningAxis, WhiteningConfig,
};

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
    let (views, m, d) = (h.size()[0], h.size()[1], h.size()[2]);
    let order = random_sub_batches(m, w_size, rng)?;
    cfg.validate(w_size, d)?;
    let (w, k) = (w_size, m / w_size);
    let n = views * k;
    let perms = if cfg.random_partition {
        random_group_partition(n, d, rng)
    } else {
        Tensor::arange(d, (Kind::Int64, Device::Cpu))
            .unsqueeze(0)
            .expand([n, d], false)
            .contiguous()
    };
    let layout = Layout {
        axis: cfg.axis,
        w,
        d,
        g: cfg.groups,
    };
    // The pair loss couples the views of an example and nothing else, so
    // a range of sub-batches with all their views is a self-contained
    // job: gather, whiten, its rows' share of the loss and gradient,
    // backward. On the CPU the `k` sub-batches are split into one range
    // per core, each run by its own thread with libtorch single-threaded
    // (see `on_threads`); each writes its rows of the gradient in place.
    let (samples, _) = cfg.samples_and_vars(w, d);
    let denom = samples as f64 - cfg.minus;
    let eps = cfg.eps;
    let h2 = h.view([views * m, d]);
    let g_h = want_grad.then(|| h2.empty_like());
    // Tensors are `Send` but not `Sync`: each job owns its chunk and
    // shallow clones of the (read-only) input and of the gradient, whose
    // rows the chunks partition.
    let jobs: Vec<(Chunk, Tensor, Option<Tensor>)> = split_even(k, cpu_parts(device, k))
        .map(|(s0, len_s)| {
            (
                Chunk::new(&order, &perms, views, m, k, w, d, s0, len_s, device),
                h2.shallow_clone(),
                g_h.as_ref().map(Tensor::shallow_clone),
            )
        })
        .collect();
    let losses = on_threads(jobs, |(c, x, g_h)| {
        let a = layout.centre(&layout.grouped(&x.index_select(0, &c.rows), &c));
        let f = zca_whiten_centred(a, denom, eps)?;
        let z = layout.ungrouped(&f.out, &c).view([views, -1, d]);
        // This chunk's rows' share of the loss (a mean over rows).
        let share = z.size()[1] as f64 / m as f64;
        let (loss, g_z) = pairwise_view_loss_and_grad(&z, normalized, want_grad);
        if let (Some(g_z), Some(mut g_h)) = (g_z, g_h) {
            let g_out = layout.grouped(&(g_z.view([-1, d]) * share), &c);
            let g_a = layout.centre(&f.backward(&g_out));
            let _ = g_h.index_copy_(0, &c.rows, &layout.ungrouped(&g_a, &c));
        }
        Ok::<_, LossError>(loss * share)
    });
    let loss = losses
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .reduce(|a, b| a + b)
        .expect("at least one chunk");
    Ok((loss, g_h.map(|g| g.view_as(&h))))
}

/// One thread's share: sub-batches `s0..s0 + len_s` in every view, as
/// `len = views·len_s` matrices ordered view-major (matrix `v·len_s + t`
/// is sub-batch `s0 + t` of view `v`), so that its rows, `w` per matrix,
/// read as `[views, len_s·w, d]` with the same example in each view.
struct Chunk {
    /// The input rows of the chunk's matrices in layout order, as indices
    /// into the flattened `[views·m, d]` input.
    rows: Tensor,
    /// Each matrix's channel permutation `[len, d]` and its inverse.
    perm: Tensor,
    inverse_perm: Tensor,
    /// `i·d + perm[i][t]` for matrix `i` of the chunk and channel `t`:
    /// the channel permutation as a row gather of a `[len·d, w]` view.
    channel_rows: Tensor,
    inverse_channel_rows: Tensor,
}

impl Chunk {
    /// `perms` is `[views·k, d]`, one row per sub-batch matrix `v·k + s`.
    #[allow(clippy::too_many_arguments)]
    fn new(
        order: &[i64],
        perms: &Tensor,
        views: i64,
        m: i64,
        k: i64,
        w: i64,
        d: i64,
        s0: i64,
        len_s: i64,
        device: Device,
    ) -> Self {
        let rows: Vec<i64> = (0..views)
            .flat_map(|v| {
                order[(s0 * w) as usize..((s0 + len_s) * w) as usize]
                    .iter()
                    .map(move |&r| v * m + r)
            })
            .collect();
        let matrices: Vec<i64> = (0..views)
            .flat_map(|v| (s0..s0 + len_s).map(move |s| v * k + s))
            .collect();
        let perm = perms.index_select(0, &Tensor::from_slice(&matrices));
        let inverse_perm = perm.argsort(-1, false);
        let len = views * len_s;
        let offsets = Tensor::arange(len, (Kind::Int64, Device::Cpu)).unsqueeze(1) * d;
        Chunk {
            rows: Tensor::from_slice(&rows).to_device(device),
            channel_rows: (&perm + &offsets).view([-1]).to_device(device),
            inverse_channel_rows: (&inverse_perm + &offsets).view([-1]).to_device(device),
            perm: perm.to_device(device),
            inverse_perm: inverse_perm.to_device(device),
        }
    }
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
    /// `[len·g, w, c]` (BW), from its rows `x: [len·w, d]` in layout
    /// order: the channels of each matrix by its partition.
    fn grouped(&self, x: &Tensor, chunk: &Chunk) -> Tensor {
        let len = chunk.perm.size()[0];
        let (w, d, g) = (self.w, self.d, self.g);
        let x = x.view([len, w, d]);
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

    /// The inverse of [`Layout::grouped`]: `[len·w, d]` rows in layout
    /// order with the channels back in place.
    fn ungrouped(&self, t: &Tensor, chunk: &Chunk) -> Tensor {
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
    /// each example over all `d` channels (the published code's choice,
    /// `docs/reference.md` §2.1; centring each group on its own would
    /// differ — see `whitening_core::whiten`), BW each channel over the
    /// sub-batch.
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

/// How many chunks to split `b` independent jobs into: one per core
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
/// `SingleThreadedScope` when it chose `CpuThreads::SingleWhileRunning`:
/// libtorch reads its thread count from a
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

/// `L` as a tensor whose gradient with respect to `h` is `grad`:
/// `(h·grad).sum() + sg(L − (h·grad).sum())`.
pub(crate) fn with_gradient(h: &Tensor, loss: &Tensor, grad: &Tensor) -> Tensor {
    let surrogate = (h * grad).sum(loss.kind());
    &surrogate + (loss - surrogate.detach())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::single_threaded::SingleThreadedScope;

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
