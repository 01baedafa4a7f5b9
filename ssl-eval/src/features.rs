//! Feature extraction (`docs/reference.md` §7.1): the frozen network's output
//! for every example of a split, gathered into one `[n, d]` tensor with its
//! labels.
//!
//! What "the network" is stays with the caller, which is how the paper's
//! analysis of the whitened output (`docs/reference.md` §9.2) compares
//! representations: pass the encoder for the encoder output `h`, a closure
//! `|x| head.forward_t(&encoder.forward_t(x, false), false)` for the
//! embedding `z`, or one that also whitens for `Ẑ`.

use tch::{Device, Kind, Tensor};

use crate::EvalError;

/// Features of one split: `x: [n, d]` (f32) and integer labels `y: [n]` (i64),
/// on one device.
#[derive(Debug)]
pub struct Features {
    /// `[n, d]` feature matrix, one row per example.
    pub x: Tensor,
    /// `[n]` class labels.
    pub y: Tensor,
}

impl Features {
    /// Checks shapes (`x: [n, d]`, `y: [n]`, `n ≥ 1`) and converts `x` to
    /// f32 and `y` to i64. `what` names the split in error messages.
    pub fn new(x: Tensor, y: Tensor, what: &str) -> Result<Self, EvalError> {
        if x.dim() != 2 {
            return Err(EvalError::Shape {
                what: format!("{what} features"),
                expected: "a [n, d] matrix".into(),
                got: x.size(),
            });
        }
        if y.dim() != 1 || y.size()[0] != x.size()[0] {
            return Err(EvalError::Shape {
                what: format!("{what} labels"),
                expected: format!("a vector of {} labels (one per feature row)", x.size()[0]),
                got: y.size(),
            });
        }
        if x.size()[0] == 0 {
            return Err(EvalError::Empty(format!("{what} split")));
        }
        if y.is_floating_point() {
            return Err(EvalError::Shape {
                what: format!("{what} labels"),
                expected: format!("integer labels, not {:?}", y.kind()),
                got: y.size(),
            });
        }
        Ok(Self {
            x: x.to_kind(Kind::Float),
            y: y.to_kind(Kind::Int64),
        })
    }

    /// Number of examples `n`.
    pub fn len(&self) -> i64 {
        self.x.size()[0]
    }

    /// Always false: [`Features::new`] refuses an empty split.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Feature dimension `d`.
    pub fn dim(&self) -> i64 {
        self.x.size()[1]
    }

    /// The device the features live on.
    pub fn device(&self) -> Device {
        self.x.device()
    }

    /// Smallest and largest label.
    pub fn label_range(&self) -> (i64, i64) {
        (self.y.min().int64_value(&[]), self.y.max().int64_value(&[]))
    }

    /// Checks every label lies in `[0, num_classes)`.
    pub fn check_labels(&self, num_classes: i64, what: &str) -> Result<(), EvalError> {
        let (min, max) = self.label_range();
        if min < 0 || max >= num_classes {
            return Err(EvalError::LabelRange {
                what: what.into(),
                num_classes,
                min,
                max,
            });
        }
        Ok(())
    }

    /// Copies the features to `device`.
    pub fn to_device(&self, device: Device) -> Self {
        Self {
            x: self.x.to_device(device),
            y: self.y.to_device(device),
        }
    }
}

/// The number of classes as the reference counts them: `max(y_train) + 1`
/// (W-MSE `eval_sgd`), raised to cover the test labels too.
pub fn num_classes(train: &Features, test: &Features) -> i64 {
    train.label_range().1.max(test.label_range().1) + 1
}

/// Runs `encode` on every `(images, labels)` batch under `no_grad` and
/// concatenates the outputs into one [`Features`] on `device`:
/// `x = [encode(images₁); encode(images₂); …]`, `y = [labels₁; labels₂; …]`.
///
/// Images are moved to `device` before `encode` sees them. `encode` must
/// return `[batch, d]` (outputs of more dimensions are flattened after the
/// first). The caller puts its modules in evaluation mode; for a
/// [`tch::nn::ModuleT`] use [`extract_features_module`], which does.
pub fn extract_features<F, I>(
    mut encode: F,
    batches: I,
    device: Device,
    what: &str,
) -> Result<Features, EvalError>
where
    F: FnMut(&Tensor) -> Tensor,
    I: IntoIterator<Item = (Tensor, Tensor)>,
{
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    tch::no_grad(|| -> Result<(), EvalError> {
        for (i, (images, labels)) in batches.into_iter().enumerate() {
            let out = encode(&images.to_device(device));
            if out.dim() < 2 || out.size()[0] != labels.size().first().copied().unwrap_or(-1) {
                return Err(EvalError::Shape {
                    what: format!("{what} batch {i} output"),
                    expected: format!("[batch, d] with batch = {:?} labels", labels.size()),
                    got: out.size(),
                });
            }
            xs.push(out.flatten(1, -1).to_kind(Kind::Float).detach());
            ys.push(labels.to_device(device));
        }
        Ok(())
    })?;
    if xs.is_empty() {
        return Err(EvalError::Empty(format!("{what} batch iterator")));
    }
    Features::new(Tensor::cat(&xs, 0), Tensor::cat(&ys, 0), what)
}

/// [`extract_features`] with `module.forward_t(images, train = false)`:
/// batch norm uses its running statistics and dropout is off.
pub fn extract_features_module<M, I>(
    module: &M,
    batches: I,
    device: Device,
    what: &str,
) -> Result<Features, EvalError>
where
    M: tch::nn::ModuleT + ?Sized,
    I: IntoIterator<Item = (Tensor, Tensor)>,
{
    extract_features(|x| module.forward_t(x, false), batches, device, what)
}
