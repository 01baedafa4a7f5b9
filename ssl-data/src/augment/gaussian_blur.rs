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
//! - Pillow blurs columns as rows of the transposed image; here every pass
//!   runs along whole lines of values at once (rows blurred on the
//!   transposed image), which is the same arithmetic per value.
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

/// One extended box pass along the first axis of the `n × len` bytes `src`
/// into `dst`: column `j` (one channel of one image row or column) is
/// blurred as Pillow's `ImagingLineBoxBlur32` blurs a line of `n` pixels
/// (`ImagingHorizontalBoxBlur`'s weights). Working on whole lines at once
/// instead of pixel by pixel is the same arithmetic, vectorised.
#[inline(always)]
fn box_pass(
    src: &[u8],
    dst: &mut [u8],
    n: usize,
    len: usize,
    float_radius: f32,
    acc: &mut Vec<u32>,
) {
    // C: `int radius = (int)floatRadius; UINT32 ww = (UINT32)(1 << 24) / (floatRadius * 2 + 1);`
    let radius = float_radius as usize;
    let ww = (16_777_216f32 / (float_radius * 2.0 + 1.0)) as u32;
    let fw = (1u32 << 24).wrapping_sub(((radius * 2 + 1) as u32).wrapping_mul(ww)) / 2;
    let edge_a = (radius + 1).min(n);
    let edge_b = n.saturating_sub(radius + 1);
    let last = n - 1;
    let line = |i: usize| &src[i * len..(i + 1) * len];
    // The accumulator for position −1: `radius + 1` copies of position 0,
    // positions 0..edgeA−1, and the last position for what lies beyond.
    acc.clear();
    acc.extend(
        line(0)
            .iter()
            .map(|&v| (v as u32).wrapping_mul(radius as u32 + 1)),
    );
    for x in 0..edge_a.saturating_sub(1) {
        for (a, &v) in acc.iter_mut().zip(line(x)) {
            *a = a.wrapping_add(v as u32);
        }
    }
    let beyond = (radius + 1 - edge_a) as u32;
    for (a, &v) in acc.iter_mut().zip(line(last)) {
        *a = a.wrapping_add((v as u32).wrapping_mul(beyond));
    }
    // Output position `x`: add position `add`, drop `sub`, weigh `left` and
    // `right` (the partial pixels at the box's ends) by `fw`.
    // (A macro rather than a closure, so that it is compiled inside the
    // AVX2 copy of the caller.)
    macro_rules! out {
        ($x:expr, $sub:expr, $add:expr, $left:expr, $right:expr $(,)?) => {{
            let x = $x;
            let o = &mut dst[x * len..(x + 1) * len];
            let (sub, add, left, right) = ($sub, $add, $left, $right);
            box_step(
                acc,
                o,
                &src[add * len..][..len],
                &src[sub * len..][..len],
                &src[left * len..][..len],
                &src[right * len..][..len],
                ww,
                fw,
            );
        }};
    }
    if edge_a <= edge_b {
        for x in 0..edge_a {
            out!(x, 0, x + radius, 0, x + radius + 1);
        }
        for x in edge_a..edge_b {
            out!(
                x,
                x - radius - 1,
                x + radius,
                x - radius - 1,
                x + radius + 1,
            );
        }
        for x in edge_b..=last {
            out!(x, x - radius - 1, last, x - radius - 1, last);
        }
    } else {
        for x in 0..edge_b {
            out!(x, 0, x + radius, 0, x + radius + 1);
        }
        for x in edge_b..edge_a {
            out!(x, 0, last, 0, last);
        }
        for x in edge_a..=last {
            out!(x, x - radius - 1, last, x - radius - 1, last);
        }
    }
}

/// One output position of [`box_pass`] over a line of values: the running
/// sums `acc` gain `add` and lose `sub`; the output is
/// `(acc ww + (left + right) fw + 2²³) >> 24`, in wrapping `u32` as Pillow.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn box_step(
    acc: &mut [u32],
    out: &mut [u8],
    add: &[u8],
    sub: &[u8],
    left: &[u8],
    right: &[u8],
    ww: u32,
    fw: u32,
) {
    let n = acc.len();
    let (out, add, sub, left, right) =
        (&mut out[..n], &add[..n], &sub[..n], &left[..n], &right[..n]);
    for i in 0..n {
        let a = acc[i]
            .wrapping_add(add[i] as u32)
            .wrapping_sub(sub[i] as u32);
        acc[i] = a;
        let bulk = a
            .wrapping_mul(ww)
            .wrapping_add((left[i] as u32 + right[i] as u32).wrapping_mul(fw));
        out[i] = (bulk.wrapping_add(1 << 23) >> 24) as u8;
    }
}

/// The `height × width` interleaved 3-channel image `src` transposed into `dst`.
#[inline(always)]
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
    RgbImage::from_raw(w, h, blur_lines(img.as_raw(), w, h, radius, passes))
}

crate::augment::cpu::avx2_dispatch! {
    /// The passes of [`box_blur`] on the `w × h` RGB bytes `src`.
    fn blur_lines(src: &[u8], w: usize, h: usize, radius: f32, passes: u32) -> Vec<u8>
        => blur_lines_kernel
}

#[inline(always)]
fn blur_lines_kernel(src: &[u8], w: usize, h: usize, radius: f32, passes: u32) -> Vec<u8> {
    // Along the rows first, as Pillow (each pass rounds to 8 bits, so the
    // order matters): transposed, the rows' pixels are the lines' positions.
    let mut a = vec![0u8; src.len()];
    let mut b = vec![0u8; a.len()];
    let mut acc = Vec::new();
    transpose(src, &mut a, w, h);
    for _ in 0..passes {
        box_pass(&a, &mut b, w, 3 * h, radius, &mut acc);
        std::mem::swap(&mut a, &mut b);
    }
    transpose(&a, &mut b, h, w);
    std::mem::swap(&mut a, &mut b);
    for _ in 0..passes {
        box_pass(&a, &mut b, h, 3 * w, radius, &mut acc);
        std::mem::swap(&mut a, &mut b);
    }
    a
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The AVX2 copy of the box passes gives the portable copy's bytes (both
    /// are checked against Pillow through the dispatcher in
    /// `tests/torchvision_match.rs`, which runs the one the CPU picks).
    #[test]
    fn avx2_and_portable_blurs_agree() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for (w, h) in [(1, 1), (5, 3), (64, 48), (224, 224)] {
            let img =
                RgbImage::from_raw(w, h, (0..3 * w * h).map(|_| rng.random()).collect()).unwrap();
            for radius in [0.1f32, 0.73, 1.3, 2.0, 9.5] {
                let run = |portable: bool| {
                    crate::augment::cpu::PORTABLE.with(|p| p.set(portable));
                    gaussian_blur(&img, radius).unwrap()
                };
                assert_eq!(run(true), run(false), "{w}x{h} radius {radius}");
            }
        }
    }
}
