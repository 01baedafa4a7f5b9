//! ZCA whitening of centred data matrices with its vector–Jacobian
//! product in closed form, outside autograd: what the ZCA whitening
//! losses of `ssl-losses` run (CW-RGP, CW, ZCA BW), and what a caller
//! with its own gradient code can use.
//!
//! Forward, per matrix (`docs/reference.md` §2.1–§2.2): the centred data
//! `A` (`s` samples × `v` variables), `Σ = κ AᵀA + eps·I` with
//! `κ = (1 − eps)/(s − minus)`, `Σ = U Λ Uᵀ`, `Φ = U Λ^{-1/2} Uᵀ`, whitened
//! `Â = A Φ`.
//!
//! Backward: with `G = ∂L/∂Â` and `B = AᵀG`, the Daleckii–Krein formula
//! for `Φ = f(Σ)`, `f(λ) = λ^{-1/2}`, gives
//!
//! ```text
//! ∂L/∂Σ = U (F ∘ Uᵀ sym(B) U) Uᵀ,   F_ij = (f(λ_i) − f(λ_j))/(λ_i − λ_j) = −1 / (√λ_i √λ_j (√λ_i + √λ_j))
//! ∂L/∂A = G Φ + 2κ A ∂L/∂Σ
//! ```
//!
//! `F` in this form has no `1/(λ_i − λ_j)`, so close or equal eigenvalues
//! cost no precision (autograd's `eigh` backward divides by the gaps),
//! and the backward is six batched matrix products. In `f32` on the CPU
//! the decomposition is [`crate::symmetric_eigen`], elsewhere libtorch's
//! `linalg_eigh`.

use tch::Tensor;

use crate::{covariance_of_centred, WhiteningError};

/// What the backward keeps from the forward of a batch of matrices.
#[derive(Debug)]
pub struct ZcaWhitened {
    /// The centred input `A: [b, s, v]`.
    pub a: Tensor,
    /// Eigenvectors `U: [b, v, v]` (columns) of the covariances.
    pub u: Tensor,
    /// `√λ: [b, v]`.
    pub sqrt_lambda: Tensor,
    /// The whitening matrices `Φ: [b, v, v]` (symmetric).
    pub phi: Tensor,
    /// The whitened data `Â = A Φ: [b, s, v]`.
    pub out: Tensor,
    /// `κ` of the covariance `κ AᵀA + eps·I`.
    pub kappa: f64,
}

/// ZCA-whitens the centred matrices `a: [b, s, v]` with the covariance
/// `(1 − eps)·AᵀA/denom + eps·I` (`denom = s − minus`). Errors when a
/// covariance is not positive definite, with its condition number.
pub fn zca_whiten_centred(a: Tensor, denom: f64, eps: f64) -> Result<ZcaWhitened, WhiteningError> {
    let cov = covariance_of_centred(&a, denom, eps);
    let (lambda, u) = crate::symmetric_eigen::eigh(&cov)?;
    ensure_positive(&lambda)?;
    let sqrt_lambda = lambda.sqrt();
    let phi = (&u * sqrt_lambda.reciprocal().unsqueeze(-2)).matmul(&u.transpose(-1, -2));
    let out = a.matmul(&phi);
    Ok(ZcaWhitened {
        a,
        u,
        sqrt_lambda,
        phi,
        out,
        kappa: (1.0 - eps) / denom,
    })
}

impl ZcaWhitened {
    /// `∂L/∂A = G Φ + 2κ A ∂L/∂Σ` (the module doc's formula) for
    /// `g_out = G = ∂L/∂Â: [b, s, v]`.
    pub fn backward(&self, g_out: &Tensor) -> Tensor {
        let b = self.a.transpose(-1, -2).matmul(g_out);
        let b_sym = (&b + b.transpose(-1, -2)) * 0.5;
        let (si, sj) = (
            self.sqrt_lambda.unsqueeze(-1),
            self.sqrt_lambda.unsqueeze(-2),
        );
        let factor = -((&si * &sj) * (&si + &sj)).reciprocal();
        let ut = self.u.transpose(-1, -2);
        let g_cov = self
            .u
            .matmul(&(ut.matmul(&b_sym).matmul(&self.u) * factor))
            .matmul(&ut);
        g_out
            .matmul(&self.phi)
            .baddbmm(&self.a, &g_cov, 1.0, 2.0 * self.kappa)
    }
}

/// The smallest eigenvalue must be positive and the largest finite, or
/// `Λ^{-1/2}` is not finite.
fn ensure_positive(lambda: &Tensor) -> Result<(), WhiteningError> {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The closed-form backward against autograd through libtorch's
    /// `eigh` in f64, on well-separated spectra (where autograd's
    /// `1/(λ_i − λ_j)` is harmless): `⟨∂(Â·R)/∂A, ·⟩` for a random `R`,
    /// to 1e-9 relative; and the forward output is white.
    #[test]
    fn backward_matches_autograd_and_output_is_white() {
        tch::manual_seed(5);
        let opts = (Kind::Double, Device::Cpu);
        let (b, s, v) = (3, 40, 8);
        let x = Tensor::randn([b, s, v], opts);
        let a = (&x - x.mean_dim(&[1i64][..], true, None)).set_requires_grad(true);
        let r = Tensor::randn([b, s, v], opts);
        let (denom, eps) = ((s - 1) as f64, 1e-3);

        let f = zca_whiten_centred(a.detach(), denom, eps).unwrap();
        let closed = f.backward(&r);

        let cov = covariance_of_centred(&a, denom, eps);
        let (lambda, u) = cov.linalg_eigh("L");
        let phi = (&u * lambda.rsqrt().unsqueeze(-2)).matmul(&u.transpose(-1, -2));
        (a.matmul(&phi) * &r).sum(Kind::Double).backward();
        let auto = a.grad();
        let err = (&closed - &auto).abs().max().double_value(&[]);
        let scale = auto.abs().max().double_value(&[]);
        assert!(
            err <= 1e-9 * scale,
            "closed form differs from autograd by {err:e} (scale {scale:e})"
        );

        // Â's covariance with the same κ and shrinkage is the identity
        // up to the shrinkage: κ ÂᵀÂ = Φ(Σ − eps·I)Φ = I − eps·Σ⁻¹.
        let white = f.out.transpose(-1, -2).matmul(&f.out) * f.kappa;
        let expected = Tensor::eye(v, opts) - f.phi.matmul(&f.phi) * eps;
        let off = (&white - &expected).abs().max().double_value(&[]);
        assert!(off < 1e-10, "whitened covariance off by {off:e}");
    }

    #[test]
    fn a_singular_covariance_is_an_error_naming_its_condition() {
        let a = Tensor::zeros([1, 4, 3], (Kind::Float, Device::Cpu));
        let err = zca_whiten_centred(a, 3.0, 0.0).unwrap_err();
        assert!(matches!(err, WhiteningError::NonFinite { .. }), "{err}");
    }
}
