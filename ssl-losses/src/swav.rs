//! SwAV's swapped prediction with Sinkhorn–Knopp codes (the paper's Table 2,
//! `docs/reference.md` §3.9; Caron et al., "Unsupervised Learning of Visual
//! Features by Contrasting Cluster Assignments", NeurIPS 2020).
//!
//! With L2-normalised embeddings `ẑ_v` and prototypes `Ĉ` (`K × d`), the
//! scores of view `v` are `s_v = ẑ_v Ĉᵀ` (`m × K`). The codes of view `i`
//! are `q_i = SinkhornKnopp(s_i)` (no gradient), and
//!
//! ```text
//! L = 1/V Σ_i 1/(V − 1) Σ_{v≠i} −1/m Σ_r Σ_k q_i[r,k] · log softmax(s_v[r] / T)_k
//! ```
//!
//! with temperature T = 0.1. Sinkhorn–Knopp (ε = 0.05, 3 iterations):
//! `Q = exp(sᵀ/ε)` (`K × m`), `Q /= ΣQ`, then repeat: rows to sum `1/K`,
//! columns to sum `1/m`; finally `q = m·Qᵀ` (rows sum to 1).
//!
//! ```
//! let opts = (tch::Kind::Float, tch::Device::Cpu);
//! let z = tch::Tensor::randn([2, 32, 16], opts);
//! let prototypes = tch::Tensor::randn([10, 16], opts);
//! let loss = ssl_losses::swav_loss(&z, &prototypes, &ssl_losses::SwavParams::default())?;
//! assert!(loss.double_value(&[]) > 0.0);
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::norm_mse::l2_normalize;
use crate::views::view_dims;
use crate::LossError;

/// SwAV's hyper-parameters (the SwAV paper's ImageNet defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwavParams {
    /// Number of prototypes `K` (3000).
    pub prototypes: i64,
    /// Softmax temperature `T` (0.1).
    pub temperature: f64,
    /// Sinkhorn–Knopp entropy weight ε (0.05).
    pub epsilon: f64,
    /// Sinkhorn–Knopp iterations (3).
    pub sinkhorn_iterations: usize,
}

impl Default for SwavParams {
    fn default() -> Self {
        Self {
            prototypes: 3000,
            temperature: 0.1,
            epsilon: 0.05,
            sinkhorn_iterations: 3,
        }
    }
}

/// Sinkhorn–Knopp codes of `scores: [m, K]`: an `[m, K]` tensor whose rows
/// sum to 1 (the last step normalises them) and whose columns each sum to
/// about `m/K` (equipartition, exact in the limit of iterations), computed
/// without gradient.
pub fn sinkhorn_knopp(scores: &Tensor, epsilon: f64, iterations: usize) -> Tensor {
    tch::no_grad(|| {
        let m = scores.size()[0] as f64;
        let k = scores.size()[1] as f64;
        // Subtracting the maximum changes nothing after the first
        // normalisation and keeps exp finite for small ε.
        let s = scores.detach() / epsilon;
        let mut q = (&s - s.max()).exp().transpose(0, 1); // [K, m]
        q = &q / q.sum(None);
        for _ in 0..iterations {
            q = &q / q.sum_dim_intlist(1, true, None) / k;
            q = &q / q.sum_dim_intlist(0, true, None) / m;
        }
        (q * m).transpose(0, 1)
    })
}

/// The swapped-prediction loss of `z: [views, m, d]` with prototypes
/// `[K, d]` (both L2-normalised here), every view serving as a code.
pub fn swav_loss(z: &Tensor, prototypes: &Tensor, p: &SwavParams) -> Result<Tensor, LossError> {
    let (views, _, d) = view_dims(z, "embeddings", 2, 1)?;
    if prototypes.dim() != 2 || prototypes.size()[1] != d {
        return Err(LossError::Shape {
            what: "prototypes",
            problem: format!("expected [K, {d}], got {:?}", prototypes.size()),
        });
    }
    if !(p.temperature > 0.0 && p.epsilon > 0.0) {
        return Err(LossError::HyperParameter {
            method: "swav",
            key: "temperature/epsilon",
            value: format!("{}/{}", p.temperature, p.epsilon),
            reason: "must both be positive",
        });
    }
    let scores = l2_normalize(z).matmul(&l2_normalize(prototypes).transpose(0, 1)); // [V, m, K]
    let log_p = (&scores / p.temperature).log_softmax(-1, None);
    let mut total: Option<Tensor> = None;
    for i in 0..views {
        let q = sinkhorn_knopp(&scores.get(i), p.epsilon, p.sinkhorn_iterations);
        for v in (0..views).filter(|&v| v != i) {
            let ce = -(&q * log_p.get(v))
                .sum_dim_intlist(-1, false, None)
                .mean(None);
            total = Some(match total {
                Some(t) => t + ce,
                None => ce,
            });
        }
    }
    let total = total.unwrap_or_else(|| z.zeros_like().sum(None));
    Ok(total / (views * (views - 1)) as f64)
}
