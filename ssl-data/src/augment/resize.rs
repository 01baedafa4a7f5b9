//! Resampling exactly as Pillow's `Image.resize` does it for 8-bit RGB
//! (`libImaging/Resample.c`), which is what torchvision's `resize` and
//! `resized_crop` call on PIL images: a separable convolution, horizontal
//! pass then vertical, each output pixel a weighted sum of the input pixels
//! within `support · max(scale, 1)` of its centre (the filter is stretched
//! when downscaling, i.e. antialiased), weights normalised to sum to 1 then
//! rounded to 22-bit fixed point, sums rounded half up and clamped to 0..=255.
//!
//! The result is bit-identical to Pillow's (tested against the venv's
//! torchvision/Pillow).

use crate::error::DataError;
use crate::image::RgbImage;

/// Fixed-point precision of Pillow's 8-bit resampling weights (`32 − 8 − 2`).
const PRECISION_BITS: u32 = 22;

/// The resampling filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// Triangle filter, support 1.
    Bilinear,
    /// Keys cubic with `a = −0.5`, support 2 (PIL `BICUBIC`).
    Bicubic,
}

impl Interpolation {
    fn support(self) -> f64 {
        match self {
            Interpolation::Bilinear => 1.0,
            Interpolation::Bicubic => 2.0,
        }
    }

    /// The filter kernel `k(x)`: bilinear `max(0, 1 − |x|)`; bicubic
    /// `(a+2)|x|³ − (a+3)|x|² + 1` for `|x| < 1`, `a(|x|³ − 5|x|² + 8|x| − 4)` for `|x| < 2`, `a = −0.5`.
    pub fn kernel(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Interpolation::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Interpolation::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Fixed-point weights of one axis: output `i` sums inputs `start[i] .. start[i] + len[i]`
/// with weights `weights[i * ksize ..]`.
struct AxisWeights {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for an input axis of
/// `in_size` pixels resampled to `out_size`.
fn axis_weights(in_size: usize, out_size: usize, filter: Interpolation) -> AxisWeights {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut start = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero; negatives clamp to 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = filter.kernel((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, &kx) in k.iter().enumerate().take(xmax) {
            let v = if ww != 0.0 { kx / ww } else { kx };
            let f = v * (1u32 << PRECISION_BITS) as f64;
            weights[xx * ksize + x] = if v < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
        }
        start.push(xmin);
        len.push(xmax);
    }
    AxisWeights {
        start,
        len,
        ksize,
        weights,
    }
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

crate::augment::cpu::avx2_dispatch! {
    /// Horizontal pass (Pillow `ImagingResampleHorizontal_8bpc`): each of the
    /// `rows` lines of `src` (`stride` bytes apart, starting at byte `first`)
    /// becomes `out_w` pixels.
    fn horizontal_pass(
        src: &[u8],
        first: usize,
        stride: usize,
        rows: usize,
        in_w: usize,
        out_w: usize,
        filter: Interpolation,
    ) -> Vec<u8> => horizontal_pass_kernel
}

#[inline(always)]
fn horizontal_pass_kernel(
    src: &[u8],
    first: usize,
    stride: usize,
    rows: usize,
    in_w: usize,
    out_w: usize,
    filter: Interpolation,
) -> Vec<u8> {
    let hw = axis_weights(in_w, out_w, filter);
    let mut out = vec![0u8; 3 * out_w * rows];
    let half = 1i32 << (PRECISION_BITS - 1);
    // Rows go in strips of STRIP, the strip's pixels gathered column by
    // column (`strip[x][r][c]`), so that each tap adds one run of
    // `LANES` contiguous values to `LANES` sums: the vertical pass's
    // vectorisable loop. The integer sums are Pillow's whatever the order.
    const STRIP: usize = 8;
    const LANES: usize = 3 * STRIP;
    let mut strip = vec![0u8; in_w * LANES];
    let mut sums = vec![0u8; out_w * LANES];
    for r0 in (0..rows).step_by(STRIP) {
        let nr = STRIP.min(rows - r0);
        for r in 0..nr {
            let line = &src[first + (r0 + r) * stride..][..3 * in_w];
            for (x, p) in line.chunks_exact(3).enumerate() {
                strip[x * LANES + 3 * r..][..3].copy_from_slice(p);
            }
        }
        for xx in 0..out_w {
            let (s, n) = (hw.start[xx], hw.len[xx]);
            let k = &hw.weights[xx * hw.ksize..xx * hw.ksize + n];
            let mut acc = [half; LANES];
            for (j, &w) in k.iter().enumerate() {
                let col: &[u8; LANES] = strip[(s + j) * LANES..][..LANES]
                    .try_into()
                    .unwrap_or(&[0; LANES]);
                for (a, &v) in acc.iter_mut().zip(col) {
                    *a += v as i32 * w;
                }
            }
            for (o, &a) in sums[xx * LANES..][..LANES].iter_mut().zip(&acc) {
                *o = clip8(a);
            }
        }
        for r in 0..nr {
            let dst = &mut out[(r0 + r) * 3 * out_w..][..3 * out_w];
            for (xx, d) in dst.chunks_exact_mut(3).enumerate() {
                d.copy_from_slice(&sums[xx * LANES + 3 * r..][..3]);
            }
        }
    }
    out
}

crate::augment::cpu::avx2_dispatch! {
    /// Vertical pass (Pillow `ImagingResampleVertical_8bpc`): the lines of
    /// `3 w` bytes of `src` (`stride` apart, from byte `first`) become `out_h`
    /// lines. `vw` was computed for the source rows; its bounds are shifted by `-row0`.
    fn vertical_pass(
        src: &[u8],
        first: usize,
        stride: usize,
        w: usize,
        row0: usize,
        vw: &AxisWeights,
        out_h: usize,
    ) -> Vec<u8> => vertical_pass_kernel
}

#[inline(always)]
fn vertical_pass_kernel(
    src: &[u8],
    first: usize,
    stride: usize,
    w: usize,
    row0: usize,
    vw: &AxisWeights,
    out_h: usize,
) -> Vec<u8> {
    let row = 3 * w;
    let mut out = vec![0u8; row * out_h];
    let mut acc = vec![0i32; row];
    for yy in 0..out_h {
        let (s, n) = (vw.start[yy] - row0, vw.len[yy]);
        let k = &vw.weights[yy * vw.ksize..yy * vw.ksize + n];
        acc.fill(1 << (PRECISION_BITS - 1));
        for (j, &wt) in k.iter().enumerate() {
            let line = &src[first + (s + j) * stride..][..row];
            for (a, &p) in acc.iter_mut().zip(line) {
                *a += p as i32 * wt;
            }
        }
        for (o, &a) in out[yy * row..(yy + 1) * row].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Resamples the `src_w × src_h` rectangle at (`left`, `top`) of `img` to
/// `out_w × out_h`, exactly as Pillow's `img.crop(box).resize((out_w, out_h), filter)`.
/// An axis whose size does not change is copied. The pass order is Pillow
/// 13's: vertical first when the height shrinks by more than twice as many
/// pixels as the width (`src_h − out_h > 2 (src_w − out_w)`), else
/// horizontal first; the order matters because each pass rounds to 8 bits.
#[allow(clippy::too_many_arguments)]
pub fn resample_region(
    img: &RgbImage,
    left: usize,
    top: usize,
    src_w: usize,
    src_h: usize,
    out_w: usize,
    out_h: usize,
    filter: Interpolation,
) -> Result<RgbImage, DataError> {
    if src_w == 0 || src_h == 0 || out_w == 0 || out_h == 0 {
        return Err(DataError::InvalidParameter(format!(
            "cannot resample a {src_w}x{src_h} region to {out_w}x{out_h}"
        )));
    }
    if left + src_w > img.width() || top + src_h > img.height() {
        return Err(DataError::InvalidParameter(format!(
            "region {src_w}x{src_h} at ({left}, {top}) exceeds the {}x{} image",
            img.width(),
            img.height()
        )));
    }
    let stride = 3 * img.width();
    let src = img.as_raw();
    let origin = top * stride + 3 * left;
    let need_h = out_w != src_w;
    let need_v = out_h != src_h;
    let vertical_first = need_h
        && need_v
        && src_h > out_h
        && (src_h - out_h) as i64 > 2 * (src_w as i64 - out_w as i64);
    let data = match (need_h, need_v) {
        (false, false) => (0..src_h)
            .flat_map(|r| src[origin + r * stride..][..3 * src_w].iter().copied())
            .collect(),
        (true, false) => horizontal_pass(src, origin, stride, src_h, src_w, out_w, filter),
        (false, true) => {
            let vw = axis_weights(src_h, out_h, filter);
            vertical_pass(src, origin, stride, src_w, 0, &vw, out_h)
        }
        (true, true) if vertical_first => {
            let vw = axis_weights(src_h, out_h, filter);
            let tmp = vertical_pass(src, origin, stride, src_w, 0, &vw, out_h);
            horizontal_pass(&tmp, 0, 3 * src_w, out_h, src_w, out_w, filter)
        }
        (true, true) => {
            // Only the rows the vertical pass reads go through the horizontal one.
            let vw = axis_weights(src_h, out_h, filter);
            let (row0, row1) = (vw.start[0], vw.start[out_h - 1] + vw.len[out_h - 1]);
            let tmp = horizontal_pass(
                src,
                origin + row0 * stride,
                stride,
                row1 - row0,
                src_w,
                out_w,
                filter,
            );
            vertical_pass(&tmp, 0, 3 * out_w, out_w, row0, &vw, out_h)
        }
    };
    RgbImage::from_raw(out_w, out_h, data)
}

/// Resizes the whole image to `out_w × out_h` (Pillow `img.resize`).
pub fn resize(
    img: &RgbImage,
    out_w: usize,
    out_h: usize,
    filter: Interpolation,
) -> Result<RgbImage, DataError> {
    resample_region(img, 0, 0, img.width(), img.height(), out_w, out_h, filter)
}

/// The `(width, height)` torchvision's `Resize(size)` gives a `w × h`
/// image: the shorter side becomes `size`, the longer `floor(size · long / short)`.
pub fn shorter_side_size(w: usize, h: usize, size: usize) -> Result<(usize, usize), DataError> {
    let (short, long) = (w.min(h), w.max(h));
    if short == 0 || size == 0 {
        return Err(DataError::InvalidParameter(format!(
            "cannot resize a {w}x{h} image to shorter side {size}"
        )));
    }
    let new_long = (size as f64 * long as f64 / short as f64) as usize;
    Ok(if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    })
}

/// torchvision `Resize(size)` with an integer size: the shorter side becomes
/// `size`, the longer `floor(size · long / short)`.
pub fn resize_shorter_side(
    img: &RgbImage,
    size: usize,
    filter: Interpolation,
) -> Result<RgbImage, DataError> {
    let (w, h) = (img.width(), img.height());
    let (ow, oh) = shorter_side_size(w, h, size)?;
    if (ow, oh) == (w, h) {
        return Ok(img.clone());
    }
    resize(img, ow, oh, filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The AVX2 copies of the passes give the portable copies' bytes (both
    /// are checked against Pillow through the dispatcher in
    /// `tests/torchvision_match.rs`, which runs the one the CPU picks).
    #[test]
    fn avx2_and_portable_passes_agree() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (w, h) = (131, 97);
        let img = RgbImage::from_raw(w, h, (0..3 * w * h).map(|_| rng.random()).collect()).unwrap();
        for (left, top, sw, sh, ow, oh) in [
            (0, 0, 131, 97, 224, 224),
            (5, 9, 120, 80, 64, 40),
            (17, 3, 90, 91, 32, 89),
            (0, 0, 131, 97, 131, 30),
            (40, 20, 7, 50, 33, 50),
        ] {
            for filter in [Interpolation::Bilinear, Interpolation::Bicubic] {
                let run = |portable: bool| {
                    crate::augment::cpu::PORTABLE.with(|p| p.set(portable));
                    resample_region(&img, left, top, sw, sh, ow, oh, filter).unwrap()
                };
                assert_eq!(run(true), run(false), "{sw}x{sh} -> {ow}x{oh} {filter:?}");
            }
        }
    }
}
