//! The linear classifier of the linear protocols (`docs/reference.md`
//! §7.3–§7.4): `logits = x Wᵀ + b` under softmax cross-entropy, with its
//! gradient in closed form.
//!
//! For `P = softmax(x Wᵀ + b)` and one-hot targets `Y` over a batch of `B`
//! rows, `L = −1/B Σ log P[r, y_r]` has `∂L/∂W = Gᵀ x`, `∂L/∂b = Σ_r G_r`
//! with `G = (P − Y) / B`. Writing the two matrix products out avoids
//! autograd's graph and bookkeeping on every one of the probe's 25,000 steps.

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};
use tch::{Device, Kind, Tensor};

/// A linear layer `x ↦ x Wᵀ + b` with `W: [classes, d]`, `b: [classes]` (f32),
/// laid out as torch's `nn.Linear`.
#[derive(Debug)]
pub struct LinearClassifier {
    /// `[classes, d]` weight.
    pub weight: Tensor,
    /// `[classes]` bias.
    pub bias: Tensor,
}

impl LinearClassifier {
    /// torch's `nn.Linear` initialisation: `W, b ~ U(−1/√d, 1/√d)`
    /// (kaiming-uniform with `a = √5`), drawn from `rng`.
    pub fn torch_default_init<R: Rng + ?Sized>(
        d: i64,
        classes: i64,
        device: Device,
        rng: &mut R,
    ) -> Self {
        let bound = 1.0 / (d.max(1) as f64).sqrt();
        let dist = Uniform::new_inclusive(-bound, bound)
            .unwrap_or_else(|_| unreachable!("bound is finite"));
        let mut draw = |n: i64| -> Vec<f32> { (0..n).map(|_| dist.sample(rng) as f32).collect() };
        let w = draw(classes * d);
        let b = draw(classes);
        Self {
            weight: Tensor::from_slice(&w).view([classes, d]).to_device(device),
            bias: Tensor::from_slice(&b).to_device(device),
        }
    }

    /// MoCo / SimSiam linear-evaluation initialisation: `W ~ N(0, 0.01²)`, `b = 0`.
    pub fn normal_init<R: Rng + ?Sized>(d: i64, classes: i64, device: Device, rng: &mut R) -> Self {
        let dist = Normal::new(0.0, 0.01).unwrap_or_else(|_| unreachable!("std is positive"));
        let w: Vec<f32> = (0..classes * d).map(|_| dist.sample(rng) as f32).collect();
        Self {
            weight: Tensor::from_slice(&w).view([classes, d]).to_device(device),
            bias: Tensor::zeros([classes], (Kind::Float, device)),
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> i64 {
        self.weight.size()[0]
    }

    /// Input dimension `d`.
    pub fn in_dim(&self) -> i64 {
        self.weight.size()[1]
    }

    /// `x Wᵀ + b`, `[n, classes]`.
    pub fn logits(&self, x: &Tensor) -> Tensor {
        self.bias.unsqueeze(0).addmm(x, &self.weight.tr())
    }

    /// Mean softmax cross-entropy `−1/n Σ_r log softmax(x Wᵀ + b)[r, y_r]`,
    /// computed 8192 rows at a time.
    pub fn cross_entropy(&self, x: &Tensor, y: &Tensor) -> f64 {
        tch::no_grad(|| {
            let n = x.size()[0];
            let mut total = 0.0;
            let mut r0 = 0;
            while r0 < n {
                let rows = (n - r0).min(8192);
                total += self
                    .logits(&x.narrow(0, r0, rows))
                    .log_softmax(1, Kind::Float)
                    .gather(1, &y.narrow(0, r0, rows).unsqueeze(1), false)
                    .sum(Kind::Double)
                    .double_value(&[]);
                r0 += rows;
            }
            -total / n.max(1) as f64
        })
    }

    /// Closed-form gradient `(∂L/∂W, ∂L/∂b)` of [`Self::cross_entropy`] for
    /// one-hot targets `y_onehot: [B, classes]`: `G = (softmax − Y)/B`,
    /// `(Gᵀ x, Σ_r G_r)`.
    pub fn cross_entropy_grad(&self, x: &Tensor, y_onehot: &Tensor) -> (Tensor, Tensor) {
        let b = x.size()[0] as f64;
        let g = (self.logits(x).softmax(1, Kind::Float) - y_onehot) / b;
        (g.tr().mm(x), g.sum_dim_intlist(0, false, Kind::Float))
    }

    /// Top-1 and top-5 accuracy of `argmax`/`top-5` of the logits on `(x, y)`,
    /// computed `block` rows at a time.
    pub fn accuracy(&self, x: &Tensor, y: &Tensor, block: i64) -> (f64, f64) {
        tch::no_grad(|| {
            let n = x.size()[0];
            let (mut hit1, mut hit5) = (0.0, 0.0);
            let mut r0 = 0;
            while r0 < n {
                let rows = block.max(1).min(n - r0);
                let logits = self.logits(&x.narrow(0, r0, rows));
                let yb = y.narrow(0, r0, rows);
                hit1 += top_k_accuracy(&logits, &yb, 1) * rows as f64;
                hit5 += top_k_accuracy(&logits, &yb, 5) * rows as f64;
                r0 += rows;
            }
            (hit1 / n as f64, hit5 / n as f64)
        })
    }
}

/// Fraction of rows whose label is among the `k` highest scores
/// (`k` capped at the number of classes): `mean_r [y_r ∈ top-k(s_r)]`,
/// with equal scores ranked toward the smallest label.
///
/// Ties are real in the k-NN vote (neighbour counts): there the prediction
/// must be the release's, the smallest of the tied labels
/// (`labels.unique(return_counts=True)` then `argmax` in `eval_knn`), which
/// `topk` does not promise (libtorch's CPU `topk(1)` returns class 7 of
/// ten classes where 3 and 7 tie). So a label's rank is counted directly: the
/// classes scoring more, plus the tied classes with a smaller label, and
/// the row is a hit when that rank is below `k`. A NaN score ranks above
/// every number, and a row whose own label scores NaN is a miss.
pub fn top_k_accuracy(scores: &Tensor, labels: &Tensor, k: i64) -> f64 {
    let classes = scores.size()[1];
    let k = k.min(classes).max(1);
    tch::no_grad(|| {
        let y = labels.to_device(scores.device()).unsqueeze(1);
        let own = scores.gather(1, &y, false);
        let class = Tensor::arange(classes, (Kind::Int64, scores.device())).unsqueeze(0);
        let above = scores.gt_tensor(&own).logical_or(&scores.isnan());
        let tied_before = scores.eq_tensor(&own).logical_and(&class.lt_tensor(&y));
        let rank = above
            .logical_or(&tied_before)
            .sum_dim_intlist(1, false, Kind::Int64);
        rank.lt(k)
            .logical_and(&own.squeeze_dim(1).isnan().logical_not())
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[])
    })
}
