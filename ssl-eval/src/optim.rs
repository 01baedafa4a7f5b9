//! The optimisers of the linear protocols, as in-place updates on plain
//! tensors with explicit gradients (no autograd). The arithmetic is
//! ssl-models' [`update_parameter`], the kernel of the trainer's own
//! optimiser, so there is one Adam/SGD/LARS in the workspace; each matches
//! its PyTorch reference step for step (ssl-models tests it against
//! `torch.optim`).

use ssl_models::{update_parameter, OptimizerKind};
use tch::Tensor;

/// An optimiser over a fixed list of plain tensors: its state is one or two
/// slot tensors per parameter and the step count.
#[derive(Debug)]
pub struct TensorOptimizer {
    kind: OptimizerKind,
    weight_decay: f64,
    t: u64,
    slots: Vec<Vec<Tensor>>,
}

impl TensorOptimizer {
    /// `kind` with L2 `weight_decay` for parameters shaped like `params`.
    pub fn new(kind: OptimizerKind, params: &[&Tensor], weight_decay: f64) -> Self {
        Self {
            kind,
            weight_decay,
            t: 0,
            slots: params
                .iter()
                .map(|p| kind.slots().iter().map(|_| p.zeros_like()).collect())
                .collect(),
        }
    }

    /// `torch.optim.Adam` with its defaults (β = (0.9, 0.999), ε = 1e-8).
    pub fn adam(params: &[&Tensor], weight_decay: f64) -> Self {
        Self::new(OptimizerKind::adam(), params, weight_decay)
    }

    /// `torch.optim.SGD` with `momentum` (dampening 0, no Nesterov).
    pub fn sgd(params: &[&Tensor], momentum: f64, weight_decay: f64) -> Self {
        Self::new(OptimizerKind::Sgd { momentum }, params, weight_decay)
    }

    /// MoCo v3's LARS with `trust_coefficient` η (0.001 there): weight decay
    /// and the trust ratio on weights with more than one dimension only.
    pub fn lars(
        params: &[&Tensor],
        momentum: f64,
        weight_decay: f64,
        trust_coefficient: f64,
    ) -> Self {
        Self::new(
            OptimizerKind::Lars {
                momentum,
                eta: trust_coefficient,
            },
            params,
            weight_decay,
        )
    }

    /// apex's `LARC` around momentum SGD, as the release's `ImageNet/lincls.py
    /// --lars` ([`OptimizerKind::Larc`]: every parameter, biases included).
    pub fn larc(
        params: &[&Tensor],
        momentum: f64,
        weight_decay: f64,
        trust_coefficient: f64,
    ) -> Self {
        Self::new(
            OptimizerKind::Larc {
                momentum,
                eta: trust_coefficient,
            },
            params,
            weight_decay,
        )
    }

    /// One step at learning rate `lr`; `grads[i]` is the gradient of
    /// `params[i]` (consumed, never written into).
    pub fn step(&mut self, params: &mut [&mut Tensor], grads: Vec<Tensor>, lr: f64) {
        assert_eq!(params.len(), self.slots.len(), "parameter count changed");
        assert_eq!(grads.len(), self.slots.len(), "one gradient per parameter");
        self.t += 1;
        let t = self.t as f64;
        for ((p, g), slots) in params.iter_mut().zip(grads).zip(self.slots.iter_mut()) {
            update_parameter(self.kind, p, g, slots, lr, self.weight_decay, t);
        }
    }
}
