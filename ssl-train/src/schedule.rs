//! Learning-rate schedules (the release's `base/train.py` for the small
//! datasets, `ImageNet/main.py` for ImageNet).
//!
//! Small datasets: linear warm-up `lr·(step+1)/warmup` over the first
//! `warmup_iters` iterations, then ×`drop_factor` at each drop epoch.
//! ImageNet: the same warm-up, then cosine decay per epoch
//! `lr·½(1 + cos(π·epoch/E))`.

use crate::config::{Config, ScheduleName};

/// The learning rate for a global `step` within `epoch`.
#[derive(Debug, Clone)]
pub struct LrSchedule {
    base: f64,
    warmup: usize,
    kind: ScheduleName,
    drops: Vec<usize>,
    factor: f64,
    epochs: usize,
}

impl LrSchedule {
    /// The schedule of `optim.*`.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            base: cfg.optim.lr,
            warmup: cfg.optim.warmup_iters,
            kind: cfg.optim.schedule,
            drops: cfg.drop_epochs(),
            factor: cfg.optim.drop_factor,
            epochs: cfg.optim.epochs,
        }
    }

    /// The epoch of the first drop (evaluation gets denser after it).
    pub fn first_drop(&self) -> Option<usize> {
        match self.kind {
            ScheduleName::Step => self.drops.iter().copied().min(),
            ScheduleName::Cosine => None,
        }
    }

    /// The learning rate of global step `step`, in `epoch` (0-based).
    pub fn lr(&self, step: usize, epoch: usize) -> f64 {
        let after_warmup = match self.kind {
            ScheduleName::Step => {
                let n = self.drops.iter().filter(|&&d| epoch >= d).count() as i32;
                self.base * self.factor.powi(n)
            }
            ScheduleName::Cosine => {
                let t = epoch as f64 / self.epochs.max(1) as f64;
                self.base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        };
        if step < self.warmup {
            // The reference multiplies the base rate by (step + 1) / warmup.
            self.base * (step + 1) as f64 / self.warmup as f64
        } else {
            after_warmup
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DatasetName};

    #[test]
    fn warmup_then_step_drops_at_e_minus_50_and_25() {
        let mut cfg = Config::defaults_for(DatasetName::Cifar10);
        cfg.optim.epochs = 200;
        cfg.optim.lr = 3e-3;
        let s = LrSchedule::from_config(&cfg);
        assert_eq!(s.lr(0, 0), 3e-3 / 500.0);
        assert_eq!(s.lr(499, 0), 3e-3);
        assert_eq!(s.lr(10_000, 149), 3e-3);
        assert!((s.lr(10_000, 150) - 3e-3 * 0.2).abs() < 1e-15);
        assert!((s.lr(10_000, 175) - 3e-3 * 0.04).abs() < 1e-15);
        assert_eq!(s.first_drop(), Some(150));
    }

    #[test]
    fn cosine_decays_to_zero() {
        let cfg = Config::defaults_for(DatasetName::Imagenet);
        let s = LrSchedule::from_config(&cfg);
        assert_eq!(s.lr(1_000, 0), cfg.optim.lr);
        assert!((s.lr(1_000, cfg.optim.epochs / 2) - cfg.optim.lr / 2.0).abs() < 1e-12);
        assert!(s.lr(1_000, cfg.optim.epochs) < 1e-12);
        assert_eq!(s.first_drop(), None);
    }
}
