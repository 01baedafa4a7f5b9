//! The ImageNet linear-classification protocol of Table 2 (`docs/reference.md`
//! §7.4): a linear layer on a frozen encoder, trained on augmented images.
//!
//! - Frozen encoder, frozen BN: `encoder.forward_t(x, train = false)` under
//!   `no_grad`, so batch norm uses (and never updates) its running statistics.
//! - Each training batch goes through the caller's augmentation
//!   (`docs/reference.md` §5.4: RandomResizedCrop(224) + flip) before the
//!   encoder; the validation batches must already be Resize(256) +
//!   CenterCrop(224) + normalise (the data loader's evaluation transform).
//! - apex's LARC around momentum SGD (0.9), trust 0.001, every parameter
//!   (the release's `ImageNet/lincls.py --lars`, which produced the
//!   published 69.7 / 71.0), or plain SGD, or MoCo v3's LARS (biases
//!   excluded); weight decay 0, lr `base_lr · batch / 256`
//!   (`0.1 · 1024/256`), cosine per epoch: epoch `e` of `E` runs at
//!   `lr · ½(1 + cos(π e / E))`.
//! - Classifier initialised `W ~ N(0, 0.01²)`, `b = 0` (MoCo / SimSiam).
//! - Validates after every epoch and reports, as the release does
//!   (`best_acc1` in `lincls.py`), the best epoch's top-1 (with that
//!   epoch's top-5), and the last epoch's beside it.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::linear_classifier::{top_k_accuracy, LinearClassifier};
use crate::optim::TensorOptimizer;
use crate::results::{LinearProtocol, LinearResult};
use crate::EvalError;

/// The optimiser of the ImageNet linear protocol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinearOptimizer {
    /// SGD with momentum.
    Sgd,
    /// apex's LARC around momentum SGD (the release's `--lars`).
    Larc {
        /// `η` in `η‖θ‖/(‖g‖ + wd‖θ‖ + 1e-8)` (the release: 0.001).
        trust_coefficient: f64,
    },
    /// LARS with the given trust coefficient.
    Lars {
        /// `η` in `η‖θ‖/‖g‖` (MoCo v3: 0.001).
        trust_coefficient: f64,
    },
}

/// Settings of the ImageNet linear protocol; [`ImagenetLinearConfig::paper`] is Table 2's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagenetLinearConfig {
    /// Epochs (100).
    pub epochs: usize,
    /// Batch size the data loader uses; scales the learning rate (1024).
    pub batch_size: i64,
    /// Learning rate per 256 images (0.1).
    pub base_lr: f64,
    /// Momentum (0.9).
    pub momentum: f64,
    /// L2 weight decay (0).
    pub weight_decay: f64,
    /// SGD or LARS.
    pub optimizer: LinearOptimizer,
    /// Seed of the classifier initialisation.
    pub seed: u64,
}

impl ImagenetLinearConfig {
    /// `docs/reference.md` §7.4: 100 epochs, batch 1024, lr 0.1·1024/256,
    /// momentum 0.9, weight decay 0, LARC (the published script's
    /// `--lars`), cosine.
    pub fn paper() -> Self {
        Self {
            epochs: 100,
            batch_size: 1024,
            base_lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.0,
            optimizer: LinearOptimizer::Larc {
                trust_coefficient: 0.001,
            },
            seed: 0,
        }
    }

    /// Peak learning rate `base_lr · batch_size / 256`.
    pub fn peak_lr(&self) -> f64 {
        self.base_lr * self.batch_size as f64 / 256.0
    }

    /// Learning rate of epoch `e` (0-based): `peak · ½(1 + cos(π e / epochs))`.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let progress = epoch as f64 / self.epochs.max(1) as f64;
        self.peak_lr() * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    fn validate(&self) -> Result<(), EvalError> {
        let bad = |key, value: String, reason: &str| EvalError::Config {
            key,
            value,
            reason: reason.into(),
        };
        if self.epochs == 0 {
            return Err(bad("imagenet_linear.epochs", "0".into(), "must be ≥ 1"));
        }
        if self.batch_size < 1 {
            return Err(bad(
                "imagenet_linear.batch_size",
                self.batch_size.to_string(),
                "must be ≥ 1",
            ));
        }
        if !(self.base_lr > 0.0 && self.base_lr.is_finite()) {
            return Err(bad(
                "imagenet_linear.base_lr",
                self.base_lr.to_string(),
                "must be positive",
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(bad(
                "imagenet_linear.momentum",
                self.momentum.to_string(),
                "must lie in [0, 1)",
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(bad(
                "imagenet_linear.weight_decay",
                self.weight_decay.to_string(),
                "must be ≥ 0",
            ));
        }
        Ok(())
    }
}

impl Default for ImagenetLinearConfig {
    fn default() -> Self {
        Self::paper()
    }
}

/// The encoder and data of one run of the protocol.
#[derive(Debug)]
pub struct ImagenetLinearTask<'a, M: ?Sized> {
    /// The frozen encoder (run with `train = false`).
    pub encoder: &'a M,
    /// Its output dimension (2048 for ResNet-50).
    pub feature_dim: i64,
    /// Number of classes (1000).
    pub num_classes: i64,
    /// Where the encoder and classifier run.
    pub device: Device,
}

/// Runs the protocol: for each epoch `e`, every `(images, labels)` batch of
/// `train_batches(e)` is augmented by `augment`, encoded by the frozen
/// encoder, and the classifier takes one optimiser step on the closed-form
/// cross-entropy gradient; then top-1/top-5 on `val_batches()`, after every
/// epoch. Returns the last epoch's classifier and the result (best epoch's
/// top-1, last epoch's beside it).
pub fn imagenet_linear<M, T, TI, V, VI, A>(
    task: &ImagenetLinearTask<'_, M>,
    mut train_batches: T,
    mut augment: A,
    mut val_batches: V,
    cfg: &ImagenetLinearConfig,
) -> Result<(LinearClassifier, LinearResult), EvalError>
where
    M: tch::nn::ModuleT + ?Sized,
    T: FnMut(usize) -> TI,
    TI: IntoIterator<Item = (Tensor, Tensor)>,
    V: FnMut() -> VI,
    VI: IntoIterator<Item = (Tensor, Tensor)>,
    A: FnMut(&Tensor) -> Tensor,
{
    cfg.validate()?;
    let (d, classes, device) = (task.feature_dim, task.num_classes, task.device);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut clf = LinearClassifier::normal_init(d, classes, device, &mut rng);
    let mut opt = match cfg.optimizer {
        LinearOptimizer::Sgd => {
            TensorOptimizer::sgd(&[&clf.weight, &clf.bias], cfg.momentum, cfg.weight_decay)
        }
        LinearOptimizer::Larc { trust_coefficient } => TensorOptimizer::larc(
            &[&clf.weight, &clf.bias],
            cfg.momentum,
            cfg.weight_decay,
            trust_coefficient,
        ),
        LinearOptimizer::Lars { trust_coefficient } => TensorOptimizer::lars(
            &[&clf.weight, &clf.bias],
            cfg.momentum,
            cfg.weight_decay,
            trust_coefficient,
        ),
    };
    let encode = |x: &Tensor, what: &str| -> Result<Tensor, EvalError> {
        let h = task
            .encoder
            .forward_t(&x.to_device(device), false)
            .flatten(1, -1);
        if h.size()[1] != d {
            return Err(EvalError::Shape {
                what: format!("encoder output on {what}"),
                expected: format!("[batch, {d}] (feature_dim)"),
                got: h.size(),
            });
        }
        Ok(h.to_kind(Kind::Float))
    };
    let check_labels = |y: &Tensor, what: &str| -> Result<Tensor, EvalError> {
        let y = y.to_device(device).to_kind(Kind::Int64);
        let (min, max) = (y.min().int64_value(&[]), y.max().int64_value(&[]));
        if min < 0 || max >= classes {
            return Err(EvalError::LabelRange {
                what: what.into(),
                num_classes: classes,
                min,
                max,
            });
        }
        Ok(y)
    };
    let validate = |clf: &LinearClassifier, val: &mut V| -> Result<(f64, f64, i64), EvalError> {
        let (mut hit1, mut hit5, mut n_val) = (0.0, 0.0, 0i64);
        for (images, labels) in val() {
            let y = check_labels(&labels, "ImageNet linear val labels")?;
            let logits = tch::no_grad(|| -> Result<Tensor, EvalError> {
                Ok(clf.logits(&encode(&images, "val batch")?))
            })?;
            let rows = logits.size()[0];
            hit1 += top_k_accuracy(&logits, &y, 1) * rows as f64;
            hit5 += top_k_accuracy(&logits, &y, 5) * rows as f64;
            n_val += rows;
        }
        if n_val == 0 {
            return Err(EvalError::Empty("ImageNet linear val batches".into()));
        }
        Ok((hit1 / n_val as f64, hit5 / n_val as f64, n_val))
    };
    let (mut n_train, mut last_loss, mut n_val) = (0i64, f64::NAN, 0i64);
    let mut best: Option<(usize, f64, f64)> = None;
    let mut last = (f64::NAN, f64::NAN);
    for epoch in 0..cfg.epochs {
        let lr = cfg.lr_at(epoch);
        let (mut loss_sum, mut seen) = (0.0, 0i64);
        for (images, labels) in train_batches(epoch) {
            let y = check_labels(&labels, "ImageNet linear train labels")?;
            let h = tch::no_grad(|| encode(&augment(&images), "train batch"))?;
            let rows = h.size()[0];
            tch::no_grad(|| {
                loss_sum += clf.cross_entropy(&h, &y) * rows as f64;
                let (gw, gb) = clf.cross_entropy_grad(&h, &y.one_hot(classes).to_kind(Kind::Float));
                let mut params = [&mut clf.weight, &mut clf.bias];
                opt.step(&mut params, vec![gw, gb], lr);
            });
            seen += rows;
        }
        if seen == 0 {
            return Err(EvalError::Empty(format!(
                "ImageNet linear train batches of epoch {epoch}"
            )));
        }
        last_loss = loss_sum / seen as f64;
        if !last_loss.is_finite() {
            return Err(EvalError::NonFinite(format!(
                "ImageNet linear train loss at epoch {epoch}"
            )));
        }
        n_train = seen;
        let (top1, top5, n) = validate(&clf, &mut val_batches)?;
        n_val = n;
        last = (top1, top5);
        if best.is_none_or(|(_, b1, _)| top1 > b1) {
            best = Some((epoch, top1, top5));
        }
    }
    let protocol = match cfg.optimizer {
        LinearOptimizer::Sgd => LinearProtocol::ImagenetSgd,
        LinearOptimizer::Lars { .. } => LinearProtocol::ImagenetLars,
        LinearOptimizer::Larc { .. } => LinearProtocol::ImagenetLarc,
    };
    let (best_epoch, top1, top5) = best.expect("epochs ≥ 1 (validated)");
    let result = LinearResult {
        protocol,
        epochs: cfg.epochs,
        top1,
        top5,
        train_loss: last_loss,
        n_train,
        n_test: n_val,
        best_epoch: Some(best_epoch + 1),
        last_top1: Some(last.0),
    };
    Ok((clf, result))
}
