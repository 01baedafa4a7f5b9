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
//! then back through the centring and the gather. The sub-batch split and
//! the group partition are one flat index into `H` (each entry of `H`
//! lands in exactly one group of one matrix), so each way is one
//! `index_select` and one `scatter`. `F` in this form has no `1/(λ_i − λ_j)`, so close
//! eigenvalues cost no precision (autograd's eigh backward divides by the
//! gaps), and the whole backward is six batched matrix products: no
//! autograd graph through the decomposition is recorded.
//!
//! On the CPU the `n·g` matrices are split into one chunk per core and
//! each chunk's forward (covariance, `eigh`, `Φ`, `Â`) and backward run on
//! a thread of their own with libtorch single-threaded: batched `eigh`
//! decomposes its matrices one after another, so this split is what puts
//! the second core to work, and no OpenMP team waits on a descheduled
//! member.
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
    let (w, n, g) = (w_size, views * (m / w_size), cfg.groups);
    let perms = if cfg.random_partition {
        random_group_partition(n, d, rng)
    } else {
        Tensor::arange(d, (Kind::Int64, Device::Cpu))
            .unsqueeze(0)
            .expand([n, d], false)
    };
    let index = grouped_index(&order, &perms, cfg.axis, views, m, w, d, g).to_device(device);
    let flat_index = index.reshape([-1]);
    let gather = |t: &Tensor| t.reshape([-1]).index_select(0, &flat_index).view_as(&index);
    let scatter = |t: &Tensor| {
        h.zeros_like()
            .reshape([-1])
            .scatter(0, &flat_index, &t.reshape([-1]))
            .view_as(&h)
    };

    // One gather takes every sub-batch × view × group straight out of `h`
    // (rows by the sub-batch order, channels by the group partition);
    // centring commutes with the channel permutation.
    let centre_dims: &[i64] = match cfg.axis {
        WhiteningAxis::Batch => &[2],
        WhiteningAxis::Channel => &[1, 2],
    };
    let raw = gather(&h); // [n, g, ·, ·]
    let a = (&raw - raw.mean_dim(centre_dims, true, None)).view([
        n * g,
        index.size()[2],
        index.size()[3],
    ]);
    let (samples, _) = cfg.samples_and_vars(w, d);
    let denom = samples as f64 - cfg.minus;
    let eps = cfg.eps;
    // The n·g matrices are independent until the pair loss: on the CPU
    // they are split into one contiguous chunk per core, each run by its
    // own thread with libtorch single-threaded (see `on_threads`).
    let parts = cpu_parts(device, a.size()[0]);
    let forwards = on_threads(a.chunk(parts, 0), |a| forward(a, denom, eps));
    let forwards = forwards.into_iter().collect::<Result<Vec<_>, _>>()?;
    let out = Tensor::cat(&forwards.iter().map(|f| &f.out).collect::<Vec<_>>(), 0);
    let z = scatter(&out);

    let (loss, g_z) = pairwise_view_loss_and_grad(&z, normalized, want_grad);
    let Some(g_z) = g_z else {
        return Ok((loss, None));
    };
    let g_out = gather(&g_z).view_as(&a);
    let kappa = (1.0 - eps) / denom;
    let jobs: Vec<(Forward, Tensor)> = forwards.into_iter().zip(g_out.chunk(parts, 0)).collect();
    let g_a = on_threads(jobs, |(f, g_out)| backward(&f, &g_out, kappa));
    let g_a = Tensor::cat(&g_a, 0).view_as(&index);
    let g_raw = &g_a - g_a.mean_dim(centre_dims, true, None);
    Ok((loss, Some(scatter(&g_raw))))
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
    let (lambda, u) = cov.f_linalg_eigh("L")?;
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
    g_out.matmul(&f.phi) + f.a.matmul(&g_cov) * (2.0 * kappa)
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

/// Flat indices into `h: [views, m, d]` of every whitened group, shaped
/// `[n, g, c, w]` (CW: samples are channels) or `[n, g, w, c]` (BW), with
/// matrix `n = v·(m/w) + s` for view `v` and sub-batch `s`.
#[allow(clippy::too_many_arguments)]
fn grouped_index(
    order: &[i64],
    perms: &Tensor,
    axis: WhiteningAxis,
    views: i64,
    m: i64,
    w: i64,
    d: i64,
    g: i64,
) -> Tensor {
    let k = m / w;
    let rows: Vec<i64> = (0..views)
        .flat_map(|v| order.iter().map(move |&r| (v * m + r) * d))
        .collect();
    let rows = Tensor::from_slice(&rows).view([views * k, 1, w]); // [n, 1, w]
    let c = d / g;
    let perms = perms.view([views * k, g, c]);
    match axis {
        WhiteningAxis::Channel => perms.unsqueeze(-1) + rows.unsqueeze(-2), // [n, g, c, w]
        WhiteningAxis::Batch => perms.unsqueeze(-2) + rows.unsqueeze(-1),   // [n, g, w, c]
    }
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
