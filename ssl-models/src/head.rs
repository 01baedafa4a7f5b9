//! Projection heads and predictors (`docs/reference.md` §3.4–§3.5, §4.2–§4.3),
//! as PyTorch `nn.Sequential`s.
//!
//! Layers are indexed like `nn.Sequential` (ReLUs take an index too), so the
//! parameter names are those of the reference code: a 2-layer head with BN
//! is `0.weight 0.bias | 1.weight 1.bias 1.running_mean … | (2 = ReLU) |
//! 3.weight 3.bias`. Linear layers use PyTorch's default initialisation
//! (weight and bias uniform in `±1/sqrt(fan_in)`), BatchNorm1d `γ = 1`, `β = 0`.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use crate::batch_norm::{batch_norm, BatchNorm, BatchNormConfig};
use crate::ModelError;

/// One layer of an [`Mlp`].
#[derive(Debug)]
enum Layer {
    Linear(nn::Linear),
    BatchNorm(BatchNorm),
    Relu,
}

/// A sequence of Linear, BatchNorm1d and ReLU layers, `x [N, in] ↦ [N, out]`.
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<Layer>,
    out_dim: i64,
}

/// What [`Mlp`] layers to build, in order.
#[derive(Debug, Clone, Copy)]
enum Spec {
    Linear { out: i64, bias: bool },
    BatchNorm { affine: bool },
    Relu,
}

impl Mlp {
    fn build(path: &nn::Path<'_>, in_dim: i64, specs: &[Spec]) -> Mlp {
        let mut dim = in_dim;
        let layers = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| match *spec {
                Spec::Linear { out, bias } => {
                    let bound = 1.0 / (dim as f64).sqrt();
                    let init = nn::Init::Uniform {
                        lo: -bound,
                        up: bound,
                    };
                    let config = nn::LinearConfig {
                        ws_init: init,
                        bs_init: Some(init),
                        bias,
                    };
                    let layer = nn::linear(path / i, dim, out, config);
                    dim = out;
                    Layer::Linear(layer)
                }
                Spec::BatchNorm { affine } => Layer::BatchNorm(batch_norm(
                    &(path / i),
                    dim,
                    BatchNormConfig {
                        affine,
                        ..Default::default()
                    },
                )),
                Spec::Relu => Layer::Relu,
            })
            .collect();
        Mlp {
            layers,
            out_dim: dim,
        }
    }

    /// Dimension of the output.
    pub fn out_dim(&self) -> i64 {
        self.out_dim
    }

    /// The projection head of `docs/reference.md` §4.2: `layers − 1` ×
    /// [Linear(·, hidden), BatchNorm1d (when `batch_norm`), ReLU], then
    /// Linear(·, out).
    pub fn projection_head(
        path: &nn::Path<'_>,
        config: &ProjectionHeadConfig,
    ) -> Result<Mlp, ModelError> {
        if config.layers == 0 || config.in_dim < 1 || config.hidden_dim < 1 || config.out_dim < 1 {
            return Err(ModelError::Config(format!(
                "a projection head needs at least 1 layer and positive sizes, got {config:?}"
            )));
        }
        let mut specs = Vec::new();
        for _ in 1..config.layers {
            specs.push(Spec::Linear {
                out: config.hidden_dim,
                bias: true,
            });
            if config.batch_norm {
                specs.push(Spec::BatchNorm { affine: true });
            }
            specs.push(Spec::Relu);
        }
        specs.push(Spec::Linear {
            out: config.out_dim,
            bias: true,
        });
        Ok(Mlp::build(path, config.in_dim, &specs))
    }

    /// BYOL's predictor (`docs/reference.md` §4.3): Linear(emb, hidden),
    /// BatchNorm1d, ReLU, Linear(hidden, emb); the reference uses
    /// `hidden = head_size`.
    pub fn byol_predictor(path: &nn::Path<'_>, emb: i64, hidden: i64) -> Mlp {
        Mlp::build(
            path,
            emb,
            &[
                Spec::Linear {
                    out: hidden,
                    bias: true,
                },
                Spec::BatchNorm { affine: true },
                Spec::Relu,
                Spec::Linear {
                    out: emb,
                    bias: true,
                },
            ],
        )
    }

    /// SimSiam's head (`docs/reference.md` §3.5): Linear(in, hidden, no bias),
    /// BN, ReLU, Linear(hidden, hidden, no bias), BN, ReLU, Linear(hidden, emb,
    /// no bias), BN without affine.
    pub fn simsiam_head(path: &nn::Path<'_>, in_dim: i64, hidden: i64, emb: i64) -> Mlp {
        Mlp::build(
            path,
            in_dim,
            &[
                Spec::Linear {
                    out: hidden,
                    bias: false,
                },
                Spec::BatchNorm { affine: true },
                Spec::Relu,
                Spec::Linear {
                    out: hidden,
                    bias: false,
                },
                Spec::BatchNorm { affine: true },
                Spec::Relu,
                Spec::Linear {
                    out: emb,
                    bias: false,
                },
                Spec::BatchNorm { affine: false },
            ],
        )
    }

    /// SimSiam's predictor (`docs/reference.md` §3.5): Linear(emb, hidden, no
    /// bias), BN, ReLU, Linear(hidden, emb); the reference uses `hidden = 512`.
    pub fn simsiam_predictor(path: &nn::Path<'_>, emb: i64, hidden: i64) -> Mlp {
        Mlp::build(
            path,
            emb,
            &[
                Spec::Linear {
                    out: hidden,
                    bias: false,
                },
                Spec::BatchNorm { affine: true },
                Spec::Relu,
                Spec::Linear {
                    out: emb,
                    bias: true,
                },
            ],
        )
    }
}

impl ModuleT for Mlp {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        for layer in &self.layers {
            ys = match layer {
                Layer::Linear(linear) => linear.forward(&ys),
                Layer::BatchNorm(norm) => norm.forward_t(&ys, train),
                Layer::Relu => ys.relu(),
            };
        }
        ys
    }
}

/// The projection head's shape (`docs/reference.md` §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionHeadConfig {
    /// Encoder feature dimension.
    pub in_dim: i64,
    /// `head_size`: width of the hidden layers.
    pub hidden_dim: i64,
    /// `emb`: output dimension.
    pub out_dim: i64,
    /// `head_layers`: number of Linear layers (≥ 1).
    pub layers: usize,
    /// BatchNorm1d after each hidden Linear.
    pub batch_norm: bool,
}

impl ProjectionHeadConfig {
    /// Small datasets (`docs/reference.md` §4.2): 2 layers, `head_size` 1024,
    /// BN on.
    pub fn small_dataset(in_dim: i64, emb: i64) -> Self {
        ProjectionHeadConfig {
            in_dim,
            hidden_dim: 1024,
            out_dim: emb,
            layers: 2,
            batch_norm: true,
        }
    }

    /// ImageNet (`docs/reference.md` §4.2): 3 layers, `head_size` 2048, emb
    /// 1024, BN on.
    pub fn imagenet(in_dim: i64) -> Self {
        ProjectionHeadConfig {
            in_dim,
            hidden_dim: 2048,
            out_dim: 1024,
            layers: 3,
            batch_norm: true,
        }
    }
}
