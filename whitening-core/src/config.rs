//! What to whiten, along which axis, with which matrix.

use std::fmt;

/// Which axis of the `m × d` embedding matrix `H` is whitened
/// (`docs/reference.md` §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhiteningAxis {
    /// Batch whitening (BW): centre over the batch, `d × d` covariance
    /// `Σ = Z_B Z_Bᵀ / (m − minus)`; needs `m > d` per group (W-MSE).
    Batch,
    /// Channel whitening (CW): centre each example over its channels,
    /// `m × m` covariance `Σ = Z_Cᵀ Z_C / (d − minus)`; needs `d > m`
    /// without groups, `d/g ≥ m` per group with `g > 1` (CW-RGP).
    Channel,
}

impl fmt::Display for WhiteningAxis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Batch => "batch (BW)",
            Self::Channel => "channel (CW)",
        })
    }
}

/// The whitening matrix `Φ` computed from `Σ = U Λ Uᵀ`
/// (`docs/reference.md` §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhiteningKind {
    /// `Φ = U Λ^{-1/2} Uᵀ`: the whitening closest to the identity map.
    Zca,
    /// `Φ = Λ^{-1/2} Uᵀ`, components in descending eigenvalue order (the
    /// reference computes them with an SVD); the paper's failure case.
    Pca,
    /// `Σ = L Lᵀ`, `Φ = L^{-1}` (W-MSE).
    Cholesky,
    /// Iterative ZCA by Newton–Schulz (IterNorm, Huang et al. CVPR 2019):
    /// `Σ_N = Σ / tr Σ`, `P₀ = I`, `P_{k+1} = ½(3P_k − P_k³ Σ_N)`,
    /// `Φ ≈ P_T / √tr Σ`. Matrix products only; not in the reference code.
    NewtonSchulz {
        /// Number of iterations `T`.
        iterations: usize,
    },
}

impl fmt::Display for WhiteningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zca => f.write_str("ZCA"),
            Self::Pca => f.write_str("PCA"),
            Self::Cholesky => f.write_str("Cholesky"),
            Self::NewtonSchulz { iterations } => write!(f, "Newton-Schulz (T = {iterations})"),
        }
    }
}

/// A complete description of one whitening transform.
#[derive(Debug, Clone, PartialEq)]
pub struct WhiteningConfig {
    pub axis: WhiteningAxis,
    pub kind: WhiteningKind,
    /// Number of channel groups `g` (`d/g` channels each); 1 = no groups.
    pub groups: i64,
    /// Random group partition: permute the channels anew for every
    /// whitened matrix before grouping, and permute back after.
    pub random_partition: bool,
    /// Covariance denominator is `k − minus` (reference default 1).
    pub minus: f64,
    /// Shrinkage `Σ ← (1 − eps) Σ + eps I` (reference `w_eps`, default 0).
    pub eps: f64,
    /// Check that the whitening matrices are finite and report the
    /// covariance's condition number when they are not (one reduction).
    pub check_finite: bool,
}

impl WhiteningConfig {
    /// A configuration with the reference defaults (`g = 1`, `minus = 1`, `eps = 0`).
    pub fn new(axis: WhiteningAxis, kind: WhiteningKind) -> Self {
        Self {
            axis,
            kind,
            groups: 1,
            random_partition: false,
            minus: 1.0,
            eps: 0.0,
            check_finite: true,
        }
    }

    /// CW-RGP: channel whitening, ZCA, `groups` random groups.
    pub fn cw_rgp(groups: i64) -> Self {
        Self {
            groups,
            random_partition: true,
            ..Self::new(WhiteningAxis::Channel, WhiteningKind::Zca)
        }
    }

    /// W-MSE: batch whitening with the Cholesky matrix, no groups.
    pub fn w_mse() -> Self {
        Self::new(WhiteningAxis::Batch, WhiteningKind::Cholesky)
    }

    /// Sets fixed (contiguous) groups.
    pub fn with_groups(mut self, groups: i64) -> Self {
        self.groups = groups;
        self
    }

    /// Sets the shrinkage `eps`.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Number of samples and variables of each group's covariance for a
    /// `w × d` matrix: BW has `w` samples of `d/g` variables, CW has `d/g`
    /// samples of `w` variables.
    pub fn samples_and_vars(&self, w: i64, d: i64) -> (i64, i64) {
        let c = d / self.groups.max(1);
        match self.axis {
            WhiteningAxis::Batch => (w, c),
            WhiteningAxis::Channel => (c, w),
        }
    }

    /// Checks that a `w × d` matrix can be whitened with this configuration.
    pub fn validate(&self, w: i64, d: i64) -> Result<(), crate::WhiteningError> {
        use crate::WhiteningError as E;
        if self.groups < 1 || d % self.groups != 0 {
            return Err(E::GroupsDoNotDivide {
                d,
                groups: self.groups,
            });
        }
        if !(0.0..=1.0).contains(&self.eps) {
            return Err(E::BadInput(format!(
                "shrinkage eps = {} must lie in [0, 1]",
                self.eps
            )));
        }
        let (samples, vars) = self.samples_and_vars(w, d);
        // Centring removes one degree of freedom from a group's samples when
        // it acts on each group: always for BW (every channel is centred
        // over the batch), and for CW only without groups. CW centres each
        // example over all `d` channels, then groups (as the release's
        // `Whitening2d` does), so with g > 1 only the sum over the groups is
        // fixed and each group's `d/g` samples keep full rank:
        // rank Σ ≤ min(samples − 1, vars), or min(samples, vars) for CW, g > 1.
        let centred_per_group = self.axis == WhiteningAxis::Batch || self.groups == 1;
        let rank = (samples - i64::from(centred_per_group)).min(vars);
        if rank < vars && self.eps == 0.0 {
            let c = d / self.groups;
            let hint = match self.axis {
                WhiteningAxis::Channel if self.groups == 1 => format!(
                    "CW without groups needs d > w_size (d = {d} channels vs w_size {w}: centring \
                     each example over its channels removes one): use a smaller sub-batch \
                     (w_size < {d}) or shrinkage eps > 0"
                ),
                WhiteningAxis::Channel => {
                    let fewer = match d / w.max(1) {
                        g if g >= 2 => format!("fewer groups (g ≤ {g}), "),
                        _ => String::new(),
                    };
                    format!(
                        "CW with groups needs d/g ≥ w_size ({c} channels per group vs w_size \
                         {w}): use {fewer}a smaller sub-batch (w_size ≤ {c}), or shrinkage eps > 0"
                    )
                }
                WhiteningAxis::Batch => format!(
                    "BW needs w_size > d/g (w_size {w} vs {c} channels per group): use a larger \
                     sub-batch (w_size > {c}), more groups, a smaller embedding, or shrinkage eps > 0"
                ),
            };
            return Err(E::RankDeficient {
                axis: self.axis,
                samples,
                vars,
                minus: self.minus,
                rank,
                hint,
            });
        }
        Ok(())
    }
}
