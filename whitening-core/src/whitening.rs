//! Batched, differentiable BW/CW whitening on tch tensors
//! (`docs/reference.md` §2).
//!
//! Shapes: a stack of `n` independent matrices `[n, w, d]` (rows are
//! examples, as in row-major code `H = Zᵀ`). Each matrix is split into `g`
//! channel groups; every group of every matrix becomes one "data matrix"
//! `A` of `s` samples × `v` variables:
//! - BW: samples are the `w` examples, variables the `d/g` channels;
//! - CW: samples are the `d/g` channels, variables the `w` examples.
//!
//! All `n·g` data matrices then go through one batched covariance
//! `Σ = AᵀA / (s − minus)`, one batched decomposition and one batched
//! product `Â = A Φᵀ`, which is `Φ Z_B` for BW and `Z_C Φ` for CW in the
//! paper's column-major notation.
//!
//! Departure from the paper's text, following the published code
//! (`docs/reference.md` §2.1): CW centres each example over *all* `d`
//! channels, then groups; the covariance denominator is `d/g − minus`.

use rand::Rng;
use tch::{Kind, Tensor};

use crate::config::{WhiteningAxis, WhiteningConfig, WhiteningKind};
use crate::group_partition::{inverse_permutation, random_group_partition, random_sub_batches};
use crate::WhiteningError;

/// Whitens each of the `n` matrices of `x: [n, w, d]`, drawing a fresh
/// channel permutation per matrix from `rng` when the configuration asks
/// for random group partition.
pub fn whiten<R: Rng + ?Sized>(
    x: &Tensor,
    cfg: &WhiteningConfig,
    rng: &mut R,
) -> Result<Tensor, WhiteningError> {
    let (n, _, d) = dims3(x)?;
    let perms = cfg
        .random_partition
        .then(|| random_group_partition(n, d, rng).to_device(x.device()));
    whiten_with_permutations(x, cfg, perms.as_ref())
}

/// Splits each view of `h: [views, m, d]` into random sub-batches of
/// `w_size` examples (the same split for every view, so views stay
/// paired), whitens every sub-batch of every view in one batched call and
/// returns `[views, m, d]` in the original example order.
pub fn whiten_sub_batches<R: Rng + ?Sized>(
    h: &Tensor,
    w_size: i64,
    cfg: &WhiteningConfig,
    rng: &mut R,
) -> Result<Tensor, WhiteningError> {
    let (views, m, d) = dims3(h)?;
    let order = random_sub_batches(m, w_size, rng)?;
    let device = h.device();
    let idx = Tensor::from_slice(&order).to_device(device);
    let z = {
        let x = h
            .index_select(1, &idx)
            .view([views * (m / w_size), w_size, d]);
        whiten(&x, cfg, rng)?.view([views, m, d])
    };
    let inv = Tensor::from_slice(&inverse_permutation(&order)).to_device(device);
    Ok(z.index_select(1, &inv))
}

/// Whitens `x: [n, w, d]` with explicit channel permutations `perms:
/// [n, d]` (row `i` for matrix `i`; `None` = fixed contiguous groups). The
/// output keeps the input's channel order.
pub fn whiten_with_permutations(
    x: &Tensor,
    cfg: &WhiteningConfig,
    perms: Option<&Tensor>,
) -> Result<Tensor, WhiteningError> {
    let (n, w, d) = dims3(x)?;
    cfg.validate(w, d)?;
    if let Some(p) = perms {
        if p.size() != [n, d] {
            return Err(WhiteningError::BadInput(format!(
                "permutations have shape {:?}, expected [{n}, {d}]",
                p.size()
            )));
        }
    }
    let g = cfg.groups;
    let c = d / g;
    let gather_channels =
        |t: &Tensor, p: &Tensor| t.gather(2, &p.unsqueeze(1).expand([n, w, d], false), false);
    // Temporaries live in blocks so that each input-sized copy is freed as
    // soon as the next one exists (autograd keeps only indices of these ops):
    // at most two input-sized tensors besides `x` at any time.
    let a = {
        let centred = match cfg.axis {
            WhiteningAxis::Batch => x - x.mean_dim(1, true, None),
            WhiteningAxis::Channel => x - x.mean_dim(2, true, None),
        };
        let permuted = match perms {
            Some(p) => {
                let permuted = gather_channels(&centred, p);
                drop(centred);
                permuted
            }
            None => centred,
        };
        let grouped = permuted.view([n, w, g, c]);
        match cfg.axis {
            WhiteningAxis::Batch => grouped.permute([0, 2, 1, 3]).reshape([n * g, w, c]),
            WhiteningAxis::Channel => grouped.permute([0, 2, 3, 1]).reshape([n * g, c, w]),
        }
    };
    let (samples, _) = cfg.samples_and_vars(w, d);
    let cov = covariance_of_centred(&a, samples as f64 - cfg.minus, cfg.eps);
    let phi = whitening_matrix(&cov, cfg.kind)?;
    if cfg.check_finite {
        ensure_finite(&phi, &cov, cfg.kind)?;
    }
    let out = {
        let out = a.matmul(&phi.transpose(-1, -2));
        drop((a, cov, phi));
        match cfg.axis {
            WhiteningAxis::Batch => out.view([n, g, w, c]).permute([0, 2, 1, 3]),
            WhiteningAxis::Channel => out.view([n, g, c, w]).permute([0, 3, 1, 2]),
        }
        .reshape([n, w, d])
    };
    Ok(match perms {
        Some(p) => gather_channels(&out, &p.argsort(1, false)),
        None => out,
    })
}

/// `Σ = AᵀA / denom`, then shrinkage `(1 − eps) Σ + eps I`, for a batch of
/// centred data matrices `a: [b, s, v]`.
pub fn covariance_of_centred(a: &Tensor, denom: f64, eps: f64) -> Tensor {
    let cov = a.transpose(-1, -2).matmul(a) / denom;
    if eps == 0.0 {
        return cov;
    }
    let v = cov.size()[cov.dim() - 1];
    let eye = Tensor::eye(v, (cov.kind(), cov.device()));
    cov * (1.0 - eps) + eye * eps
}

/// The batched whitening matrix `Φ` of covariances `cov: [b, v, v]`, such
/// that `Φ Σ Φᵀ = I` (for Newton–Schulz, approximately). Whitened data is
/// `A Φᵀ`.
pub fn whitening_matrix(cov: &Tensor, kind: WhiteningKind) -> Result<Tensor, WhiteningError> {
    Ok(match kind {
        WhiteningKind::Zca => {
            let (eig, u) = batched_eigh(cov)?;
            (&u * eig.rsqrt().unsqueeze(-2)).matmul(&u.transpose(-1, -2))
        }
        WhiteningKind::Pca => {
            let (eig, u) = batched_eigh(cov)?;
            // Descending order, as the reference's SVD returns them.
            let (eig, u) = (eig.flip([-1]), u.flip([-1]));
            eig.rsqrt().unsqueeze(-1) * u.transpose(-1, -2)
        }
        WhiteningKind::Cholesky => {
            let l = match cov.f_linalg_cholesky(false) {
                Ok(l) => l,
                Err(_) => return Err(non_finite(cov, kind)),
            };
            let v = cov.size()[cov.dim() - 1];
            let eye = Tensor::eye(v, (cov.kind(), cov.device())).expand_as(&l);
            l.f_linalg_solve_triangular(&eye, false, true, false)?
        }
        WhiteningKind::NewtonSchulz { iterations } => {
            // Coupled form: Y₀ = Σ_N, Z₀ = I, T_k = ½(3I − Z_k Y_k),
            // Y_{k+1} = Y_k T_k, Z_{k+1} = T_k Z_k. In exact arithmetic
            // Z_k = P_k of P_{k+1} = ½(3P_k − P_k³ Σ_N) (all are
            // polynomials in Σ_N), but the uncoupled form amplifies
            // round-off ~5x per step once converged; this one stays put.
            let v = cov.size()[cov.dim() - 1];
            let trace = cov
                .diagonal(0, -2, -1)
                .sum_dim_intlist(-1, true, None)
                .unsqueeze(-1);
            let eye = Tensor::eye(v, (cov.kind(), cov.device()));
            let mut y = cov / &trace;
            let mut z = eye.expand_as(cov).shallow_clone();
            for _ in 0..iterations {
                let t = (&eye * 3.0 - z.matmul(&y)) * 0.5;
                y = y.matmul(&t);
                z = t.matmul(&z);
            }
            z / trace.sqrt()
        }
    })
}

/// `eigh` of a batch of symmetric matrices. On the CPU, libtorch runs the
/// batch through LAPACK one matrix after another on one core; splitting it
/// into one chunk per intra-op thread runs the chunks concurrently (the
/// autograd graph is the same: one eigh node per chunk, then a concat).
fn batched_eigh(cov: &Tensor) -> Result<(Tensor, Tensor), WhiteningError> {
    let batch = cov.size()[0];
    let threads = i64::from(tch::get_num_threads().max(1));
    if cov.device() != tch::Device::Cpu || threads < 2 || batch < 2 * threads {
        return Ok(cov.f_linalg_eigh("L")?);
    }
    let chunks = cov.chunk(threads, 0);
    let results: Vec<Result<(Tensor, Tensor), tch::TchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || chunk.f_linalg_eigh("L")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("eigh worker panicked"))
            .collect()
    });
    let (mut eigs, mut vecs) = (Vec::new(), Vec::new());
    for r in results {
        let (e, u) = r?;
        eigs.push(e);
        vecs.push(u);
    }
    Ok((Tensor::f_cat(&eigs, 0)?, Tensor::f_cat(&vecs, 0)?))
}

fn ensure_finite(phi: &Tensor, cov: &Tensor, kind: WhiteningKind) -> Result<(), WhiteningError> {
    let finite = phi.isfinite().all().int64_value(&[]) != 0;
    if finite {
        Ok(())
    } else {
        Err(non_finite(cov, kind))
    }
}

/// Builds the non-finite error with the worst condition number in the batch.
fn non_finite(cov: &Tensor, kind: WhiteningKind) -> WhiteningError {
    let eig = tch::no_grad(|| {
        cov.detach()
            .to_kind(Kind::Double)
            .f_linalg_eigvalsh("L")
            .unwrap_or_else(|_| Tensor::from_slice(&[f64::NAN]))
    });
    let min = eig.min().double_value(&[]);
    let max = eig.max().double_value(&[]);
    WhiteningError::NonFinite {
        kind: kind.to_string(),
        condition: if min > 0.0 { max / min } else { f64::INFINITY },
        min_eig: min,
        max_eig: max,
    }
}

pub(crate) fn dims3(x: &Tensor) -> Result<(i64, i64, i64), WhiteningError> {
    match x.size()[..] {
        [n, w, d] => {
            if !matches!(
                x.kind(),
                Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
            ) {
                return Err(WhiteningError::BadInput(format!(
                    "expected a floating-point tensor, got {:?}",
                    x.kind()
                )));
            }
            Ok((n, w, d))
        }
        _ => Err(WhiteningError::BadInput(format!(
            "expected a tensor of shape [n, w, d], got {:?}",
            x.size()
        ))),
    }
}
