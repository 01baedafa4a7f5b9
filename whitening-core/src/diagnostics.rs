//! Rank diagnostics of an embedding matrix (`docs/reference.md` §7.5, the
//! paper's collapse analysis): singular values, stable rank
//! `‖A‖²_F / ‖A‖²_2`, normalised stable rank (stable rank / min(m, d)),
//! effective rank (Roy & Vetterli 2007: `exp(H(p))` with
//! `p_i = σ_i / Σσ`), and covariance spectra.
//!
//! The formulas live in [`RankDiagnostics::from_singular_values`]; the tch
//! entry points only compute singular values.

use tch::{Kind, Tensor};

use crate::WhiteningError;

/// Rank diagnostics of one `m × d` matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct RankDiagnostics {
    /// Singular values, descending.
    pub singular_values: Vec<f64>,
    /// `Σσ² / σ₁²` (0 for the zero matrix).
    pub stable_rank: f64,
    /// `stable_rank / min(m, d)`, in `(0, 1]`.
    pub normalised_stable_rank: f64,
    /// `exp(−Σ p log p)`, `p = σ / Σσ`, in `[1, min(m, d)]`.
    pub effective_rank: f64,
}

impl RankDiagnostics {
    /// The diagnostics from the singular values of an `m × d` matrix.
    pub fn from_singular_values(mut sv: Vec<f64>, m: usize, d: usize) -> Self {
        sv.sort_by(|a, b| b.total_cmp(a));
        let top = sv.first().copied().unwrap_or(0.0);
        let frob2: f64 = sv.iter().map(|s| s * s).sum();
        let stable_rank = if top > 0.0 { frob2 / (top * top) } else { 0.0 };
        let total: f64 = sv.iter().sum();
        let entropy: f64 = if total > 0.0 {
            sv.iter()
                .map(|s| s / total)
                .filter(|&p| p > 0.0)
                .map(|p| -p * p.ln())
                .sum()
        } else {
            0.0
        };
        Self {
            normalised_stable_rank: stable_rank / m.min(d).max(1) as f64,
            stable_rank,
            effective_rank: if total > 0.0 { entropy.exp() } else { 0.0 },
            singular_values: sv,
        }
    }
}

/// Singular values of a 2-D tensor (computed in f64), descending.
pub fn singular_values(a: &Tensor) -> Result<Vec<f64>, WhiteningError> {
    if a.dim() != 2 {
        return Err(WhiteningError::BadInput(format!(
            "singular values need a matrix, got shape {:?}",
            a.size()
        )));
    }
    // torch.svd, not linalg_svdvals: tch passes linalg's `driver` as a
    // string even when empty, and the CPU backend rejects any driver.
    let (_, sv, _) = tch::no_grad(|| a.detach().to_kind(Kind::Double).f_svd(true, false))?;
    Ok(Vec::<f64>::try_from(sv.to_device(tch::Device::Cpu))?)
}

/// Rank diagnostics of a 2-D tensor.
pub fn rank_diagnostics(a: &Tensor) -> Result<RankDiagnostics, WhiteningError> {
    let sv = singular_values(a)?;
    let (m, d) = (a.size()[0] as usize, a.size()[1] as usize);
    Ok(RankDiagnostics::from_singular_values(sv, m, d))
}

/// Stable rank `‖A‖²_F / ‖A‖²_2` of a 2-D tensor.
pub fn stable_rank(a: &Tensor) -> Result<f64, WhiteningError> {
    Ok(rank_diagnostics(a)?.stable_rank)
}

/// Eigenvalues (descending) of the covariance of the rows of `a: [m, d]`
/// (centred over rows, denominator `m − 1`): the embedding spectrum.
pub fn covariance_spectrum(a: &Tensor) -> Result<Vec<f64>, WhiteningError> {
    if a.dim() != 2 || a.size()[0] < 2 {
        return Err(WhiteningError::BadInput(format!(
            "a covariance spectrum needs an [m >= 2, d] matrix, got {:?}",
            a.size()
        )));
    }
    let eig = tch::no_grad(|| -> Result<Tensor, WhiteningError> {
        let x = a.detach().to_kind(Kind::Double);
        let xc = &x - x.mean_dim(0, true, None);
        let cov = xc.transpose(0, 1).matmul(&xc) / (a.size()[0] - 1) as f64;
        Ok(cov.f_linalg_eigvalsh("L")?.flip([0]))
    })?;
    Ok(Vec::<f64>::try_from(eig.to_device(tch::Device::Cpu))?)
}
