//! The augmentation recipes of the official release (`winci-ai/CW-RGP`) as
//! sequences of transforms, each as the release's torchvision pipeline runs
//! it on PIL images.
//!
//! - Small datasets (CIFAR-10/100, STL-10, Tiny-ImageNet), colour first, on
//!   the whole image (`base/datasets/transforms.py`'s `aug_transform` with
//!   `base/cfg.py`'s defaults, which `scripts/base.sh` keeps):
//!   `RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)`,
//!   `RandomGrayscale(p=0.1)`,
//!   `RandomResizedCrop(crop, scale=(0.2, 1), ratio=(0.75, 4/3), interpolation=3)` (bicubic),
//!   `RandomHorizontalFlip(p=0.5)`, `ToTensor`, `Normalize` with the dataset's statistics.
//! - ImageNet (`ImageNet/train.py`): `RandomResizedCrop(224, scale=(0.2, 1))`
//!   with torchvision's defaults otherwise (ratio `(3/4, 4/3)`, **bilinear**),
//!   `RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)`,
//!   `RandomGrayscale(p=0.2)`, `RandomApply([GaussianBlur([.1, 2.])], p=0.5)`
//!   where `GaussianBlur` is `ImageNet/transform.py`'s: **Pillow's**
//!   `ImageFilter.GaussianBlur(radius=σ)`, `σ ~ U[0.1, 2]` (an extended box
//!   blur with no kernel size, not torchvision's kernel `GaussianBlur`),
//!   `RandomHorizontalFlip()` (p = 0.5), `ToTensor`, `Normalize`. No solarisation.
//! - Evaluation: normalise only (CIFAR, Tiny-ImageNet: the datasets'
//!   `base_transform`); STL-10 `Resize(70, interpolation=3)` (bicubic),
//!   `CenterCrop(64)` (`base/datasets/stl10.py`'s `test_transform`);
//!   ImageNet `Resize(256)` (bilinear, torchvision's default), `CenterCrop(224)`,
//!   and for linear training `RandomResizedCrop(224)` (scale `(0.08, 1)`,
//!   bilinear) + `RandomHorizontalFlip()` (`ImageNet/lincls.py`).
//!
//! Where other descriptions of these recipes differ (a torchvision kernel
//! blur `GaussianBlur(23, σ)` and bicubic resampling for ImageNet), this
//! follows the release's files named above.
//!
//! The release's ImageNet-100 recipe (`base/datasets/in100.py`: the
//! small-dataset steps at 224 with the blur after the flip) is not one of
//! these; [`DatasetKind::ImageNet`] runs `ImageNet/train.py`'s.
//!
//! `tests/release_recipes.rs` compares every recipe here, step by step and
//! parameter by parameter, with the same recipe built from torchvision
//! objects, and runs both on the same random choices.

use rand::Rng;

use crate::augment::center_crop::center_crop;
use crate::augment::color_jitter::{apply_jitter, ColorJitter, JitterParams};
use crate::augment::flip::hflip;
use crate::augment::gaussian_blur::{gaussian_blur, GaussianBlur};
use crate::augment::grayscale::to_grayscale;
use crate::augment::normalize::Normalize;
use crate::augment::random_resized_crop::{resized_crop, CropBox, RandomResizedCrop};
use crate::augment::resize::{resize_shorter_side, shorter_side_size, Interpolation};
use crate::augment::solarize::solarize;
use crate::error::DataError;
use crate::image::RgbImage;

/// The datasets of the release, for their statistics and crop sizes.
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
    /// Normalisation `(mean, std)` per channel: each dataset's `base_transform`
    /// in `base/datasets/*.py`; ImageNet's in `ImageNet/train.py`.
    pub fn mean_std(self) -> ([f32; 3], [f32; 3]) {
        match self {
            DatasetKind::Cifar10 => ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
            DatasetKind::Cifar100 => ([0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761]),
            DatasetKind::Stl10 => ([0.43, 0.42, 0.39], [0.27, 0.26, 0.27]),
            DatasetKind::TinyImageNet => ([0.480, 0.448, 0.398], [0.277, 0.269, 0.282]),
            DatasetKind::ImageNet => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        }
    }

    /// SSL crop size (the `aug_transform(crop, ..)` argument of `base/datasets/*.py`; 224 for ImageNet).
    pub fn crop_size(self) -> usize {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => 32,
            DatasetKind::Stl10 | DatasetKind::TinyImageNet => 64,
            DatasetKind::ImageNet => 224,
        }
    }

    /// The dataset's [`DatasetKind::mean_std`] as a transform.
    pub fn normalize(self) -> Normalize {
        let (mean, std) = self.mean_std();
        // The table's std are all positive.
        Normalize::new(mean, std).unwrap_or_else(|e| unreachable!("{e}"))
    }
}

/// One step of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// `RandomApply([ColorJitter], p)`.
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
    /// `RandomApply([GaussianBlur], p)` with Pillow's blur (`ImageNet/transform.py`).
    GaussianBlur {
        /// Radius range.
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
    /// `Resize(size, interpolation)`: shorter side to `size`.
    ResizeShorterSide {
        /// New shorter side.
        size: usize,
        /// Resampling filter.
        interpolation: Interpolation,
    },
    /// `CenterCrop(size)`.
    CenterCrop {
        /// Square crop side.
        size: usize,
    },
}

/// One random choice a step made, in the order the steps drew them
/// ([`Pipeline::augment_recorded`]): enough to replay the same choices
/// through torchvision, which `tests/release_recipes.rs` does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Draw {
    /// The `U[0, 1)` value of a `RandomApply`, `RandomGrayscale`,
    /// `RandomHorizontalFlip` or `RandomSolarize`; the step applies when it is below `p`.
    Coin(f64),
    /// The box of a `RandomResizedCrop`.
    Crop(CropBox),
    /// The order and factors of a `ColorJitter`.
    Jitter(JitterParams),
    /// The `U[0, 1)` value a blur radius was drawn with ([`GaussianBlur::radius_at`]).
    Blur(f64),
}

/// A Bernoulli(`p`) coin, `torch.rand(1) < p` as in `RandomGrayscale` and
/// `RandomHorizontalFlip`, its value noted. (`RandomApply` skips when
/// `p < u`: the same choice but at `u = p`, which has probability 0.)
fn coin<R: Rng + ?Sized>(rng: &mut R, p: f64, note: &mut impl FnMut(Draw)) -> bool {
    let u = rng.random::<f64>();
    note(Draw::Coin(u));
    u < p
}

/// The error of a plan that does not fit the pipeline it is replayed on.
fn mismatch() -> DataError {
    DataError::InvalidParameter(
        "the plan does not match the pipeline's steps (draw it with Pipeline::plan)".into(),
    )
}

/// Whether a replayed coin `d` comes up below `p`.
fn replay_coin(d: Draw, p: f64) -> Result<bool, DataError> {
    match d {
        Draw::Coin(u) => Ok(u < p),
        _ => Err(mismatch()),
    }
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

    /// The small-dataset SSL recipe for CIFAR-10/100, STL-10 or
    /// Tiny-ImageNet (`base/datasets/transforms.py`, module doc); for
    /// ImageNet use [`Pipeline::ssl_imagenet`].
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

    /// The ImageNet SSL recipe of `ImageNet/train.py` (module doc): a
    /// bilinear crop first, Pillow's Gaussian blur.
    pub fn ssl_imagenet() -> Self {
        Self::new(
            vec![
                Step::RandomResizedCrop(
                    RandomResizedCrop::new(224).with_interpolation(Interpolation::Bilinear),
                ),
                Step::ColorJitter {
                    jitter: ColorJitter::ssl_default(),
                    p: 0.8,
                },
                Step::Grayscale { p: 0.2 },
                Step::GaussianBlur {
                    blur: GaussianBlur::imagenet(),
                    p: 0.5,
                },
                Step::HorizontalFlip { p: 0.5 },
            ],
            DatasetKind::ImageNet.normalize(),
            224,
            224,
        )
    }

    /// The evaluation transform of a dataset (module doc): normalise only
    /// (CIFAR, Tiny-ImageNet); STL-10 `Resize(70)` bicubic + `CenterCrop(64)`;
    /// ImageNet `Resize(256)` bilinear + `CenterCrop(224)`.
    pub fn eval(kind: DatasetKind) -> Self {
        let steps = match kind {
            DatasetKind::Stl10 => vec![
                Step::ResizeShorterSide {
                    size: 70,
                    interpolation: Interpolation::Bicubic,
                },
                Step::CenterCrop { size: 64 },
            ],
            DatasetKind::ImageNet => vec![
                Step::ResizeShorterSide {
                    size: 256,
                    interpolation: Interpolation::Bilinear,
                },
                Step::CenterCrop { size: 224 },
            ],
            _ => vec![],
        };
        let s = kind.crop_size();
        Self::new(steps, kind.normalize(), s, s)
    }

    /// ImageNet linear-evaluation training transform (`ImageNet/lincls.py`):
    /// `RandomResizedCrop(224)` with torchvision's defaults (scale
    /// `(0.08, 1)`, bilinear) and a flip.
    pub fn linear_train_imagenet() -> Self {
        Self::new(
            vec![
                Step::RandomResizedCrop(
                    RandomResizedCrop::new(224)
                        .with_scale((0.08, 1.0))
                        .with_interpolation(Interpolation::Bilinear),
                ),
                Step::HorizontalFlip { p: 0.5 },
            ],
            DatasetKind::ImageNet.normalize(),
            224,
            224,
        )
    }
    /// This recipe with square `crop`-pixel outputs, for images of another
    /// size than its dataset's (an image folder): the random and centre
    /// crops take the new size, and a shorter-side resize before a centre
    /// crop keeps its ratio to it (ImageNet's 256 for 224 becomes
    /// `round(crop · 256 / 224)`).
    pub fn with_crop(mut self, crop: usize) -> Self {
        let old = self.out_height.max(1);
        for step in &mut self.steps {
            match step {
                Step::RandomResizedCrop(c) => {
                    c.out_height = crop;
                    c.out_width = crop;
                }
                Step::CenterCrop { size } => *size = crop,
                Step::ResizeShorterSide { size, .. } => {
                    *size = ((*size * crop) as f64 / old as f64).round() as usize;
                }
                _ => {}
            }
        }
        self.out_height = crop;
        self.out_width = crop;
        self
    }

    /// This recipe normalised with `normalize` instead of its dataset's
    /// statistics.
    pub fn with_normalize(mut self, normalize: Normalize) -> Self {
        self.normalize = normalize;
        self
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The final `Normalize` (after `ToTensor`).
    pub fn normalization(&self) -> &Normalize {
        &self.normalize
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
        let plan = self.plan(img.height(), img.width(), rng)?;
        self.apply(img, (0, 0), &plan)
    }

    /// [`Pipeline::augment`], appending each random choice to `record`.
    pub fn augment_recorded<R: Rng + ?Sized>(
        &self,
        img: &RgbImage,
        rng: &mut R,
        record: &mut Vec<Draw>,
    ) -> Result<RgbImage, DataError> {
        let plan = self.plan(img.height(), img.width(), rng)?;
        record.extend_from_slice(&plan);
        self.apply(img, (0, 0), &plan)
    }

    /// Draws every random choice of one view of a `height × width` image,
    /// in step order, from `rng`: the draws [`Pipeline::augment`] makes,
    /// which depend on the image's size (followed through the steps) but not
    /// on its pixels. [`Pipeline::apply`] then replays them.
    pub fn plan<R: Rng + ?Sized>(
        &self,
        height: usize,
        width: usize,
        rng: &mut R,
    ) -> Result<Vec<Draw>, DataError> {
        let mut draws = Vec::with_capacity(8);
        let (mut h, mut w) = (height, width);
        for step in &self.steps {
            match *step {
                Step::ColorJitter { jitter, p } => {
                    if coin(rng, p, &mut |d| draws.push(d)) {
                        draws.push(Draw::Jitter(jitter.sample(rng)));
                    }
                }
                Step::Grayscale { p } | Step::HorizontalFlip { p } | Step::Solarize { p, .. } => {
                    coin(rng, p, &mut |d| draws.push(d));
                }
                Step::RandomResizedCrop(rrc) => {
                    draws.push(Draw::Crop(rrc.sample_box(h, w, rng)));
                    (h, w) = (rrc.out_height, rrc.out_width);
                }
                Step::GaussianBlur { p, .. } => {
                    if coin(rng, p, &mut |d| draws.push(d)) {
                        draws.push(Draw::Blur(rng.random::<f64>()));
                    }
                }
                Step::ResizeShorterSide { size, .. } => {
                    (w, h) = shorter_side_size(w, h, size)?;
                }
                Step::CenterCrop { size } => (h, w) = (size, size),
            }
        }
        Ok(draws)
    }

    /// The part of a `height × width` image that views with these plans
    /// ([`Pipeline::plan`]) read: the union of their crop boxes when the
    /// first step is a `RandomResizedCrop` (nothing outside its box matters),
    /// else `None`, the whole image.
    pub fn region_needed(&self, plans: &[Vec<Draw>]) -> Option<CropBox> {
        if !matches!(self.steps.first(), Some(Step::RandomResizedCrop(_))) {
            return None;
        }
        let mut boxes = plans.iter().map(|p| match p.first() {
            Some(Draw::Crop(b)) => Some(*b),
            _ => None,
        });
        let first = boxes.next()??;
        boxes.try_fold(first, |u, b| {
            let b = b?;
            let (left, top) = (u.left.min(b.left), u.top.min(b.top));
            let right = (u.left + u.width).max(b.left + b.width);
            let bottom = (u.top + u.height).max(b.top + b.height);
            Some(CropBox {
                top,
                left,
                height: bottom - top,
                width: right - left,
            })
        })
    }

    /// Replays a [`Pipeline::plan`] on `img`. `img` may be part of the image
    /// the plan was drawn for, its top-left pixel at `origin` (`(left, top)`)
    /// of it, when the first step is a `RandomResizedCrop` whose box it
    /// covers ([`Pipeline::region_needed`]); otherwise `origin` is `(0, 0)`.
    pub fn apply(
        &self,
        img: &RgbImage,
        origin: (usize, usize),
        plan: &[Draw],
    ) -> Result<RgbImage, DataError> {
        let mut draws = plan.iter().copied();
        let mut next = || draws.next().ok_or_else(mismatch);
        // The input is only copied when a step changes it in place.
        let mut img = std::borrow::Cow::Borrowed(img);
        let mut origin = origin;
        for step in &self.steps {
            match *step {
                Step::ColorJitter { p, .. } => {
                    if replay_coin(next()?, p)? {
                        let Draw::Jitter(params) = next()? else {
                            return Err(mismatch());
                        };
                        apply_jitter(img.to_mut(), &params);
                    }
                }
                Step::Grayscale { p } => {
                    if replay_coin(next()?, p)? {
                        to_grayscale(img.to_mut());
                    }
                }
                Step::RandomResizedCrop(rrc) => {
                    let Draw::Crop(b) = next()? else {
                        return Err(mismatch());
                    };
                    let (left, top) = origin;
                    if b.left < left || b.top < top {
                        return Err(DataError::InvalidParameter(format!(
                            "crop box {b:?} starts before the decoded part at ({left}, {top})"
                        )));
                    }
                    let local = CropBox {
                        left: b.left - left,
                        top: b.top - top,
                        ..b
                    };
                    img = std::borrow::Cow::Owned(resized_crop(
                        &img,
                        local,
                        rrc.out_height,
                        rrc.out_width,
                        rrc.interpolation,
                    )?);
                    origin = (0, 0);
                }
                Step::HorizontalFlip { p } => {
                    if replay_coin(next()?, p)? {
                        hflip(img.to_mut());
                    }
                }
                Step::GaussianBlur { blur, p } => {
                    if replay_coin(next()?, p)? {
                        let Draw::Blur(u) = next()? else {
                            return Err(mismatch());
                        };
                        img = std::borrow::Cow::Owned(gaussian_blur(&img, blur.radius_at(u))?);
                    }
                }
                Step::Solarize { threshold, p } => {
                    if replay_coin(next()?, p)? {
                        solarize(img.to_mut(), threshold);
                    }
                }
                Step::ResizeShorterSide {
                    size,
                    interpolation,
                } => img = std::borrow::Cow::Owned(resize_shorter_side(&img, size, interpolation)?),
                Step::CenterCrop { size } => {
                    img = std::borrow::Cow::Owned(center_crop(&img, size, size))
                }
            }
            if origin != (0, 0) && !matches!(step, Step::RandomResizedCrop(_)) {
                return Err(DataError::InvalidParameter(
                    "a part of an image can only be given to a pipeline that crops first".into(),
                ));
            }
        }
        if next().is_ok() {
            return Err(mismatch());
        }
        Ok(img.into_owned())
    }

    /// Augments and normalises one view into `out` (`3 H W` floats, `CHW`);
    /// fails when the augmented image is not the pipeline's output size.
    pub fn apply_into<R: Rng + ?Sized>(
        &self,
        img: &RgbImage,
        rng: &mut R,
        out: &mut [f32],
    ) -> Result<(), DataError> {
        let plan = self.plan(img.height(), img.width(), rng)?;
        self.apply_plan_into(img, (0, 0), &plan, out)
    }

    /// [`Pipeline::apply`] then normalisation into `out` (see [`Pipeline::apply_into`]).
    pub fn apply_plan_into(
        &self,
        img: &RgbImage,
        origin: (usize, usize),
        plan: &[Draw],
        out: &mut [f32],
    ) -> Result<(), DataError> {
        let view = self.apply(img, origin, plan)?;
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
