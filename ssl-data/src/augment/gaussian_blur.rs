//! torchvision `GaussianBlur(kernel_size, sigma)` (the ImageNet recipe of
//! `docs/reference.md` §5.3, which the release runs with PIL's blur instead,
//! §10): `σ ~ U[σ₀, σ₁]`; the kernel `k[i] ∝ exp(−½ (x_i / σ)²)`,
//! `x_i = i − (K − 1)/2`, normalised to sum 1, in `f32`; reflect padding
//! (mirror without repeating the edge); the image converted to `f32`,
//! convolved, rounded half to even back to `u8`.
//!
//! torchvision convolves with the 2-D outer product `k kᵀ`; this separable
//! form computes the same sum in another order, so values can differ in the
//! last `f32` bits and a pixel whose exact value lies within that of a
//! `.5` may round the other way (at most 1 level, tested).

use rand::Rng;

use crate::augment::uniform;
use crate::error::DataError;
use crate::image::RgbImage;

/// `GaussianBlur(kernel_size, sigma=(σ₀, σ₁))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaussianBlur {
    /// Odd kernel side `K`.
    pub kernel_size: usize,
    /// Range σ is drawn from.
    pub sigma: (f32, f32),
}

impl GaussianBlur {
    /// Draws σ from `U[σ₀, σ₁]`.
    pub fn sample_sigma<R: Rng + ?Sized>(&self, rng: &mut R) -> f32 {
        uniform(rng, self.sigma.0 as f64, self.sigma.1 as f64) as f32
    }
}

/// torchvision's `_get_gaussian_kernel1d` in `f32`.
pub fn gaussian_kernel(kernel_size: usize, sigma: f32) -> Vec<f32> {
    let half = (kernel_size as f32 - 1.0) * 0.5;
    let pdf: Vec<f32> = (0..kernel_size)
        .map(|i| {
            let x = (i as f32 - half) / sigma;
            (-0.5 * x * x).exp()
        })
        .collect();
    let sum: f32 = pdf.iter().sum();
    pdf.into_iter().map(|p| p / sum).collect()
}

/// Mirror index for reflect padding of an axis of length `n`.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// `torch.round` (half to even) of a value in `[0, 255]`, as a byte, without
/// a libm call: adding and subtracting 2²³ rounds an `f32` below 2²² to an
/// integer in the default round-to-nearest-even mode.
#[inline]
fn round_half_even(a: f32) -> u8 {
    const SHIFT: f32 = 8_388_608.0;
    ((a.clamp(0.0, 255.0) + SHIFT) - SHIFT) as u8
}

/// Blurs with a `kernel_size²` Gaussian of standard deviation `sigma`.
pub fn gaussian_blur(
    img: &RgbImage,
    kernel_size: usize,
    sigma: f32,
) -> Result<RgbImage, DataError> {
    if kernel_size & 1 == 0 || sigma <= 0.0 {
        return Err(DataError::InvalidParameter(format!(
            "Gaussian blur needs an odd kernel size and sigma > 0, got {kernel_size} and {sigma}"
        )));
    }
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Ok(img.clone());
    }
    let k = gaussian_kernel(kernel_size, sigma);
    let half = kernel_size / 2;
    let src = img.as_raw();
    // Horizontal pass into f32, over a reflect-padded copy of each row.
    let mut padded = vec![0f32; 3 * (w + 2 * half)];
    let mut tmp = vec![0f32; 3 * w * h];
    for y in 0..h {
        let row = &src[3 * w * y..3 * w * (y + 1)];
        for (i, px) in padded.chunks_exact_mut(3).enumerate() {
            let sx = reflect(i as isize - half as isize, w);
            for c in 0..3 {
                px[c] = row[3 * sx + c] as f32;
            }
        }
        let out = &mut tmp[3 * w * y..3 * w * (y + 1)];
        for (j, &kw) in k.iter().enumerate() {
            for (o, &p) in out.iter_mut().zip(&padded[3 * j..3 * (j + w)]) {
                *o += p * kw;
            }
        }
    }
    // Vertical pass, rounded half to even.
    let mut out = vec![0u8; 3 * w * h];
    let mut acc = vec![0f32; 3 * w];
    for y in 0..h {
        acc.fill(0.0);
        for (j, &kw) in k.iter().enumerate() {
            let r = reflect(y as isize + j as isize - half as isize, h);
            for (a, &v) in acc.iter_mut().zip(&tmp[3 * w * r..3 * w * (r + 1)]) {
                *a += v * kw;
            }
        }
        for (o, &a) in out[3 * w * y..3 * w * (y + 1)].iter_mut().zip(&acc) {
            *o = round_half_even(a);
        }
    }
    RgbImage::from_raw(w, h, out)
}
