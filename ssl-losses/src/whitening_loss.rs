//! The whitening-loss family of Table 1 (`docs/reference.md` §2, §3.2): CW-RGP,
//! CW, CW-GP, W-MSE, PCA whitening, Shuffled-DBN and the plain (no whitening)
//! control.
//!
//! Weng et al., "An Investigation into Whitening Loss for Self-supervised
//! Learning", NeurIPS 2022 (CW-RGP), built on Ermolov et al., "Whitening
//! for Self-Supervised Representation Learning", ICML 2021 (W-MSE):
//!
//! ```text
//! L = 1/(w_iter·P) · Σ_{it=1..w_iter} Σ_{i<j} ℓ(Ẑᵢ, Ẑⱼ)   (+ cov_w · Σ_v covariance_loss(H_v) while epoch < cov_stop)
//! ```
//!
//! where `P = views·(views − 1)/2`, `Ẑᵥ` is view `v` whitened per random
//! sub-batch of `w_size` examples (a fresh split for every `it`, the same
//! split for every view), and `ℓ` is [`norm_mse`] or [`plain_mse`].
//!
//! Both `ℓ`s are means over rows of a function of paired rows, so they are
//! invariant to one permutation of the examples applied to every view:
//! the other transforms compute the loss in the sub-batch order directly,
//! without the reference's un-permuting scatter (same value and gradient).
//! ZCA configurations (CW-RGP, CW, CW-GP, ZCA batch whitening) take the
//! path of `zca_whitening_loss.rs`: the same loss with its gradient in
//! closed form instead of autograd through the eigendecomposition. The
//! others run autograd on a detached copy of `H`. Both compute on one
//! libtorch thread on the CPU (`single_threaded.rs` says why) and hand the
//! gradient to `H` through a surrogate whose value is the loss and whose
//! gradient is `∂L/∂H`, so second derivatives are not available.
//!
//! ```
//! use rand::SeedableRng;
//! use ssl_losses::WhiteningLoss;
//! use whitening_core::WhiteningConfig;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let h = tch::Tensor::randn([2, 128, 256], (tch::Kind::Float, tch::Device::Cpu)); // [views, m, d]
//! let loss = WhiteningLoss::whitened(WhiteningConfig::cw_rgp(2), 64).loss(&h, 0, &mut rng)?;
//! assert!(loss.double_value(&[]) > 0.0);
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};
use whitening_core::{random_sub_batches, whiten, WhiteningAxis, WhiteningConfig, WhiteningKind};

use crate::norm_mse::{norm_mse, plain_mse};
use crate::shuffled_dbn::sub_batch_standardize;
use crate::single_threaded::SingleThreadedScope;
use crate::views::{view_dims, view_pairs};
use crate::zca_whitening_loss::{with_gradient, zca_loss_and_grad};
use crate::LossError;

/// What each sub-batch of each view goes through before the pairwise loss.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewTransform {
    /// No transform: the plain control, which collapses.
    Identity,
    /// A whitening transform of whitening-core (CW-RGP, CW, CW-GP, W-MSE,
    /// PCA whitening).
    Whiten(WhiteningConfig),
    /// Batch standardisation per sub-batch (Shuffled-DBN), with this `eps`.
    Standardize {
        /// Added to the biased variance.
        eps: f64,
    },
}

/// The ImageNet covariance regulariser of CW-RGP: `weight ·
/// Σ_views covariance_loss(H_v, axis)` while `epoch < stop_epoch`, 0 after.
///
/// The release (`ImageNet/methods/cwrgp.py`) zeroes the weight in
/// `step(epoch)`, which `ImageNet/train.py` calls after each optimiser
/// step, so its first step of epoch `cov_stop` still has the term; here the
/// whole epoch is without it (the loss sees epochs, not steps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CovarianceTerm {
    /// `cov_w` (0.005 for 100 ImageNet epochs, 0.01 for 200).
    pub weight: f64,
    /// `cov_stop`: the first epoch without the term (50 or 100).
    pub stop_epoch: usize,
    /// The axis the covariance is taken along (the whitening axis).
    pub axis: WhiteningAxis,
}

/// A whitening loss: transform, sub-batches, `w_iter`, pair loss and the
/// optional covariance term.
#[derive(Debug, Clone, PartialEq)]
pub struct WhiteningLoss {
    /// The per-sub-batch transform.
    pub transform: ViewTransform,
    /// Sub-batch size; must divide the batch `m`.
    pub w_size: i64,
    /// Number of independent sub-batch splits whose losses are averaged.
    pub w_iter: usize,
    /// [`norm_mse`] when true, [`plain_mse`] when false (`--no_norm`).
    pub normalized: bool,
    /// The ImageNet covariance term, if any.
    pub covariance: Option<CovarianceTerm>,
    /// How the loss uses libtorch's CPU threads (default: as the program
    /// set them).
    pub cpu_threads: CpuThreads,
}

/// How a whitening loss on the CPU uses libtorch's threads. libtorch's
/// thread count is one setting for the whole process, so changing it is
/// the program's choice, never this library's by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuThreads {
    /// Leave libtorch's thread count as the program set it.
    #[default]
    AsSet,
    /// Run the loss (forward and its closed-form backward) on one libtorch
    /// thread per worker thread of the loss: libtorch's process-wide
    /// thread count is 1 while the loss runs and restored after, so other
    /// threads' libtorch calls meanwhile run single-threaded too (slower,
    /// never wrong). `single_threaded.rs` gives the measurements (CPU
    /// `eigh`/`cholesky` of small matrices gain nothing from OpenMP teams,
    /// and on a 2-core machine the CW-RGP 4 loss took 2-6x less time). The
    /// `ssl` binary and the benchmarks choose it.
    SingleWhileRunning,
}

impl WhiteningLoss {
    /// A whitening loss with `cfg` on sub-batches of `w_size`, `w_iter` 1,
    /// normalised MSE and no covariance term.
    pub fn whitened(cfg: WhiteningConfig, w_size: i64) -> Self {
        Self {
            transform: ViewTransform::Whiten(cfg),
            w_size,
            w_iter: 1,
            normalized: true,
            covariance: None,
            cpu_threads: CpuThreads::AsSet,
        }
    }

    /// Shuffled-DBN: batch standardisation (`eps`) on sub-batches of `w_size`.
    pub fn shuffled_dbn(w_size: i64, eps: f64) -> Self {
        Self {
            transform: ViewTransform::Standardize { eps },
            ..Self::whitened(WhiteningConfig::w_mse(), w_size)
        }
    }

    /// The plain control: `norm_mse` between the raw views, no whitening.
    pub fn plain() -> Self {
        Self {
            transform: ViewTransform::Identity,
            ..Self::whitened(WhiteningConfig::w_mse(), 1)
        }
    }

    /// Sets `w_iter`.
    pub fn with_w_iter(mut self, w_iter: usize) -> Self {
        self.w_iter = w_iter;
        self
    }

    /// Chooses [`norm_mse`] (`true`) or [`plain_mse`] (`false`).
    pub fn with_normalized(mut self, normalized: bool) -> Self {
        self.normalized = normalized;
        self
    }

    /// Adds the covariance term.
    pub fn with_covariance(mut self, term: CovarianceTerm) -> Self {
        self.covariance = Some(term);
        self
    }

    /// Chooses how the loss uses libtorch's CPU threads ([`CpuThreads`]).
    pub fn with_cpu_threads(mut self, threads: CpuThreads) -> Self {
        self.cpu_threads = threads;
        self
    }

    fn single_threaded_scope(&self, device: Device) -> Option<SingleThreadedScope> {
        (device == Device::Cpu && self.cpu_threads == CpuThreads::SingleWhileRunning)
            .then(SingleThreadedScope::enter)
    }

    /// The loss of the embeddings `h: [views, m, d]` (views ≥ 2) at
    /// `epoch` (only the covariance term looks at it), drawing sub-batch
    /// splits and group partitions from `rng`.
    pub fn loss<R: Rng + ?Sized>(
        &self,
        h: &Tensor,
        epoch: usize,
        rng: &mut R,
    ) -> Result<Tensor, LossError> {
        let (views, m, d) = view_dims(h, "embeddings", 2, 1)?;
        if self.w_iter == 0 {
            return Err(LossError::HyperParameter {
                method: "whitening loss",
                key: "w_iter",
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        let mut total: Option<Tensor> = None;
        match &self.transform {
            ViewTransform::Whiten(cfg) if cfg.kind == WhiteningKind::Zca => {
                let want_grad = h.requires_grad();
                let mut grad: Option<Tensor> = None;
                let _single = self.single_threaded_scope(h.device());
                for _ in 0..self.w_iter {
                    let (l, g) =
                        zca_loss_and_grad(h, cfg, self.w_size, self.normalized, want_grad, rng)?;
                    total = Some(total.map_or(l.shallow_clone(), |t| t + &l));
                    grad = match (grad, g) {
                        (Some(a), Some(b)) => Some(a + b),
                        (None, g) => g,
                        (a, None) => a,
                    };
                }
                if let (Some(t), Some(g)) = (&total, &grad) {
                    total = Some(with_gradient(h, t, g));
                }
            }
            _ => {
                // Forward and backward on a detached copy inside the
                // single-threaded scope; the gradient reaches `h` through
                // the same surrogate as the ZCA path.
                let want_grad = h.requires_grad();
                let _single = self.single_threaded_scope(h.device());
                let leaf = h.detach().set_requires_grad(want_grad);
                let sum = tch::with_grad(|| -> Result<Tensor, LossError> {
                    let mut sum: Option<Tensor> = None;
                    for _ in 0..self.w_iter {
                        let z = self.transformed(&leaf, views, m, d, rng)?;
                        let l = pairwise_view_loss(&z, self.normalized);
                        sum = Some(sum.map_or(l.shallow_clone(), |t| t + &l));
                    }
                    Ok(sum.unwrap_or_else(|| leaf.zeros_like().sum(None)))
                })?;
                total = Some(if want_grad {
                    let g = Tensor::run_backward(&[&sum], &[&leaf], false, false).remove(0);
                    with_gradient(h, &sum.detach(), &g)
                } else {
                    sum.detach()
                });
            }
        }
        let mut loss = total.unwrap_or_else(|| h.zeros_like().sum(None)) / self.w_iter as f64;
        if let Some(term) = self
            .covariance
            .filter(|t| t.weight != 0.0 && epoch < t.stop_epoch)
        {
            let cov = (0..views)
                .map(|v| covariance_loss(&h.get(v), term.axis))
                .reduce(|a, b| a + b)
                .unwrap_or_else(|| h.zeros_like().sum(None));
            loss += cov * term.weight;
        }
        Ok(loss)
    }

    /// The transformed views, `[views, m, d]`, rows in one random sub-batch
    /// order shared by all views.
    fn transformed<R: Rng + ?Sized>(
        &self,
        h: &Tensor,
        views: i64,
        m: i64,
        d: i64,
        rng: &mut R,
    ) -> Result<Tensor, LossError> {
        if matches!(self.transform, ViewTransform::Identity) {
            return Ok(h.shallow_clone());
        }
        let order = random_sub_batches(m, self.w_size, rng)?;
        let idx = Tensor::from_slice(&order).to_device(h.device());
        let x = h
            .index_select(1, &idx)
            .view([views * (m / self.w_size), self.w_size, d]);
        let z = match &self.transform {
            ViewTransform::Whiten(cfg) => whiten(&x, cfg, rng)?,
            ViewTransform::Standardize { eps } => sub_batch_standardize(&x, *eps),
            ViewTransform::Identity => x,
        };
        Ok(z.reshape([views, m, d]))
    }
}

/// `1/P · Σ_{i<j} ℓ(z_i, z_j)` over the `P` pairs of views of
/// `z: [views, m, d]`, with `ℓ` = [`norm_mse`] or [`plain_mse`].
pub fn pairwise_view_loss(z: &Tensor, normalized: bool) -> Tensor {
    let views = z.size()[0];
    let pair_loss = |i: i64, j: i64| {
        if normalized {
            norm_mse(&z.get(i), &z.get(j))
        } else {
            plain_mse(&z.get(i), &z.get(j))
        }
    };
    let pairs = views * (views - 1) / 2;
    view_pairs(views)
        .map(|(i, j)| pair_loss(i, j))
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| z.zeros_like().sum(None))
        / pairs.max(1) as f64
}

/// [`pairwise_view_loss`] of `z: [views, m, d]` as a detached value and,
/// when `want_grad`, its gradient with respect to `z` in closed form. With
/// `P` pairs, `S = Σ_v u_v` and `u_v = z_v/‖z_v‖` row-wise:
/// - normalised: `L = 2 − (‖S‖² − Σ_v ‖u_v‖²)/(P m)` (summed over rows),
///   `∂L/∂u_v = −2(S − u_v)/(P m)`, `∂L/∂z_v = (I − u_v u_vᵀ) ∂L/∂u_v / ‖z_v‖`;
/// - plain: `L = Σ_{i<j} mean (z_i − z_j)² / P`,
///   `∂L/∂z_v = 2(V z_v − Σ_u z_u)/(P m d)`.
pub(crate) fn pairwise_view_loss_and_grad(
    z: &Tensor,
    normalized: bool,
    want_grad: bool,
) -> (Tensor, Option<Tensor>) {
    let (views, m, d) = (z.size()[0], z.size()[1], z.size()[2]);
    let pairs = (views * (views - 1) / 2).max(1) as f64;
    if !normalized {
        let loss = pairwise_view_loss(z, false);
        let grad = want_grad.then(|| {
            (z * views as f64 - z.sum_dim_intlist(0, true, None)) * (2.0 / (pairs * (m * d) as f64))
        });
        return (loss, grad);
    }
    let norm = z
        .square()
        .sum_dim_intlist(-1, true, None)
        .clamp_min(1e-24)
        .sqrt();
    let u = z / &norm;
    let s = u.sum_dim_intlist(0, true, None);
    let u_sq = u.square().sum(None);
    let loss = 2.0 - (s.square().sum(None) - u_sq) / (pairs * m as f64);
    let grad = want_grad.then(|| {
        let g_u = (&u - &s) * (2.0 / (pairs * m as f64));
        let radial = (&u * &g_u).sum_dim_intlist(-1, true, None);
        (g_u - &u * radial) / &norm
    });
    (loss, grad)
}

/// CW-RGP's ImageNet covariance regulariser of one view `h: [m, d]`: with
/// `X = h` (batch axis) or `X = hᵀ` (channel axis), `N × D`, centred over
/// its `N` rows, `C = XᵀX / (N − 1)` and the loss is
/// `Σ_{i≠j} C_ij² / D` (the reference `covariance_loss(x, axis)`).
pub fn covariance_loss(h: &Tensor, axis: WhiteningAxis) -> Tensor {
    let x = match axis {
        WhiteningAxis::Batch => h.shallow_clone(),
        WhiteningAxis::Channel => h.transpose(0, 1),
    };
    let (n, dim) = (x.size()[0], x.size()[1]);
    let xc = &x - x.mean_dim(0, true, None);
    let cov = xc.transpose(0, 1).matmul(&xc) / (n - 1) as f64;
    let off = cov.square().sum(None) - cov.diagonal(0, 0, 1).square().sum(None);
    off / dim as f64
}

/// Hyper-parameters of the whitening methods (CW-RGP, CW, CW-GP, W-MSE).
/// Defaults: the CW-RGP CIFAR runs (`docs/reference.md` §6.4); the other
/// methods' own defaults are the trainer's method registry's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhiteningParams {
    /// Sub-batch size (`w_size`).
    pub w_size: i64,
    /// Sub-batch splits averaged per step (`w_iter`).
    pub w_iter: usize,
    /// Channel groups `g` (`group`).
    pub groups: i64,
    /// Normalised MSE (`true`) or plain MSE (`--no_norm`).
    pub norm: bool,
    /// Covariance denominator offset (`minus`).
    pub minus: f64,
    /// Shrinkage (`w_eps`).
    pub eps: f64,
    /// Weight of the ImageNet covariance term (`cov_w`; 0 = off).
    pub cov_weight: f64,
    /// First epoch without the covariance term (`cov_stop`).
    pub cov_stop: usize,
}

impl Default for WhiteningParams {
    fn default() -> Self {
        Self {
            w_size: 64,
            w_iter: 1,
            groups: 4,
            norm: true,
            minus: 1.0,
            eps: 0.0,
            cov_weight: 0.0,
            cov_stop: 50,
        }
    }
}

impl WhiteningLoss {
    /// The whitening loss of `cfg` (its axis, kind and groups) with the
    /// parameters `p`: its `minus` and `eps`, sub-batches of `w_size`,
    /// `w_iter` splits, normalised or plain MSE, and the covariance term
    /// when `cov_weight` is not 0.
    pub fn from_params(cfg: WhiteningConfig, p: &WhiteningParams) -> Self {
        let cfg = WhiteningConfig {
            minus: p.minus,
            eps: p.eps,
            ..cfg
        };
        let axis = cfg.axis;
        let loss = Self::whitened(cfg, p.w_size)
            .with_w_iter(p.w_iter)
            .with_normalized(p.norm);
        if p.cov_weight != 0.0 {
            loss.with_covariance(CovarianceTerm {
                weight: p.cov_weight,
                stop_epoch: p.cov_stop,
                axis,
            })
        } else {
            loss
        }
    }
}

/// The whitening axis as written in a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AxisName {
    /// Batch whitening (BW).
    Batch,
    /// Channel whitening (CW).
    Channel,
}

impl From<AxisName> for WhiteningAxis {
    fn from(a: AxisName) -> Self {
        match a {
            AxisName::Batch => WhiteningAxis::Batch,
            AxisName::Channel => WhiteningAxis::Channel,
        }
    }
}

/// PCA whitening: the whitening parameters and the axis (reference default
/// channel, no groups).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PcaWhiteningParams {
    /// Whitening axis.
    pub axis: AxisName,
    /// The shared whitening parameters.
    #[serde(flatten)]
    pub whitening: WhiteningParams,
}

impl Default for PcaWhiteningParams {
    fn default() -> Self {
        Self {
            axis: AxisName::Channel,
            whitening: WhiteningParams {
                groups: 1,
                ..WhiteningParams::default()
            },
        }
    }
}
