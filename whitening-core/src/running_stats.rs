//! Running statistics for inference-time batch whitening
//! (`docs/reference.md` §2.6).
//!
//! The W-MSE release's `Whitening2d` keeps, when `track_running_stats` is
//! on, a running mean and a running covariance updated with momentum 0.01
//! (`r ← momentum·batch + (1 − momentum)·r`; mean starts at 0, covariance
//! at `I`), and whitens with them in evaluation mode. Only BW has such
//! statistics: CW's covariance is between the examples of one batch.
//!
//! Departure from the release's code (`base/methods/whitening.py`,
//! `Whitening2d.forward`), kept on purpose: there the update runs only when
//! `axis == 0`, which is its *channel* whitening, so BW's buffers stay at
//! 0 and `I`; it also stores the covariance before shrinkage. No loss
//! uses evaluation-mode whitening, so training is unaffected; here BW's
//! statistics follow the update rule above, shrinkage included.

use tch::{Device, Kind, Tensor};

use crate::config::{WhiteningAxis, WhiteningConfig};
use crate::whitening::{covariance_of_centred, whitening_matrix};
use crate::WhiteningError;

/// Batch whitening with running mean and covariance (per group).
#[derive(Debug)]
pub struct BatchWhiteningRunningStats {
    cfg: WhiteningConfig,
    /// Running mean, `[d]`.
    pub mean: Tensor,
    /// Running covariance per group, `[g, d/g, d/g]` (after shrinkage).
    pub cov: Tensor,
    /// Weight of the newest batch (reference: 0.01).
    pub momentum: f64,
}

impl BatchWhiteningRunningStats {
    /// Reference momentum.
    pub const MOMENTUM: f64 = 0.01;

    /// Statistics for `d` channels, kept in `options` (kind and device);
    /// the configuration must be BW without random partition (a random
    /// partition has no stable groups to track).
    pub fn new(
        d: i64,
        cfg: WhiteningConfig,
        options: (Kind, Device),
    ) -> Result<Self, WhiteningError> {
        if cfg.axis != WhiteningAxis::Batch || cfg.random_partition {
            return Err(WhiteningError::BadInput(
                "running statistics exist for batch whitening with fixed groups only".into(),
            ));
        }
        if cfg.groups < 1 || d % cfg.groups != 0 {
            return Err(WhiteningError::GroupsDoNotDivide {
                d,
                groups: cfg.groups,
            });
        }
        let c = d / cfg.groups;
        Ok(Self {
            mean: Tensor::zeros([d], options),
            cov: Tensor::eye(c, options)
                .expand([cfg.groups, c, c], false)
                .copy(),
            momentum: Self::MOMENTUM,
            cfg,
        })
    }

    fn grouped(&self, centred: &Tensor) -> Tensor {
        let (w, d) = (centred.size()[0], centred.size()[1]);
        let g = self.cfg.groups;
        centred.view([w, g, d / g]).permute([1, 0, 2])
    }

    fn ungrouped(&self, out: &Tensor) -> Tensor {
        let (g, w, c) = (out.size()[0], out.size()[1], out.size()[2]);
        out.permute([1, 0, 2]).reshape([w, g * c])
    }

    /// Training mode: whitens `x: [w, d]` with its own batch statistics
    /// (differentiable) and folds them into the running statistics.
    pub fn forward_train(&mut self, x: &Tensor) -> Result<Tensor, WhiteningError> {
        let (w, d) = (x.size()[0], x.size()[1]);
        self.cfg.validate(w, d)?;
        let mean = x.mean_dim(0, true, None);
        let a = self.grouped(&(x - &mean));
        let cov = covariance_of_centred(&a, w as f64 - self.cfg.minus, self.cfg.eps);
        let phi = whitening_matrix(&cov, self.cfg.kind)?;
        tch::no_grad(|| {
            let m = self.momentum;
            self.mean =
                &self.mean * (1.0 - m) + mean.squeeze_dim(0).detach().to_kind(self.mean.kind()) * m;
            self.cov = &self.cov * (1.0 - m) + cov.detach().to_kind(self.cov.kind()) * m;
        });
        Ok(self.ungrouped(&a.matmul(&phi.transpose(-1, -2))))
    }

    /// Evaluation mode: whitens `x: [w, d]` with the running statistics.
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor, WhiteningError> {
        let a = self.grouped(&(x - self.mean.to_kind(x.kind())));
        let phi = whitening_matrix(&self.cov.to_kind(x.kind()), self.cfg.kind)?;
        Ok(self.ungrouped(&a.matmul(&phi.transpose(-1, -2))))
    }
}
