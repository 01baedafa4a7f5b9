//! Pillow's `ImageFilter.GaussianBlur(radius)`, the blur of the official
//! release's ImageNet recipe (`ImageNet/transform.py`: `GaussianBlur` draws
//! `σ = random.uniform(0.1, 2.0)` and calls
//! `img.filter(ImageFilter.GaussianBlur(radius=σ))`), bit for bit on 8-bit
//! RGB.
//!
//! Pillow does not convolve with a Gaussian kernel (that is torchvision's
//! `GaussianBlur(kernel_size, sigma)`, which the release does not use): it
//! runs three *extended box* blurs along the rows, then three along the
//! columns (`libImaging/BoxBlur.c`, after Gwosdek et al., "Theoretical
//! foundations of Gaussian convolution by extended box filtering", 2011):
//!
//! - the box radius `r = l + α` for three passes of variance `σ²/3` each
//!   ([`box_radius`], `_gaussian_blur_radius`, partly in `f32`, partly in
//!   `f64`, as the C code);
//! - one pass over a line: output `x` is
//!   `(ww · Σ_{|k| ≤ l} in[x+k] + fw · (in[x−l−1] + in[x+l+1]) + 2²³) >> 24`,
//!   `ww = ⌊2²⁴ / (2r + 1)⌋` (the division in `f32`),
//!   `fw = (2²⁴ − (2l + 1) ww) / 2`, `l = ⌊r⌋`, in wrapping `u32`, pixels
//!   beyond an edge repeating the edge pixel; each pass rounds to 8 bits;
//! - columns are blurred as rows of the transposed image, which is the
//!   same arithmetic.
//!
//! The σ is drawn in `f64` (Python's `random.uniform`: `a + (b − a) u`) and
//! handed to Pillow as a C `float`, as here.

use rand::Rng;

use crate::error::DataError;
use crate::image::RgbImage;

/// `RandomApply([GaussianBlur(σ ∈ [σ₀, σ₁])])`'s blur: Pillow's
/// `GaussianBlur(radius=σ)` with `σ ~ U[σ₀, σ₁)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GaussianBlur {
    /// Range the radius (Pillow's name for the Gaussian's σ) is drawn from.
    pub radius: (f64, f64),
}

impl GaussianBlur {
    /// The release's `GaussianBlur([.1, 2.])` (`ImageNet/transform.py`).
    pub fn imagenet() -> Self {
        Self { radius: (0.1, 2.0) }
    }

    /// The radius drawn with `u ∈ [0, 1)`: `σ₀ + (σ₁ − σ₀) u` in `f64`, as
    /// Python's `random.uniform`, then rounded to `f32`, as Pillow parses it.
    pub fn radius_at(&self, u: f64) -> f32 {
        (self.radius.0 + (self.radius.1 - self.radius.0) * u) as f32
    }

    /// Draws a radius.
    pub fn sample_radius<R: Rng + ?Sized>(&self, rng: &mut R) -> f32 {
        self.radius_at(rng.random::<f64>())
    }
}

/// Pillow's `_gaussian_blur_radius(radius, passes)`: the extended box
/// radius `l + α` whose `passes`-fold repetition has the variance `radius²`.
/// The operations and their precisions are the C code's: `σ² = r²/n` in
/// `f32`, `L = √(12σ² + 1)` and `l = ⌊(L − 1)/2⌋` in `f64` stored to `f32`,
/// `α` in `f32`.
pub fn box_radius(radius: f32, passes: u32) -> f32 {
    let sigma2: f32 = radius * radius / passes as f32;
    let big_l = (12.0 * sigma2 as f64 + 1.0).sqrt() as f32;
    let l = ((big_l as f64 - 1.0) / 2.0).floor() as f32;
    let mut a: f32 = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

/// One extended box pass over the rows of an interleaved 3-channel image of
/// `width` pixels a row (Pillow's `ImagingHorizontalBoxBlur` with
/// `ImagingLineBoxBlur32`), from `src` into `dst`.
fn horizontal_box_blur(src: &[u8], dst: &mut [u8], width: usize, float_radius: f32) {
    // C: `int radius = (int)floatRadius; UINT32 ww = (UINT32)(1 << 24) / (floatRadius * 2 + 1);`
    let radius = float_radius as usize;
    let ww = (16_777_216f32 / (float_radius * 2.0 + 1.0)) as u32;
    let fw = (1u32 << 24).wrapping_sub(((radius * 2 + 1) as u32).wrapping_mul(ww)) / 2;
    let edge_a = (radius + 1).min(width);
    let edge_b = width.saturating_sub(radius + 1);
    let last = width - 1;
    for (line_in, line_out) in src
        .chunks_exact(3 * width)
        .zip(dst.chunks_exact_mut(3 * width))
    {
        for c in 0..3 {
            let px = |x: usize| line_in[3 * x + c] as u32;
            // The accumulator for pixel −1: `radius + 1` copies of pixel 0,
            // pixels 0..edgeA−1, and the last pixel for what lies beyond.
            let mut acc = px(0).wrapping_mul(radius as u32 + 1);
            for x in 0..edge_a.saturating_sub(1) {
                acc = acc.wrapping_add(px(x));
            }
            acc = acc.wrapping_add(px(last).wrapping_mul((radius + 1 - edge_a) as u32));
            let mut out =
                |x: usize, acc: &mut u32, sub: usize, add: usize, left: usize, right: usize| {
                    *acc = acc.wrapping_add(px(add)).wrapping_sub(px(sub));
                    let bulk = acc
                        .wrapping_mul(ww)
                        .wrapping_add((px(left) + px(right)).wrapping_mul(fw));
                    line_out[3 * x + c] = (bulk.wrapping_add(1 << 23) >> 24) as u8;
                };
            if edge_a <= edge_b {
                for x in 0..edge_a {
                    out(x, &mut acc, 0, x + radius, 0, x + radius + 1);
                }
                for x in edge_a..edge_b {
                    out(
                        x,
                        &mut acc,
                        x - radius - 1,
                        x + radius,
                        x - radius - 1,
                        x + radius + 1,
                    );
                }
                for x in edge_b..=last {
                    out(x, &mut acc, x - radius - 1, last, x - radius - 1, last);
                }
            } else {
                for x in 0..edge_b {
                    out(x, &mut acc, 0, x + radius, 0, x + radius + 1);
                }
                for x in edge_b..edge_a {
                    out(x, &mut acc, 0, last, 0, last);
                }
                for x in edge_a..=last {
                    out(x, &mut acc, x - radius - 1, last, x - radius - 1, last);
                }
            }
        }
    }
}

/// The `height × width` interleaved 3-channel image `src` transposed into `dst`.
fn transpose(src: &[u8], dst: &mut [u8], width: usize, height: usize) {
    for y in 0..height {
        for x in 0..width {
            let (s, d) = (3 * (y * width + x), 3 * (x * height + y));
            dst[d..d + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
}

/// Pillow's `ImagingBoxBlur(img, r, r, passes)`: `passes` extended box
/// blurs of radius `radius` along the rows, then as many along the columns.
/// A radius of 0 returns the image unchanged; a negative one is an error.
pub fn box_blur(img: &RgbImage, radius: f32, passes: u32) -> Result<RgbImage, DataError> {
    if radius.is_nan() || radius < 0.0 || passes == 0 {
        return Err(DataError::InvalidParameter(format!(
            "box blur needs a radius >= 0 and at least one pass, got {radius} and {passes}"
        )));
    }
    let (w, h) = (img.width(), img.height());
    if radius == 0.0 || w == 0 || h == 0 {
        return Ok(img.clone());
    }
    let mut a = img.as_raw().to_vec();
    let mut b = vec![0u8; a.len()];
    for _ in 0..passes {
        horizontal_box_blur(&a, &mut b, w, radius);
        std::mem::swap(&mut a, &mut b);
    }
    transpose(&a, &mut b, w, h);
    std::mem::swap(&mut a, &mut b);
    for _ in 0..passes {
        horizontal_box_blur(&a, &mut b, h, radius);
        std::mem::swap(&mut a, &mut b);
    }
    transpose(&a, &mut b, h, w);
    RgbImage::from_raw(w, h, b)
}

/// Pillow's `img.filter(ImageFilter.GaussianBlur(radius))` on an RGB image:
/// three extended box passes a direction of radius [`box_radius`]`(radius, 3)`.
/// A radius of 0 returns a copy, as Pillow does.
pub fn gaussian_blur(img: &RgbImage, radius: f32) -> Result<RgbImage, DataError> {
    if radius.is_nan() || radius < 0.0 {
        return Err(DataError::InvalidParameter(format!(
            "Gaussian blur needs a radius >= 0, got {radius}"
        )));
    }
    if radius == 0.0 {
        return Ok(img.clone());
    }
    const PASSES: u32 = 3;
    box_blur(img, box_radius(radius, PASSES), PASSES)
}
