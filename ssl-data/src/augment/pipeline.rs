//! The augmentation recipes of `docs/reference.md` §5.2–§5.4 as sequences of
//! transforms.
//!
//! - Small datasets (CIFAR-10/100, STL-10, Tiny-ImageNet), colour first, on the whole image:
//!   `RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), 0.8)`, `RandomGrayscale(0.1)`,
//!   `RandomResizedCrop(crop, (0.2, 1), (3/4, 4/3), bicubic)`, `RandomHorizontalFlip(0.5)`, normalise.
//! - ImageNet: `RandomResizedCrop(224, (0.2, 1))`, `RandomApply(ColorJitter(..), 0.8)`,
//!   `RandomGrayscale(0.2)`, `RandomApply(GaussianBlur(23, σ ∈ [0.1, 2]), 0.5)`, flip, normalise.
//!   The blur kernel is 23 = the odd size nearest 10 % of 224, the torchvision recipe of
//!   SimCLR/BYOL (the release blurs with PIL's radius-σ filter, which has no kernel size:
//!   `docs/reference.md` §10).
//! - Evaluation: normalise only; STL-10 `Resize(70, bicubic)`, `CenterCrop(64)`; ImageNet
//!   `Resize(256)`, `CenterCrop(224)`; ImageNet linear training `RandomResizedCrop(224)` + flip.

use rand::Rng;

use crate::augment::center_crop::center_crop;
use crate::augment::coin;
use crate::augment::color_jitter::{apply_jitter, ColorJitter};
use crate::augment::flip::hflip;
use crate::augment::gaussian_blur::{gaussian_blur, GaussianBlur};
use crate::augment::grayscale::to_grayscale;
use crate::augment::normalize::Normalize;
use crate::augment::random_resized_crop::RandomResizedCrop;
use crate::augment::resize::{resize_shorter_side, Interpolation};
use crate::augment::solarize::solarize;
use crate::error::DataError;
use crate::image::RgbImage;

/// The datasets of `docs/reference.md` §5.1, for their statistics and crop
/// sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetKind {
    /// CIFAR-10, 32×32.
    Cifar10,
    /// CIFAR-100, 32×32.
    Cifar100,
    /// STL-10, 96×96, cropped to 64.
    Stl10,
    /// Tiny-ImageNet, 64×64.
    TinyImageNet,
    /// ImageNet (and ImageNet-100, image folders), 224 crops.
    ImageNet,
}

impl DatasetKind {
    /// Normalisation `(mean, std)` per channel (`docs/reference.md` §5.1).
    pub fn mean_std(self) -> ([f32; 3], [f32; 3]) {
        match self {
            DatasetKind::Cifar10 => ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
            DatasetKind::Cifar100 => ([0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761]),
            DatasetKind::Stl10 => ([0.43, 0.42, 0.39], [0.27, 0.26, 0.27]),
            DatasetKind::TinyImageNet => ([0.480, 0.448, 0.398], [0.277, 0.269, 0.282]),
            DatasetKind::ImageNet => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        }
    }

    /// SSL crop size (`docs/reference.md` §5.1).
    pub fn crop_size(self) -> usize {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => 32,
            DatasetKind::Stl10 | DatasetKind::TinyImageNet => 64,
            DatasetKind::ImageNet => 224,
        }
    }

    fn normalize(self) -> Normalize {
        let (mean, std) = self.mean_std();
        // The table's std are all positive.
        Normalize::new(mean, std).unwrap_or_else(|e| unreachable!("{e}"))
    }
}

/// One step of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// `RandomApply(ColorJitter, p)`.
    ColorJitter {
        /// Strengths.
        jitter: ColorJitter,
        /// Probability of applying.
        p: f64,
    },
    /// `RandomGrayscale(p)`.
    Grayscale {
        /// Probability of applying.
        p: f64,
    },
    /// `RandomResizedCrop`.
    RandomResizedCrop(RandomResizedCrop),
    /// `RandomHorizontalFlip(p)`.
    HorizontalFlip {
        /// Probability of flipping.
        p: f64,
    },
    /// `RandomApply(GaussianBlur, p)`.
    GaussianBlur {
        /// Kernel and σ range.
        blur: GaussianBlur,
        /// Probability of applying.
        p: f64,
    },
    /// `RandomSolarize(threshold, p)`.
    Solarize {
        /// Values `≥ threshold` are inverted.
        threshold: u8,
        /// Probability of applying.
        p: f64,
    },
    /// `Resize(size)`: shorter side to `size`, bicubic.
    ResizeShorterSide {
        /// New shorter side.
        size: usize,
    },
    /// `CenterCrop(size)`.
    CenterCrop {
        /// Square crop side.
        size: usize,
    },
}

/// Transforms applied in order, then `ToTensor` + `Normalize`, producing
/// `3 × out_height × out_width` floats.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    steps: Vec<Step>,
    normalize: Normalize,
    out_height: usize,
    out_width: usize,
}

impl Pipeline {
    /// A custom pipeline whose output must be `out_width × out_height`.
    pub fn new(
        steps: Vec<Step>,
        normalize: Normalize,
        out_height: usize,
        out_width: usize,
    ) -> Self {
        Self {
            steps,
            normalize,
            out_height,
            out_width,
        }
    }

    /// The small-dataset SSL recipe (`docs/reference.md` §5.2, steps 1–5) for
    /// CIFAR-10/100, STL-10 or Tiny-ImageNet (for ImageNet use
    /// [`Pipeline::ssl_imagenet`]).
    pub fn ssl_small(kind: DatasetKind) -> Self {
        let crop = kind.crop_size();
        Self::new(
            vec![
                Step::ColorJitter {
                    jitter: ColorJitter::ssl_default(),
                    p: 0.8,
                },
                Step::Grayscale { p: 0.1 },
                Step::RandomResizedCrop(RandomResizedCrop::new(crop)),
                Step::HorizontalFlip { p: 0.5 },
            ],
            kind.normalize(),
            crop,
            crop,
        )
    }

    /// The ImageNet SSL recipe (`docs/reference.md` §5.3).
    pub fn ssl_imagenet() -> Self {
        Self::new(
            vec![
                Step::RandomResizedCrop(RandomResizedCrop::new(224)),
                Step::ColorJitter {
                    jitter: ColorJitter::ssl_default(),
                    p: 0.8,
                },
                Step::Grayscale { p: 0.2 },
                Step::GaussianBlur {
                    blur: GaussianBlur {
                        kernel_size: 23,
                        sigma: (0.1, 2.0),
                    },
                    p: 0.5,
                },
                Step::HorizontalFlip { p: 0.5 },
            ],
            DatasetKind::ImageNet.normalize(),
            224,
            224,
        )
    }

    /// The evaluation transform of a dataset (`docs/reference.md` §5.4):
    /// normalise only (CIFAR, Tiny-ImageNet); STL-10 `Resize(70)` +
    /// `CenterCrop(64)`; ImageNet `Resize(256)` + `CenterCrop(224)`.
    pub fn eval(kind: DatasetKind) -> Self {
        let steps = match kind {
            DatasetKind::Stl10 => vec![
                Step::ResizeShorterSide { size: 70 },
                Step::CenterCrop { size: 64 },
            ],
            DatasetKind::ImageNet => vec![
                Step::ResizeShorterSide { size: 256 },
                Step::CenterCrop { size: 224 },
            ],
            _ => vec![],
        };
        let s = kind.crop_size();
        Self::new(steps, kind.normalize(), s, s)
    }

    /// ImageNet linear-evaluation training transform: `RandomResizedCrop(224)`
    /// (torchvision's default scale `(0.08, 1)`) and a flip.
    pub fn linear_train_imagenet() -> Self {
        Self::new(
            vec![
                Step::RandomResizedCrop(RandomResizedCrop::new(224).with_scale((0.08, 1.0))),
                Step::HorizontalFlip { p: 0.5 },
            ],
            DatasetKind::ImageNet.normalize(),
            224,
            224,
        )
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Output `(height, width)`.
    pub fn output_size(&self) -> (usize, usize) {
        (self.out_height, self.out_width)
    }

    /// Floats per output view: `3 H W`.
    pub fn output_len(&self) -> usize {
        3 * self.out_height * self.out_width
    }

    /// Runs the steps (not the normalisation), drawing from `rng` in step order.
    pub fn augment<R: Rng + ?Sized>(
        &self,
        img: &RgbImage,
        rng: &mut R,
    ) -> Result<RgbImage, DataError> {
        let mut img = img.clone();
        for step in &self.steps {
            match *step {
                Step::ColorJitter { jitter, p } => {
                    if coin(rng, p) {
                        let params = jitter.sample(rng);
                        apply_jitter(&mut img, &params);
                    }
                }
                Step::Grayscale { p } => {
                    if coin(rng, p) {
                        to_grayscale(&mut img);
                    }
                }
                Step::RandomResizedCrop(rrc) => img = rrc.apply(&img, rng)?,
                Step::HorizontalFlip { p } => {
                    if coin(rng, p) {
                        hflip(&mut img);
                    }
                }
                Step::GaussianBlur { blur, p } => {
                    if coin(rng, p) {
                        let sigma = blur.sample_sigma(rng);
                        img = gaussian_blur(&img, blur.kernel_size, sigma)?;
                    }
                }
                Step::Solarize { threshold, p } => {
                    if coin(rng, p) {
                        solarize(&mut img, threshold);
                    }
                }
                Step::ResizeShorterSide { size } => {
                    img = resize_shorter_side(&img, size, Interpolation::Bicubic)?
                }
                Step::CenterCrop { size } => img = center_crop(&img, size, size),
            }
        }
        Ok(img)
    }

    /// Augments and normalises one view into `out` (`3 H W` floats, `CHW`);
    /// fails when the augmented image is not the pipeline's output size.
    pub fn apply_into<R: Rng + ?Sized>(
        &self,
        img: &RgbImage,
        rng: &mut R,
        out: &mut [f32],
    ) -> Result<(), DataError> {
        let view = self.augment(img, rng)?;
        if (view.height(), view.width()) != (self.out_height, self.out_width) {
            return Err(DataError::InvalidParameter(format!(
                "the pipeline turned a {}x{} image into {}x{}, not the {}x{} it promises: \
                 add a crop or resize step",
                img.width(),
                img.height(),
                view.width(),
                view.height(),
                self.out_width,
                self.out_height
            )));
        }
        self.normalize.apply_into(&view, out)
    }
}
