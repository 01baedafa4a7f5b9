//! Adam, SGD and LARS over the trainable variables of a VarStore, with their
//! state held as named tensors so that a checkpoint can save and restore it
//! exactly (tch's `nn::Optimizer` keeps its state inside libtorch, out of
//! reach). `docs/reference.md` §6.1 and §7.4: Adam for the small datasets,
//! SGD with momentum for ImageNet, optional LARS for the ImageNet linear
//! classifier.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::tensor_file::sorted_variables;
use crate::ModelError;

/// The update rule. Each follows PyTorch's single-tensor implementation
/// (`torch.optim.Adam`/`SGD`, `foreach=False`), weight decay as L2 added to
/// the gradient: `g ← ∇ + wd·θ`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `θ ← θ − lr/(1−β₁ᵗ) · m / (sqrt(v)/sqrt(1−β₂ᵗ) + eps)`.
    Adam {
        /// β₁ (PyTorch default 0.9).
        beta1: f64,
        /// β₂ (PyTorch default 0.999).
        beta2: f64,
        /// eps (PyTorch default 1e-8).
        eps: f64,
    },
    /// `b ← μb + g`, `θ ← θ − lr·b` (PyTorch's first step `b = g` is the same
    /// as starting from `b = 0`).
    Sgd {
        /// μ (ImageNet, `docs/reference.md` §6.1: 0.9).
        momentum: f64,
    },
    /// LARS as MoCo v3 and SimSiam's linear evaluation use it (You et al.
    /// 2017): for every weight with more than one dimension, weight decay is
    /// added and the gradient scaled by the trust ratio `η·‖θ‖/‖g‖` (1 when
    /// either norm is 0); biases and BN parameters get neither (plain
    /// momentum SGD). Then `b ← μb + g`, `θ ← θ − lr·b`.
    Lars {
        /// μ.
        momentum: f64,
        /// η, the trust coefficient (commonly 0.001).
        eta: f64,
    },
    /// apex's `LARC` (`clip = False`) around momentum SGD, what the
    /// release's `ImageNet/lincls.py --lars` runs: for every parameter whose
    /// norm and gradient norm are both non-zero (biases included), `g ←
    /// (g + wd·θ) · η‖θ‖/(‖g‖ + wd‖θ‖ + 1e-8)`; any other parameter keeps
    /// its plain gradient (no weight decay). Then `b ← μb + g`, `θ ← θ − lr·b`.
    Larc {
        /// μ.
        momentum: f64,
        /// η, the trust coefficient (the release: 0.001).
        eta: f64,
    },
}

impl OptimizerKind {
    /// Adam with PyTorch's defaults (β₁ 0.9, β₂ 0.999, eps 1e-8).
    pub fn adam() -> Self {
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// State tensors kept per parameter, in the order
    /// [`update_parameter`] takes them (torch.optim's state names).
    pub fn slots(&self) -> &'static [&'static str] {
        match self {
            OptimizerKind::Adam { .. } => &["exp_avg", "exp_avg_sq"],
            OptimizerKind::Sgd { .. } | OptimizerKind::Lars { .. } | OptimizerKind::Larc { .. } => {
                &["momentum_buffer"]
            }
        }
    }
}

/// An optimiser over the trainable variables (those requiring gradients)
/// of one or more VarStores.
///
/// Its state is `step` (an int64 scalar, the number of steps taken) and one
/// or two tensors per parameter named `<slot>.<parameter name>`, e.g.
/// `exp_avg.layer1.0.conv1.weight`; see [`Optimizer::state`].
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    lr: f64,
    weight_decay: f64,
    params: Vec<(String, Tensor)>,
    state: BTreeMap<String, Tensor>,
    step: i64,
}

impl Optimizer {
    /// Collects the trainable variables of `stores` — each with a name
    /// prefix (e.g. `("encoder.", &encoder_vs)`), so parameters of several
    /// stores stay distinct — and allocates zeroed state for them.
    pub fn new(
        kind: OptimizerKind,
        lr: f64,
        weight_decay: f64,
        stores: &[(&str, &VarStore)],
    ) -> Result<Optimizer, ModelError> {
        if !(lr.is_finite() && lr >= 0.0 && weight_decay.is_finite() && weight_decay >= 0.0) {
            return Err(ModelError::Config(format!(
                "learning rate and weight decay must be finite and ≥ 0, got lr {lr}, weight_decay {weight_decay}"
            )));
        }
        let mut params = Vec::new();
        for (prefix, vs) in stores {
            for (name, tensor) in sorted_variables(vs) {
                if tensor.requires_grad() {
                    params.push((format!("{prefix}{name}"), tensor));
                }
            }
        }
        let mut state = BTreeMap::new();
        for (name, p) in &params {
            for slot in kind.slots() {
                let key = format!("{slot}.{name}");
                if state.insert(key.clone(), p.detach().zeros_like()).is_some() {
                    return Err(ModelError::Config(format!(
                        "two parameters are both named `{name}`; give the stores distinct prefixes"
                    )));
                }
            }
        }
        Ok(Optimizer {
            kind,
            lr,
            weight_decay,
            params,
            state,
            step: 0,
        })
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate (warm-up and schedules of `docs/reference.md`
    /// §6.2).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Number of steps taken.
    pub fn step_count(&self) -> i64 {
        self.step
    }

    /// Names of the parameters it updates, in update order.
    pub fn parameter_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(n, _)| n.as_str())
    }

    /// Moves the optimiser state to `device`, after the parameters were moved
    /// there with `VarStore::set_device` (the parameters themselves follow
    /// the store: the optimiser holds shallow references to them).
    pub fn set_device(&mut self, device: tch::Device) {
        for state in self.state.values_mut() {
            *state = state.to_device(device);
        }
    }

    /// Sets every parameter's gradient to zero.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// `loss.backward()`, then [`Optimizer::step`].
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as f64;
        let (lr, wd, kind) = (self.lr, self.weight_decay, self.kind);
        tch::no_grad(|| {
            for (name, p) in &mut self.params {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let mut slots: Vec<Tensor> = kind
                    .slots()
                    .iter()
                    .map(|slot| self.state[&format!("{slot}.{name}")].shallow_clone())
                    .collect();
                update_parameter(kind, p, grad, &mut slots, lr, wd, t);
            }
        });
    }

    /// The whole state as named tensors (shallow copies): `step` and the
    /// per-parameter slots. What [`crate::Checkpoint`] saves.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out: BTreeMap<String, Tensor> = self
            .state
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect();
        out.insert("step".to_string(), Tensor::from(self.step));
        out
    }

    /// Restores a state returned by [`Optimizer::state`] (possibly read from a
    /// file, on any device). Every missing, unexpected or mis-shaped entry is
    /// reported by name and nothing is changed.
    pub fn load_state(
        &mut self,
        source: &std::path::Path,
        state: &BTreeMap<String, Tensor>,
    ) -> Result<(), ModelError> {
        let mut expected = self.state();
        let step = state
            .get("step")
            .filter(|s| s.size().is_empty() && s.kind() == Kind::Int64)
            .map(|s| s.int64_value(&[]));
        expected.remove("step");
        let mut found: BTreeMap<String, Tensor> = state
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect();
        found.remove("step");
        let mut mismatches = crate::tensor_file::mismatches(&expected, &found);
        if step.is_none() {
            mismatches.push("missing `step` (an int64 scalar)".to_string());
        }
        match (step, mismatches.is_empty()) {
            (Some(step), true) => {
                crate::tensor_file::copy_into(source, &expected, &found)?;
                self.step = step;
                Ok(())
            }
            _ => Err(ModelError::Mismatch {
                path: source.to_path_buf(),
                mismatches,
            }),
        }
    }
}

/// One update of one parameter `p` by the rule `kind`: the kernel that
/// [`Optimizer::step`] runs for every parameter, public so that code holding
/// plain tensors and explicit gradients (ssl-eval's linear protocols) shares
/// the exact same arithmetic.
///
/// `slots` are the per-parameter state tensors in [`OptimizerKind::slots`]
/// order (zeros before the first step), `t` the 1-based step number (Adam's
/// bias correction). Weight decay is L2 added to the gradient, `g ← g +
/// wd·θ`, for every parameter with Adam and SGD and only for weights with
/// more than one dimension with LARS (MoCo v3). `p` is updated in place: call
/// it under `tch::no_grad` when `p` requires gradients. `grad` is consumed
/// and never written into.
pub fn update_parameter(
    kind: OptimizerKind,
    p: &mut Tensor,
    grad: Tensor,
    slots: &mut [Tensor],
    lr: f64,
    weight_decay: f64,
    t: f64,
) {
    let decayed = |grad: Tensor, p: &Tensor| {
        if weight_decay != 0.0 {
            grad + p.detach() * weight_decay
        } else {
            grad
        }
    };
    match kind {
        OptimizerKind::Adam { beta1, beta2, eps } => {
            let grad = decayed(grad, p);
            let (m, v) = slots.split_at_mut(1);
            let (m, v) = (&mut m[0], &mut v[0]);
            let _ = m.lerp_(&grad, 1.0 - beta1);
            let _ = v.g_mul_scalar_(beta2);
            let _ = v.addcmul_(&(&grad * (1.0 - beta2)), &grad);
            let step_size = lr / (1.0 - beta1.powf(t));
            let bias_correction2_sqrt = (1.0 - beta2.powf(t)).sqrt();
            let denom = v.sqrt() / bias_correction2_sqrt + eps;
            let _ = p.addcdiv_(&(&*m * -step_size), &denom);
        }
        OptimizerKind::Sgd { momentum } => {
            let grad = decayed(grad, p);
            let b = &mut slots[0];
            let _ = b.g_mul_scalar_(momentum);
            let _ = b.g_add_(&grad);
            let _ = p.g_add_(&(&*b * -lr));
        }
        OptimizerKind::Larc { momentum, eta } => {
            let p_norm = p.detach().norm().double_value(&[]);
            let g_norm = grad.norm().double_value(&[]);
            let grad = if p_norm != 0.0 && g_norm != 0.0 {
                let adaptive = eta * p_norm / (g_norm + p_norm * weight_decay + 1e-8);
                (grad + p.detach() * weight_decay) * adaptive
            } else {
                grad
            };
            let b = &mut slots[0];
            let _ = b.g_mul_scalar_(momentum);
            let _ = b.g_add_(&grad);
            let _ = p.g_add_(&(&*b * -lr));
        }
        OptimizerKind::Lars { momentum, eta } => {
            let grad = if p.dim() > 1 {
                let grad = decayed(grad, p);
                let p_norm = p.detach().norm().double_value(&[]);
                let g_norm = grad.norm().double_value(&[]);
                let trust = if p_norm > 0.0 && g_norm > 0.0 {
                    eta * p_norm / g_norm
                } else {
                    1.0
                };
                grad * trust
            } else {
                grad
            };
            let b = &mut slots[0];
            let _ = b.g_mul_scalar_(momentum);
            let _ = b.g_add_(&grad);
            let _ = p.g_add_(&(&*b * -lr));
        }
    }
}
/// [`update_parameter`]'s Adam on plain f32 slices, for CPU code that keeps
/// a small parameter outside libtorch (ssl-eval's fused linear probe, where
/// eight tensor calls per step would cost more than the step). The same
/// operations in the same order as the tensor kernel, element by element:
/// `g ← g + wd·θ`, `m ← m + (g − m)(1 − β₁)`, `v ← β₂v + (g(1 − β₂))g`,
/// `θ ← θ − (lr/(1 − β₁ᵗ))·m / (√v/√(1 − β₂ᵗ) + ε)`.
#[allow(clippy::too_many_arguments)]
pub fn adam_update_slice(
    p: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    lr: f64,
    weight_decay: f64,
    (beta1, beta2, eps): (f64, f64, f64),
    t: f64,
) {
    assert!(
        grad.len() == p.len() && m.len() == p.len() && v.len() == p.len(),
        "adam_update_slice: parameter, gradient and state lengths differ"
    );
    let wd = weight_decay as f32;
    let (a1, b2, a2) = ((1.0 - beta1) as f32, beta2 as f32, (1.0 - beta2) as f32);
    let step_size = (lr / (1.0 - beta1.powf(t))) as f32;
    let bc2 = (1.0 - beta2.powf(t)).sqrt() as f32;
    let eps = eps as f32;
    for i in 0..p.len() {
        let g = if weight_decay != 0.0 {
            grad[i] + p[i] * wd
        } else {
            grad[i]
        };
        m[i] += a1 * (g - m[i]);
        v[i] = v[i] * b2 + (g * a2) * g;
        let denom = v[i].sqrt() / bc2 + eps;
        p[i] += (m[i] * -step_size) / denom;
    }
}
