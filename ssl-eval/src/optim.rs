//! The optimisers of the linear protocols, as in-place updates on plain
//! tensors (no autograd), each matching its PyTorch reference step for step.

use tch::Tensor;

/// `g + λθ` as a new tensor: the caller's gradient (possibly a view of its
/// data) is never modified in place.
fn with_weight_decay(g: Tensor, p: &Tensor, weight_decay: f64) -> Tensor {
    if weight_decay == 0.0 {
        g
    } else {
        g + p * weight_decay
    }
}

/// `torch.optim.Adam` (no AMSGrad): L2 weight decay added to the gradient,
/// `g ← g + λθ`; `m ← β₁m + (1−β₁)g`; `v ← β₂v + (1−β₂)g²`;
/// `θ ← θ − lr/(1−β₁ᵗ) · m / (√v / √(1−β₂ᵗ) + ε)`.
#[derive(Debug)]
pub struct Adam {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    t: i32,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    /// Adam with torch's defaults `β = (0.9, 0.999)`, `ε = 1e-8` and L2
    /// weight decay `weight_decay`, for parameters shaped like `params`.
    pub fn new(params: &[&Tensor], weight_decay: f64) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            t: 0,
            m: params.iter().map(|p| p.zeros_like()).collect(),
            v: params.iter().map(|p| p.zeros_like()).collect(),
        }
    }

    /// One step at learning rate `lr`; `grads[i]` is the gradient of `params[i]`.
    pub fn step(&mut self, params: &mut [&mut Tensor], grads: Vec<Tensor>, lr: f64) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t);
        let bc2_sqrt = (1.0 - self.beta2.powi(self.t)).sqrt();
        for ((p, g), (m, v)) in params
            .iter_mut()
            .zip(grads)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            let g = with_weight_decay(g, p, self.weight_decay);
            let _ = m.lerp_(&g, 1.0 - self.beta1);
            let _ = v.lerp_(&g.square(), 1.0 - self.beta2);
            let denom = v
                .sqrt()
                .g_mul_scalar_(1.0 / bc2_sqrt)
                .g_add_scalar_(self.eps);
            let _ = p.addcdiv_(&(&*m * (-lr / bc1)), &denom);
        }
    }
}

/// `torch.optim.SGD` with momentum `μ` (dampening 0, no Nesterov):
/// `g ← g + λθ`; `buf ← μ·buf + g` (`buf = g` at the first step);
/// `θ ← θ − lr·buf`.
#[derive(Debug)]
pub struct SgdMomentum {
    momentum: f64,
    weight_decay: f64,
    buf: Vec<Tensor>,
}

impl SgdMomentum {
    /// SGD with `momentum` and L2 `weight_decay` for parameters shaped like `params`.
    pub fn new(params: &[&Tensor], momentum: f64, weight_decay: f64) -> Self {
        Self {
            momentum,
            weight_decay,
            buf: params.iter().map(|p| p.zeros_like()).collect(),
        }
    }

    /// One step at learning rate `lr`.
    pub fn step(&mut self, params: &mut [&mut Tensor], grads: Vec<Tensor>, lr: f64) {
        for ((p, g), buf) in params.iter_mut().zip(grads).zip(self.buf.iter_mut()) {
            let g = with_weight_decay(g, p, self.weight_decay);
            // Starting from zeros, μ·0 + g = g: torch's first-step `buf = g`.
            let _ = buf.g_mul_scalar_(self.momentum).g_add_(&g);
            let _ = p.g_sub_(&(&*buf * lr));
        }
    }
}

/// LARS as in the MoCo v3 / SimSiam linear evaluation (You et al. 2017):
/// for parameters with more than one dimension, `g ← g + λθ` then
/// `g ← g · η‖θ‖/‖g‖` (`η` the trust coefficient; factor 1 when either
/// norm is 0); biases keep `g`. Then `μ_buf ← m·μ_buf + g`, `θ ← θ − lr·μ_buf`.
#[derive(Debug)]
pub struct Lars {
    momentum: f64,
    weight_decay: f64,
    trust_coefficient: f64,
    buf: Vec<Tensor>,
}

impl Lars {
    /// LARS with `momentum`, `weight_decay` and `trust_coefficient` (MoCo v3: 0.001).
    pub fn new(
        params: &[&Tensor],
        momentum: f64,
        weight_decay: f64,
        trust_coefficient: f64,
    ) -> Self {
        Self {
            momentum,
            weight_decay,
            trust_coefficient,
            buf: params.iter().map(|p| p.zeros_like()).collect(),
        }
    }

    /// One step at learning rate `lr`.
    pub fn step(&mut self, params: &mut [&mut Tensor], grads: Vec<Tensor>, lr: f64) {
        for ((p, mut g), buf) in params.iter_mut().zip(grads).zip(self.buf.iter_mut()) {
            if p.dim() > 1 {
                g = with_weight_decay(g, p, self.weight_decay);
                let p_norm = p.norm().double_value(&[]);
                let g_norm = g.norm().double_value(&[]);
                if p_norm > 0.0 && g_norm > 0.0 {
                    // Out of place: `*=` on a tch tensor would write into the caller's gradient.
                    g = g.g_mul_scalar(self.trust_coefficient * p_norm / g_norm);
                }
            }
            let _ = buf.g_mul_scalar_(self.momentum).g_add_(&g);
            let _ = p.g_sub_(&(&*buf * lr));
        }
    }
}
