//! torchvision `RandomResizedCrop`: sample a box, crop it, resize it to the
//! output size with Pillow's resampling (bicubic in the release's
//! small-dataset recipe, `base/datasets/transforms.py`'s `interpolation=3`;
//! torchvision's default bilinear in its ImageNet ones, `ImageNet/train.py`
//! and `ImageNet/lincls.py`).
//!
//! Sampling (`RandomResizedCrop.get_params`): up to 10 tries of
//! `area = H W · U(scale)`, `ratio = exp(U(ln r₀, ln r₁))`,
//! `w = round(√(area · ratio))`, `h = round(√(area / ratio))` (round half to
//! even, as Python's `round`); the first with `0 < w ≤ W`, `0 < h ≤ H` is
//! placed at `top ~ U{0..H−h}`, `left ~ U{0..W−w}`. Otherwise the fallback is
//! the central crop of the whole image clamped to the ratio range.

use rand::Rng;

use crate::augment::resize::{resample_region, Interpolation};
use crate::augment::uniform;
use crate::error::DataError;
use crate::image::RgbImage;

/// A crop box in pixels (torchvision's `i, j, h, w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// First row (`i`).
    pub top: usize,
    /// First column (`j`).
    pub left: usize,
    /// Rows (`h`).
    pub height: usize,
    /// Columns (`w`).
    pub width: usize,
}

/// `RandomResizedCrop(size, scale, ratio, interpolation)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomResizedCrop {
    /// Output height.
    pub out_height: usize,
    /// Output width.
    pub out_width: usize,
    /// Range of the crop area as a fraction of the image area.
    pub scale: (f64, f64),
    /// Range of the aspect ratio `w / h`.
    pub ratio: (f64, f64),
    /// Resampling filter.
    pub interpolation: Interpolation,
}

impl RandomResizedCrop {
    /// A square `size` output with the release's small-dataset `scale (0.2, 1)`,
    /// `ratio (3/4, 4/3)`, bicubic (`base/cfg.py`, `base/datasets/transforms.py`).
    pub fn new(size: usize) -> Self {
        Self {
            out_height: size,
            out_width: size,
            scale: (0.2, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            interpolation: Interpolation::Bicubic,
        }
    }

    /// The same with another area range (torchvision's default is `(0.08, 1)`).
    pub fn with_scale(mut self, scale: (f64, f64)) -> Self {
        self.scale = scale;
        self
    }

    /// The same with another resampling filter (torchvision's default is bilinear).
    pub fn with_interpolation(mut self, interpolation: Interpolation) -> Self {
        self.interpolation = interpolation;
        self
    }

    /// Samples a crop box of a `height × width` image (see the module doc).
    pub fn sample_box<R: Rng + ?Sized>(&self, height: usize, width: usize, rng: &mut R) -> CropBox {
        let area = (height * width) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target_area = area * uniform(rng, self.scale.0, self.scale.1);
            let aspect = uniform(rng, lr0, lr1).exp();
            let w = (target_area * aspect).sqrt().round_ties_even() as usize;
            let h = (target_area / aspect).sqrt().round_ties_even() as usize;
            if 0 < w && w <= width && 0 < h && h <= height {
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                return CropBox {
                    top,
                    left,
                    height: h,
                    width: w,
                };
            }
        }
        central_fallback(height, width, self.ratio)
    }

    /// Samples a box and applies it.
    pub fn apply<R: Rng + ?Sized>(
        &self,
        img: &RgbImage,
        rng: &mut R,
    ) -> Result<RgbImage, DataError> {
        let b = self.sample_box(img.height(), img.width(), rng);
        resized_crop(img, b, self.out_height, self.out_width, self.interpolation)
    }
}

/// torchvision's fallback after 10 failed tries: the whole image if its
/// ratio is within range, else the largest central box at the nearer bound.
pub fn central_fallback(height: usize, width: usize, ratio: (f64, f64)) -> CropBox {
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        (
            width,
            (width as f64 / ratio.0.min(ratio.1)).round_ties_even() as usize,
        )
    } else if in_ratio > ratio.0.max(ratio.1) {
        (
            (height as f64 * ratio.0.max(ratio.1)).round_ties_even() as usize,
            height,
        )
    } else {
        (width, height)
    };
    CropBox {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// torchvision `F.resized_crop` on a PIL image: crop `b`, then resize to
/// `out_height × out_width` (bit-identical to Pillow, see [`resample_region`]).
pub fn resized_crop(
    img: &RgbImage,
    b: CropBox,
    out_height: usize,
    out_width: usize,
    interpolation: Interpolation,
) -> Result<RgbImage, DataError> {
    resample_region(
        img,
        b.left,
        b.top,
        b.width,
        b.height,
        out_width,
        out_height,
        interpolation,
    )
}
