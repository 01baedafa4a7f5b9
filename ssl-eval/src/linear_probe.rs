//! The linear probe on frozen features (`docs/reference.md` §7.3; W-MSE /
//! CW-RGP `eval_sgd`).
//!
//! One linear layer, softmax cross-entropy, `torch.optim.Adam(lr 1e-2,
//! weight_decay 5e-6)` with `ExponentialLR(γ = (1e-6/1e-2)^(1/500))` stepped
//! after each of 500 epochs (epoch `e` runs at `1e-2·γᵉ`), mini-batches of
//! 1000 rows of a fresh random permutation each epoch, top-1 and top-5 on the
//! test features.
//!
//! Fast path: the features stay one tensor; each epoch permutes them once
//! (one `index_select`) and batches are views. Weight and bias are trained
//! as one `[classes, d + 1]` matrix against features with a column of ones,
//! which is exactly Adam on `(W, b)` (Adam and L2 decay act element-wise;
//! the reference decays the bias too). The gradient is in closed form
//! ([`crate::linear_classifier`]) and the update in place, with no autograd.
//!
//! On the CPU the step is one fused pass instead (`probe_kernel`): rows
//! are read in place by their index (no permuted copy of the features per
//! epoch), and logits, softmax and gradient are computed per tile of rows
//! while they sit in L1, over rayon's threads; Adam runs on the flat
//! parameter. Same permutations, batches and arithmetic, f32 throughout;
//! only the order of the sums differs from the tensor path.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use crate::features::{num_classes, Features};
use crate::linear_classifier::LinearClassifier;
use crate::optim::TensorOptimizer;
use crate::probe_kernel::{batch_grad, ProbeData, Shape};
use crate::results::{LinearProtocol, LinearResult};
use crate::EvalError;
use ssl_models::{adam_update_slice, OptimizerKind};

/// Settings of the linear probe; [`LinearProbeConfig::reference`] is
/// `docs/reference.md` §7.3.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearProbeConfig {
    /// Number of epochs (500).
    pub epochs: usize,
    /// Mini-batch rows (1000); a last partial batch is kept when the split
    /// is not a multiple.
    pub batch_size: i64,
    /// Learning rate of the first epoch (1e-2).
    pub lr_start: f64,
    /// Learning rate the exponential decay reaches after `epochs` (1e-6).
    pub lr_end: f64,
    /// Adam's L2 weight decay (5e-6).
    pub weight_decay: f64,
    /// Seed of the initialisation and of the per-epoch permutations.
    pub seed: u64,
}

impl LinearProbeConfig {
    /// `docs/reference.md` §7.3: 500 epochs, batches of 1000, Adam 1e-2 →
    /// 1e-6, weight decay 5e-6.
    pub fn reference() -> Self {
        Self {
            epochs: 500,
            batch_size: 1000,
            lr_start: 1e-2,
            lr_end: 1e-6,
            weight_decay: 5e-6,
            seed: 0,
        }
    }

    /// Learning rate of epoch `e` (0-based): `lr_start · γᵉ`,
    /// `γ = (lr_end / lr_start)^(1/epochs)`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let gamma = (self.lr_end / self.lr_start).powf(1.0 / self.epochs as f64);
        self.lr_start * gamma.powi(epoch as i32)
    }

    fn validate(&self) -> Result<(), EvalError> {
        let bad = |key, value: String, reason: &str| EvalError::Config {
            key,
            value,
            reason: reason.into(),
        };
        if self.epochs == 0 {
            return Err(bad("linear.epochs", "0".into(), "must be ≥ 1"));
        }
        if self.batch_size < 1 {
            return Err(bad(
                "linear.batch_size",
                self.batch_size.to_string(),
                "must be ≥ 1",
            ));
        }
        for (key, v) in [
            ("linear.lr_start", self.lr_start),
            ("linear.lr_end", self.lr_end),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(bad(key, v.to_string(), "must be a positive finite number"));
            }
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(bad(
                "linear.weight_decay",
                self.weight_decay.to_string(),
                "must be ≥ 0",
            ));
        }
        Ok(())
    }
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self::reference()
    }
}

/// A uniformly random permutation of `0..n` (Fisher–Yates with `rng`): the
/// order of one epoch's rows. [`train_linear_probe`] draws one per epoch, in
/// order, from the RNG it is given.
pub fn epoch_permutation<R: Rng + ?Sized>(n: i64, rng: &mut R) -> Vec<i64> {
    let mut p: Vec<i64> = (0..n).collect();
    p.shuffle(rng);
    p
}

/// Trains `classifier` (its initial weights) on `train` as the linear probe
/// does, drawing each epoch's permutation from `rng` with
/// [`epoch_permutation`]. Returns the trained classifier.
pub fn train_linear_probe<R: Rng + ?Sized>(
    train: &Features,
    classifier: LinearClassifier,
    cfg: &LinearProbeConfig,
    rng: &mut R,
) -> Result<LinearClassifier, EvalError> {
    cfg.validate()?;
    let (n, d, classes) = (train.len(), train.dim(), classifier.classes());
    if classifier.in_dim() != d {
        return Err(EvalError::Shape {
            what: "linear probe classifier weight".into(),
            expected: format!("[classes, {d}] to match the features"),
            got: classifier.weight.size(),
        });
    }
    train.check_labels(classes, "linear probe train labels")?;
    if train.device() == tch::Device::Cpu {
        return train_fused_cpu(train, classifier, cfg, rng);
    }
    let device = train.device();
    tch::no_grad(|| {
        // [x | 1] and θ = [W | b]: one parameter, one matrix product each way.
        let x1 = Tensor::cat(&[&train.x, &Tensor::ones([n, 1], (Kind::Float, device))], 1);
        // One-hot targets as [classes, n]: logits are computed transposed,
        // θ·x_bᵀ ([classes, B]), the faster layout for a small class count.
        let y1 = train
            .y
            .one_hot(classes)
            .to_kind(Kind::Float)
            .tr()
            .contiguous();
        let mut theta = Tensor::cat(
            &[
                classifier.weight.to_device(device),
                classifier.bias.to_device(device).unsqueeze(1),
            ],
            1,
        );
        let mut adam = TensorOptimizer::adam(&[&theta], cfg.weight_decay);
        for epoch in 0..cfg.epochs {
            let lr = cfg.lr_at(epoch);
            let perm = Tensor::from_slice(&epoch_permutation(n, rng)).to_device(device);
            let xp = x1.index_select(0, &perm);
            let yp = y1.index_select(1, &perm);
            let mut r0 = 0;
            while r0 < n {
                let rows = cfg.batch_size.min(n - r0);
                let xb = xp.narrow(0, r0, rows);
                // Gᵀ = softmax(θ x_bᵀ) − Yᵀ; ∂L/∂θ = Gᵀ x_b / B.
                let mut g = theta.mm(&xb.tr()).softmax(0, Kind::Float);
                let _ = g.g_sub_(&yp.narrow(1, r0, rows));
                let mut grad = g.mm(&xb);
                let _ = grad.g_mul_scalar_(1.0 / rows as f64);
                adam.step(&mut [&mut theta], vec![grad], lr);
                r0 += rows;
            }
        }
        if !bool::try_from(theta.isfinite().all())? {
            return Err(EvalError::NonFinite("linear probe weights".into()));
        }
        Ok(LinearClassifier {
            weight: theta.narrow(1, 0, d).contiguous(),
            bias: theta.select(1, d).contiguous(),
        })
    })
}

/// The CPU path of [`train_linear_probe`]: the same epochs, permutations,
/// batches and Adam, with the gradient from [`crate::probe_kernel`] (one
/// fused pass per batch over rows read in place) and Adam on the flat
/// `[classes, d + 1]` parameter by ssl-models' [`adam_update_slice`].
fn train_fused_cpu<R: Rng + ?Sized>(
    train: &Features,
    classifier: LinearClassifier,
    cfg: &LinearProbeConfig,
    rng: &mut R,
) -> Result<LinearClassifier, EvalError> {
    let (n, d, classes) = (
        train.len() as usize,
        train.dim() as usize,
        classifier.classes() as usize,
    );
    // The features are read in place: no copy of a possibly large matrix.
    let x = train.x.to_kind(Kind::Float).contiguous();
    assert_eq!(x.numel(), n * d, "features are [n, d]");
    // SAFETY: `x` is a contiguous f32 CPU tensor of n·d elements (made so
    // just above); it outlives `x_host` (both end with this function) and
    // nothing writes to it meanwhile.
    #[allow(unsafe_code)]
    let x_host: &[f32] = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, n * d) };
    let y_host: Vec<i64> = Vec::try_from(&train.y)?;
    let d1 = d + 1;
    let weight: Vec<f32> =
        Vec::try_from(classifier.weight.to_device(tch::Device::Cpu).reshape([-1]))?;
    let bias: Vec<f32> = Vec::try_from(classifier.bias.to_device(tch::Device::Cpu))?;
    let mut theta = vec![0f32; classes * d1];
    for c in 0..classes {
        theta[c * d1..c * d1 + d].copy_from_slice(&weight[c * d..(c + 1) * d]);
        theta[c * d1 + d] = bias[c];
    }
    let (mut m, mut v, mut grad) = (
        vec![0f32; theta.len()],
        vec![0f32; theta.len()],
        vec![0f32; theta.len()],
    );
    let OptimizerKind::Adam { beta1, beta2, eps } = OptimizerKind::adam() else {
        unreachable!("OptimizerKind::adam() is Adam")
    };
    let data = ProbeData {
        x: x_host,
        y: &y_host,
        d,
    };
    let shape = Shape { classes, d };
    let batch = cfg.batch_size as usize;
    let mut t = 0.0;
    for epoch in 0..cfg.epochs {
        let lr = cfg.lr_at(epoch);
        let perm: Vec<usize> = epoch_permutation(n as i64, rng)
            .into_iter()
            .map(|i| i as usize)
            .collect();
        for rows in perm.chunks(batch) {
            batch_grad(data, shape, &theta, rows, &mut grad);
            t += 1.0;
            adam_update_slice(
                &mut theta,
                &grad,
                &mut m,
                &mut v,
                lr,
                cfg.weight_decay,
                (beta1, beta2, eps),
                t,
            );
        }
    }
    if theta.iter().any(|v| !v.is_finite()) {
        return Err(EvalError::NonFinite("linear probe weights".into()));
    }
    let mut weight = Vec::with_capacity(classes * d);
    let mut bias = Vec::with_capacity(classes);
    for c in 0..classes {
        weight.extend_from_slice(&theta[c * d1..c * d1 + d]);
        bias.push(theta[c * d1 + d]);
    }
    Ok(LinearClassifier {
        weight: Tensor::from_slice(&weight).view([classes as i64, d as i64]),
        bias: Tensor::from_slice(&bias),
    })
}

/// The whole protocol: torch-default initialisation and permutations from
/// `ChaCha8Rng::seed_from_u64(cfg.seed)`, [`train_linear_probe`], then top-1
/// and top-5 accuracy on `test`. Classes = `max label + 1`.
pub fn linear_probe(
    train: &Features,
    test: &Features,
    cfg: &LinearProbeConfig,
) -> Result<(LinearClassifier, LinearResult), EvalError> {
    if test.dim() != train.dim() {
        return Err(EvalError::Shape {
            what: "linear probe test features".into(),
            expected: format!("dimension d = {} as the train features", train.dim()),
            got: test.x.size(),
        });
    }
    let classes = num_classes(train, test);
    test.check_labels(classes, "linear probe test labels")?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let init = LinearClassifier::torch_default_init(train.dim(), classes, train.device(), &mut rng);
    let clf = train_linear_probe(train, init, cfg, &mut rng)?;
    let test = test.to_device(train.device());
    let (top1, top5) = clf.accuracy(&test.x, &test.y, 8192);
    let result = LinearResult {
        protocol: LinearProtocol::AdamProbe,
        epochs: cfg.epochs,
        top1,
        top5,
        train_loss: clf.cross_entropy(&train.x, &train.y),
        n_train: train.len(),
        n_test: test.len(),
        best_epoch: None,
        last_top1: None,
    };
    Ok((clf, result))
}
