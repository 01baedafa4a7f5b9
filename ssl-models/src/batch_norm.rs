//! BatchNorm with PyTorch's parameters *and* buffers.
//!
//! `tch::nn::batch_norm2d` registers `weight`, `bias`, `running_mean` and
//! `running_var` but not `num_batches_tracked`, which torchvision's
//! `state_dict()` has for every BatchNorm. This layer registers all five
//! under PyTorch's names (`num_batches_tracked` as an int64 scalar, shape
//! `[]`) so checkpoints and exports carry exactly torchvision's keys.

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// BatchNorm hyper-parameters (PyTorch's defaults: `eps` 1e-5, `momentum` 0.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Running statistics: `r ← (1 − momentum)·r + momentum·batch_stat`
    /// (the running variance uses the unbiased batch variance).
    pub momentum: f64,
    /// Learnable `γ` (`weight`, starts at 1) and `β` (`bias`, starts at 0).
    pub affine: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
            affine: true,
        }
    }
}

/// `y = γ·(x − μ)/sqrt(σ² + eps) + β` over every axis but the channel axis 1:
/// batch statistics in training (which also update the running ones and
/// count the batch in `num_batches_tracked`), running statistics in
/// evaluation. Works for `[N, C]`, `[N, C, L]` and `[N, C, H, W]` inputs.
#[derive(Debug)]
pub struct BatchNorm {
    /// `γ`, shape `[C]`, when affine.
    pub weight: Option<Tensor>,
    /// `β`, shape `[C]`, when affine.
    pub bias: Option<Tensor>,
    /// Running mean, shape `[C]`, starts at 0.
    pub running_mean: Tensor,
    /// Running variance, shape `[C]`, starts at 1.
    pub running_var: Tensor,
    /// Number of training batches seen, int64 scalar.
    pub num_batches_tracked: Tensor,
    config: BatchNormConfig,
}

/// Registers a BatchNorm over `channels` channels at `path`
/// (`path.weight`, `path.bias`, `path.running_mean`, `path.running_var`,
/// `path.num_batches_tracked`), with `γ = 1`, `β = 0` as torchvision's
/// ResNet initialisation and `nn.BatchNorm*d`'s defaults give.
pub fn batch_norm(path: &nn::Path<'_>, channels: i64, config: BatchNormConfig) -> BatchNorm {
    let (weight, bias) = if config.affine {
        (
            Some(path.ones("weight", &[channels])),
            Some(path.zeros("bias", &[channels])),
        )
    } else {
        (None, None)
    };
    let running_mean = path.zeros_no_train("running_mean", &[channels]);
    let running_var = path.ones_no_train("running_var", &[channels]);
    let num_batches_tracked = path.add(
        "num_batches_tracked",
        Tensor::zeros([], (Kind::Int64, path.device())),
        false,
    );
    BatchNorm {
        weight,
        bias,
        running_mean,
        running_var,
        num_batches_tracked,
        config,
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            let mut count = self.num_batches_tracked.shallow_clone();
            tch::no_grad(|| {
                let _ = count.g_add_scalar_(1);
            });
        }
        Tensor::batch_norm(
            xs,
            self.weight.as_ref(),
            self.bias.as_ref(),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.config.momentum,
            self.config.eps,
            true,
        )
    }
}
