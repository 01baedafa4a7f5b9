//! Augmentations with torchvision semantics on PIL-like 8-bit RGB images
//! (the official release's recipes, [`pipeline`]), one transform a file.
//! Each transform has a sampler (drawing its parameters from a caller's RNG,
//! with torchvision's distributions) and an "apply with given parameters"
//! function, which the tests feed the same parameters as
//! `torchvision.transforms.functional` (or Pillow).

pub mod center_crop;
pub mod color_jitter;
pub(crate) mod cpu;
pub mod flip;
pub mod gaussian_blur;
pub mod grayscale;
pub mod normalize;
pub mod pipeline;
pub mod random_resized_crop;
pub mod resize;
pub mod solarize;

use rand::Rng;

/// `U[lo, hi)`, as torch's `uniform_` (`lo + (hi − lo) u`, `u ∈ [0, 1)`).
pub(crate) fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}
