//! SwAV's prototypes (a Table 2 method, `docs/reference.md` §3.9 and §4.3): a
//! bias-free linear layer whose rows are unit vectors `c_k`, scoring
//! L2-normalised embeddings.

use tch::nn;
use tch::Tensor;

/// `K` prototype vectors of dimension `emb`, the parameter `weight [K, emb]`
/// (the name of SwAV's `nn.Linear(emb, K, bias=False)`).
#[derive(Debug)]
pub struct Prototypes {
    /// `C`, shape `[K, emb]`.
    pub weight: Tensor,
}

impl Prototypes {
    /// Registers `path.weight` with PyTorch's Linear initialisation (uniform
    /// in `±1/sqrt(emb)`), then normalises its rows as SwAV does before the
    /// first step.
    pub fn new(path: &nn::Path<'_>, emb: i64, count: i64) -> Prototypes {
        let bound = 1.0 / (emb as f64).sqrt();
        let weight = path.var(
            "weight",
            &[count, emb],
            nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        );
        let mut prototypes = Prototypes { weight };
        prototypes.normalize();
        prototypes
    }

    /// `c_k ← c_k / ‖c_k‖₂` in place, outside autograd (SwAV does this before
    /// every training step).
    pub fn normalize(&mut self) {
        tch::no_grad(|| {
            let unit = l2_normalize_rows(&self.weight.detach());
            self.weight.copy_(&unit);
        });
    }

    /// Scores `S = (z/‖z‖₂) Cᵀ`, shape `[N, K]`: cosine similarities between
    /// every embedding and every prototype once the prototypes are normalised.
    pub fn scores(&self, z: &Tensor) -> Tensor {
        l2_normalize_rows(z).matmul(&self.weight.tr())
    }
}

/// `F.normalize(x, dim=1)`: `x / max(‖x_row‖₂, 1e-12)`.
fn l2_normalize_rows(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12)
}
