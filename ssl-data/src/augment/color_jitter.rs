//! torchvision `ColorJitter` on PIL images: the four adjustments in
//! a random order, each on 8-bit RGB with Pillow's arithmetic, so each step
//! quantises to `u8` as the published pipeline does.
//!
//! - brightness `f`: `blend(black, img, f)`;
//! - contrast `f`: `blend(m, img, f)`, `m = ⌊mean(L) + 0.5⌋` of the grayscale image;
//! - saturation `f`: `blend(L, img, f)` with `L` the grayscale image;
//! - hue `h`: in Pillow's 8-bit HSV, `H ← H + trunc(255 h) (mod 256)`.
//!
//! `blend(a, b, f) = a + f (b − a)` in `f32`, truncated toward zero and
//! clamped to 0..=255 (Pillow `ImagingBlend`). Factors are drawn in `f32`
//! from `U[max(0, 1 − x), 1 + x]` (hue `U[−x, x]`), as torch's `uniform_`.

use rand::seq::SliceRandom;
use rand::Rng;

use crate::augment::grayscale::luma;
use crate::image::RgbImage;

/// `ColorJitter(brightness, contrast, saturation, hue)` strengths.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorJitter {
    /// Brightness strength `x`: factor in `[max(0, 1 − x), 1 + x]`.
    pub brightness: f32,
    /// Contrast strength.
    pub contrast: f32,
    /// Saturation strength.
    pub saturation: f32,
    /// Hue strength in `[0, 0.5]`: shift in `[−x, x]` of a full turn.
    pub hue: f32,
}

/// One draw of `ColorJitter.get_params`: the order (0 brightness, 1
/// contrast, 2 saturation, 3 hue) and the factors (`None` when the strength is 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JitterParams {
    /// Permutation of `0..4` giving the order of application.
    pub order: [usize; 4],
    /// Brightness factor.
    pub brightness: Option<f32>,
    /// Contrast factor.
    pub contrast: Option<f32>,
    /// Saturation factor.
    pub saturation: Option<f32>,
    /// Hue shift (fraction of a turn).
    pub hue: Option<f32>,
}

impl ColorJitter {
    /// The release's strengths `(0.4, 0.4, 0.4, 0.1)` (`base/cfg.py`'s
    /// `cj0`..`cj3` defaults, `ImageNet/train.py`).
    pub fn ssl_default() -> Self {
        Self {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
        }
    }

    /// Draws an order and factors.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> JitterParams {
        let mut order = [0, 1, 2, 3];
        order.shuffle(rng);
        let mut factor = |x: f32| {
            (x > 0.0).then(|| {
                let (lo, hi) = ((1.0 - x).max(0.0), 1.0 + x);
                lo + (hi - lo) * rng.random::<f32>()
            })
        };
        let brightness = factor(self.brightness);
        let contrast = factor(self.contrast);
        let saturation = factor(self.saturation);
        let hue = (self.hue > 0.0).then(|| -self.hue + 2.0 * self.hue * rng.random::<f32>());
        JitterParams {
            order,
            brightness,
            contrast,
            saturation,
            hue,
        }
    }
}

/// Applies drawn jitter parameters in their order.
pub fn apply_jitter(img: &mut RgbImage, p: &JitterParams) {
    for &op in &p.order {
        match (op, p.brightness, p.contrast, p.saturation, p.hue) {
            (0, Some(f), _, _, _) => adjust_brightness(img, f),
            (1, _, Some(f), _, _) => adjust_contrast(img, f),
            (2, _, _, Some(f), _) => adjust_saturation(img, f),
            (3, _, _, _, Some(h)) => adjust_hue(img, h),
            _ => {}
        }
    }
}

/// Pillow `ImagingBlend` of one channel value: `a + f (b − a)` in `f32`,
/// then `≤ 0 → 0`, `≥ 255 → 255`, else truncated. (The reference the
/// branch-free [`blend_from`] is tested against.)
#[cfg(test)]
fn blend(a: u8, b: u8, f: f32) -> u8 {
    let t = a as f32 + f * (b as i32 - a as i32) as f32;
    if t <= 0.0 {
        0
    } else if t >= 255.0 {
        255
    } else {
        t as u8
    }
}

/// torchvision `adjust_brightness` (PIL): `blend(0, img, f)`.
pub fn adjust_brightness(img: &mut RgbImage, factor: f32) {
    blend_all(img.as_raw_mut(), 0.0, factor);
}

/// torchvision `adjust_contrast` (PIL): `blend(m, img, f)` with
/// `m = ⌊mean(L) + 0.5⌋`, `L` the 8-bit grayscale image.
pub fn adjust_contrast(img: &mut RgbImage, factor: f32) {
    let n = img.as_raw().len() / 3;
    if n == 0 {
        return;
    }
    let sum = luma_sum(img.as_raw());
    let mean = (sum as f64 / n as f64 + 0.5) as u8;
    blend_all(img.as_raw_mut(), mean as f32, factor);
}

crate::augment::cpu::avx2_dispatch! {
    /// `blend(a, v, f)` of every byte `v` of `data`.
    fn blend_all(data: &mut [u8], a: f32, factor: f32) => blend_all_kernel
}

#[inline(always)]
fn blend_all_kernel(data: &mut [u8], a: f32, factor: f32) {
    for v in data.iter_mut() {
        *v = blend_from(a, *v, factor);
    }
}

crate::augment::cpu::avx2_dispatch! {
    /// The sum of the lumas of the RGB pixels of `data`.
    fn luma_sum(data: &[u8]) -> u64 => luma_sum_kernel
}

#[inline(always)]
fn luma_sum_kernel(data: &[u8]) -> u64 {
    let mut planes = Planes::default();
    let mut sum = 0u64;
    for block in data.chunks(3 * BLOCK) {
        let n = planes.load(block);
        let mut s = 0u32;
        for i in 0..n {
            s += luma(planes.rgb[0][i], planes.rgb[1][i], planes.rgb[2][i]) as u32;
        }
        sum += s as u64;
    }
    sum
}

/// Pixels per block of the per-pixel colour loops.
const BLOCK: usize = 64;

/// A block of at most [`BLOCK`] RGB pixels as three planes, so that the
/// per-pixel work is a flat loop the compiler vectorises.
struct Planes {
    rgb: [[u8; BLOCK]; 3],
}

impl Default for Planes {
    fn default() -> Self {
        Self {
            rgb: [[0; BLOCK]; 3],
        }
    }
}

impl Planes {
    /// Splits the pixels of `block` into the planes; returns their number.
    #[inline(always)]
    fn load(&mut self, block: &[u8]) -> usize {
        let n = block.len() / 3;
        for (i, p) in block.chunks_exact(3).enumerate() {
            self.rgb[0][i] = p[0];
            self.rgb[1][i] = p[1];
            self.rgb[2][i] = p[2];
        }
        n
    }

    /// Writes the planes' first pixels back into `block`.
    #[inline(always)]
    fn store(&self, block: &mut [u8]) {
        for (i, p) in block.chunks_exact_mut(3).enumerate() {
            p[0] = self.rgb[0][i];
            p[1] = self.rgb[1][i];
            p[2] = self.rgb[2][i];
        }
    }
}

/// torchvision `adjust_saturation` (PIL): `blend(L, img, f)` per pixel,
/// `L` the pixel's 8-bit luma.
pub fn adjust_saturation(img: &mut RgbImage, factor: f32) {
    saturate(img.as_raw_mut(), factor);
}

crate::augment::cpu::avx2_dispatch! {
    /// [`adjust_saturation`] on RGB bytes.
    fn saturate(data: &mut [u8], factor: f32) => saturate_kernel
}

#[inline(always)]
fn saturate_kernel(data: &mut [u8], factor: f32) {
    let mut planes = Planes::default();
    for block in data.chunks_mut(3 * BLOCK) {
        planes.load(block);
        let [r, g, b] = &mut planes.rgb;
        for i in 0..BLOCK {
            let l = luma(r[i], g[i], b[i]) as f32;
            r[i] = blend_from(l, r[i], factor);
            g[i] = blend_from(l, g[i], factor);
            b[i] = blend_from(l, b[i], factor);
        }
        planes.store(block);
    }
}

/// [`blend`] with `a` already a float, without branches: the same value
/// (`t ≤ 0 → 0`, `t ≥ 255 → 255`, else truncated).
#[inline(always)]
fn blend_from(a: f32, b: u8, f: f32) -> u8 {
    let t = a + f * (b as f32 - a);
    // Truncation of t in [0, 255] as arithmetic (which vectorises, unlike a
    // saturating `as` conversion): t + 2²³ − 2²³ is t rounded to an integer.
    const TWO_23: f32 = 8_388_608.0;
    let c = t.clamp(0.0, 255.0);
    let r = (c + TWO_23) - TWO_23;
    let fl = if r > c { r - 1.0 } else { r };
    (fl + TWO_23).to_bits() as u8
}

/// torchvision `adjust_hue` (PIL): convert to Pillow's 8-bit HSV, add
/// `trunc(255 h)` to H modulo 256, convert back.
pub fn adjust_hue(img: &mut RgbImage, hue_factor: f32) {
    // numpy's `np.array(h * 255).astype(np.uint8)`: truncate, then wrap.
    let shift = ((hue_factor as f64) * 255.0).trunc() as i64 as u8;
    shift_all(img.as_raw_mut(), shift);
}

crate::augment::cpu::avx2_dispatch! {
    /// Every block of `data` through [`HueScratch::shift_block`].
    fn shift_all(data: &mut [u8], shift: u8) => shift_blocks
}

#[inline(always)]
fn shift_blocks(data: &mut [u8], shift: u8) {
    let mut scratch = HueScratch::default();
    for block in data.chunks_mut(3 * HUE_BLOCK) {
        scratch.shift_block(block, shift);
    }
}

/// Pixels per block of [`adjust_hue`].
const HUE_BLOCK: usize = 64;

/// One block of [`adjust_hue`] as planes (one array per channel), so that
/// the per-pixel work is one flat loop the compiler vectorises.
struct HueScratch {
    rgb: [[u8; HUE_BLOCK]; 3],
    out: [[u8; HUE_BLOCK]; 3],
}

impl Default for HueScratch {
    fn default() -> Self {
        Self {
            rgb: [[0; HUE_BLOCK]; 3],
            out: [[0; HUE_BLOCK]; 3],
        }
    }
}

impl HueScratch {
    /// `hsv_to_rgb(h + shift, s, v)` of `[h, s, v] = rgb_to_hsv(r, g, b)` for
    /// every pixel of `block` (at most [`HUE_BLOCK`] pixels): the same
    /// arithmetic as those two functions (the unit tests compare them on all
    /// 2²⁴ colours), with their cases and tables turned into computations and
    /// selections that do not depend on the data.
    #[inline(always)]
    fn shift_block(&mut self, block: &mut [u8], shift: u8) {
        let n = block.len() / 3;
        for (i, p) in block.chunks_exact(3).enumerate() {
            self.rgb[0][i] = p[0];
            self.rgb[1][i] = p[1];
            self.rgb[2][i] = p[2];
        }
        for i in 0..HUE_BLOCK {
            let [o_r, o_g, o_b] =
                shift_pixel(self.rgb[0][i], self.rgb[1][i], self.rgb[2][i], shift);
            self.out[0][i] = o_r;
            self.out[1][i] = o_g;
            self.out[2][i] = o_b;
        }
        for (i, p) in block.chunks_exact_mut(3).enumerate().take(n) {
            p[0] = self.out[0][i];
            p[1] = self.out[1][i];
            p[2] = self.out[2][i];
        }
    }
}

/// One pixel of [`HueScratch::shift_block`]; every `if` selects between
/// values already computed (no division by zero: a grey pixel divides by 1,
/// and its S of 0 makes the output `(v, v, v)` anyway).
#[inline(always)]
fn shift_pixel(r: u8, g: u8, b: u8, shift: u8) -> [u8; 3] {
    // rgb2hsv: V, S, and H from which channel is the maximum (`base + x − y`).
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let (dr, dg, db) = (maxc - r, maxc - g, maxc - b);
    let (r_max, g_max) = (r == maxc, g == maxc);
    let dx = if r_max {
        db
    } else if g_max {
        dr
    } else {
        dg
    };
    let dy = if r_max {
        dg
    } else if g_max {
        db
    } else {
        dr
    };
    let base: f32 = if r_max {
        0.0
    } else if g_max {
        2.0
    } else {
        4.0
    };
    let cr = (maxc - minc) as f32;
    let crd = cr.max(1.0);
    let (x, y) = (dx as f32 / crd, dy as f32 / crd);
    // C computes `bc − gc` in f32, `2.0 + rc − bc` / `4.0 + gc − rc` in f64
    // stored to f32: all equal the exact `base + x − y` rounded once.
    let h = (base as f64 + x as f64 - y as f64) as f32;
    // C: h = fmod(h / 6.0 + 1.0, 1.0) in double, stored in a float. The
    // argument is in (0, 2), where fmod(t, 1) is exactly t or t - 1.
    let t6 = h as f64 / 6.0 + 1.0;
    let h = (if t6 >= 1.0 { t6 - 1.0 } else { t6 }) as f32;
    // (h · 255 and s · 255 lie in [0, 255]: truncation is the floor, no clamp needed.)
    let uh = small_int(floor_nonneg(h as f64 * 255.0));
    let s = cr / (maxc as f32).max(1.0);
    let us = small_int(floor_nonneg(s as f64 * 255.0));

    // hsv2rgb of (H + shift, S, V): sector i = ⌊6H/255⌋ mod 6, fraction f,
    // fs = S/255, then p, q, t (`hsv_to_rgb`'s tables, computed).
    let hh = (uh + shift as i32) & 255;
    let hf = hh as f32 as f64 * 6.0 / 255.0;
    let whole = floor_nonneg(hf);
    let f = (hf - whole) as f32;
    let whole = small_int(whole);
    let sector = if whole >= 6 { whole - 6 } else { whole };
    let fs = (us as f32 as f64 / 255.0) as f32;
    let vf = maxc as f64;
    // v · c with c in [0, 1]: in [0, 255], so rounding needs no clamp.
    let p = small_int(round_nonneg(vf * (1.0 - fs as f64))) as u8;
    let q = small_int(round_nonneg(vf * (1.0 - (fs * f) as f64))) as u8;
    let t = small_int(round_nonneg(vf * (1.0 - fs as f64 * (1.0 - f as f64)))) as u8;
    let v = maxc;
    // Pillow's `switch (i % 6)`: (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q).
    let o_r = match sector {
        1 => q,
        2 | 3 => p,
        4 => t,
        _ => v,
    };
    let o_g = match sector {
        0 => t,
        3 => q,
        4 | 5 => p,
        _ => v,
    };
    let o_b = match sector {
        2 => t,
        3 | 4 => v,
        5 => q,
        _ => p,
    };
    if us == 0 {
        [v; 3]
    } else {
        [o_r, o_g, o_b]
    }
}

/// `2⁵²`: adding it to a double in `[0, 2⁵²)` rounds it to an integer.
const TWO_52: f64 = 4_503_599_627_370_496.0;

/// `⌊x⌋` for `0 ≤ x < 2⁵²`, exactly, with arithmetic that vectorises on
/// any x86-64 (no `floor` call, no saturating float-to-int conversion):
/// `x + 2⁵² − 2⁵²` is `x` rounded to the nearest integer.
#[inline(always)]
fn floor_nonneg(x: f64) -> f64 {
    let t = (x + TWO_52) - TWO_52;
    if t > x {
        t - 1.0
    } else {
        t
    }
}

/// C's `round` (half away from zero) of `0 ≤ x < 2⁵²`, as a double.
#[inline(always)]
fn round_nonneg(x: f64) -> f64 {
    let t = floor_nonneg(x);
    if x - t >= 0.5 {
        t + 1.0
    } else {
        t
    }
}

/// The integer `0 ≤ x < 2³¹` held in the double `x` (read from the low bits
/// of `x + 2⁵²`, which vectorises, unlike a saturating `as` conversion).
#[inline(always)]
fn small_int(x: f64) -> i32 {
    (x + TWO_52).to_bits() as u32 as i32
}

/// Quotient tables of Pillow's `rgb2hsv`, exactly its `f32` divisions:
/// `ratio[256 cr + d] = d / cr` and the saturation byte
/// `sat[256 maxc + cr] = (int)((cr / maxc) · 255.0)`.
struct RgbToHsvTables {
    ratio: Vec<f32>,
    sat: Vec<u8>,
}

static RGB_TO_HSV_TABLES: std::sync::LazyLock<RgbToHsvTables> = std::sync::LazyLock::new(|| {
    let mut ratio = vec![0f32; 65536];
    let mut sat = vec![0u8; 65536];
    for a in 1..256usize {
        for b in 0..=a {
            ratio[256 * a + b] = b as f32 / a as f32;
            sat[256 * a + b] = (((b as f32 / a as f32) as f64 * 255.0) as i32).clamp(0, 255) as u8;
        }
    }
    RgbToHsvTables { ratio, sat }
});

/// Pillow's `rgb2hsv` (8-bit H, S, V; H in 255ths of a turn).
///
/// C computes `h = bc − gc` in `f32` when R is the maximum, `2.0 + rc − bc`
/// or `4.0 + gc − rc` in `f64` stored to `f32` otherwise; all three equal the
/// exact value of `base + x − y` rounded once to `f32` (the `f32` ratios lie
/// in `[0, 1]`, so the `f64` sums are exact), which is how it is computed
/// here, with the case chosen without branches.
pub fn rgb_to_hsv(r: u8, g: u8, b: u8) -> [u8; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return [0, 0, maxc];
    }
    let t = &*RGB_TO_HSV_TABLES;
    let cr = (maxc - minc) as usize;
    let (dr, dg, db) = (
        (maxc - r) as usize,
        (maxc - g) as usize,
        (maxc - b) as usize,
    );
    let (base, dx, dy) = if r == maxc {
        (0.0, db, dg)
    } else if g == maxc {
        (2.0, dr, db)
    } else {
        (4.0, dg, dr)
    };
    let h = (base + t.ratio[256 * cr + dx] as f64 - t.ratio[256 * cr + dy] as f64) as f32;
    // C: h = fmod(h / 6.0 + 1.0, 1.0) in double, stored in a float. The argument is
    // in (0, 2), where fmod(t, 1) is exactly t or t - 1.
    let t6 = h as f64 / 6.0 + 1.0;
    let h = (if t6 >= 1.0 { t6 - 1.0 } else { t6 }) as f32;
    let uh = ((h as f64 * 255.0) as i32).clamp(0, 255) as u8;
    [uh, t.sat[256 * maxc as usize + cr], maxc]
}

/// C's `round` (half away from zero) of a non-negative value, clamped to a
/// byte, without a libm call: `x − trunc(x)` is exact for `0 ≤ x < 2⁵²`.
#[inline]
fn round_to_u8(x: f64) -> u8 {
    let t = x as i64; // truncation = floor for x >= 0
    let r = t + (x - t as f64 >= 0.5) as i64;
    r.clamp(0, 255) as u8
}

/// Per-byte constants of Pillow's `hsv2rgb`: for H, the sector
/// `i = ⌊6H/255⌋ mod 6` and its fraction `f` (`f32`); for S, `fs = S/255` (`f32`).
struct HsvTables {
    sector: [u8; 256],
    frac: [f32; 256],
    fs: [f32; 256],
}

static HSV_TABLES: std::sync::LazyLock<HsvTables> = std::sync::LazyLock::new(|| HsvTables {
    sector: std::array::from_fn(|h| ((h as f32 as f64 * 6.0 / 255.0) as i32 % 6) as u8),
    frac: std::array::from_fn(|h| {
        let hh = h as f32 as f64 * 6.0 / 255.0;
        (hh - (hh as i32) as f64) as f32
    }),
    fs: std::array::from_fn(|s| (s as f32 as f64 / 255.0) as f32),
});

/// Pillow's `switch (i % 6)` of `hsv2rgb` as a table: which of
/// `[v, p, q, t]` goes to R, G and B in each sector (no branch to mispredict).
const HUE_ORDER: [[usize; 3]; 6] = [
    [0, 3, 1],
    [2, 0, 1],
    [1, 0, 3],
    [1, 2, 0],
    [3, 1, 0],
    [0, 1, 2],
];

/// Pillow's `hsv2rgb`.
pub fn hsv_to_rgb(h: u8, s: u8, v: u8) -> [u8; 3] {
    if s == 0 {
        return [v, v, v];
    }
    let t = &*HSV_TABLES;
    let (f, fs) = (t.frac[h as usize], t.fs[s as usize]);
    let vf = v as f32 as f64;
    let p = round_to_u8(vf * (1.0 - fs as f64));
    let q = round_to_u8(vf * (1.0 - (fs * f) as f64));
    let tt = round_to_u8(vf * (1.0 - fs as f64 * (1.0 - f as f64)));
    let values = [v, p, q, tt];
    HUE_ORDER[t.sector[h as usize] as usize].map(|i| values[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of the 2²⁴ colours, as a 4096 × 4096 image.
    fn all_colours() -> RgbImage {
        let data: Vec<u8> = (0..1u32 << 24)
            .flat_map(|c| [(c >> 16) as u8, (c >> 8) as u8, c as u8])
            .collect();
        RgbImage::from_raw(4096, 4096, data).unwrap()
    }

    /// The staged, branch-free hue shift is Pillow's `rgb2hsv`, shift,
    /// `hsv2rgb` (`rgb_to_hsv`, `hsv_to_rgb`, themselves checked against
    /// Pillow in `tests/torchvision_match.rs`) on every one of the 2²⁴ colours.
    #[test]
    fn staged_hue_shift_equals_the_round_trip_on_every_colour() {
        let img = all_colours();
        // Shifts 0, 1, 25, 128 and, wrapping below 0, 231 and 255; the AVX2
        // copy (where the CPU has it) and the portable one.
        let cases = [0.0f32, 1.5 / 255.0, 0.1, 0.5, -0.1, -1.5 / 255.0]
            .into_iter()
            .flat_map(|f| [(f, false), (f, true)]);
        for (factor, portable) in cases {
            crate::augment::cpu::PORTABLE.with(|p| p.set(portable));
            let shift = ((factor as f64) * 255.0).trunc() as i64 as u8;
            let mut ours = img.clone();
            adjust_hue(&mut ours, factor);
            let wrong = img
                .as_raw()
                .chunks_exact(3)
                .zip(ours.as_raw().chunks_exact(3))
                .filter(|(p, o)| {
                    let [h, s, v] = rgb_to_hsv(p[0], p[1], p[2]);
                    *o != hsv_to_rgb(h.wrapping_add(shift), s, v)
                })
                .count();
            assert_eq!(
                wrong, 0,
                "shift {shift} (portable {portable}): {wrong} colours differ"
            );
        }
    }

    /// Brightness and contrast (`blend` of every byte with 0 or the mean
    /// luma) equal the per-value `blend` for every byte value, and the mean
    /// luma is the plain sum's, on both copies.
    #[test]
    fn brightness_and_contrast_equal_the_per_value_blend() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        // Every byte value in every channel, then noise (73 x 41 pixels).
        let mut data: Vec<u8> = (0..=255u8).flat_map(|v| [v, 255 - v, v / 3]).collect();
        data.extend((0..3 * (73 * 41 - 256)).map(|_| rng.random::<u8>()));
        let img = RgbImage::from_raw(73, 41, data).unwrap();
        let sum: u64 = img
            .as_raw()
            .chunks_exact(3)
            .map(|p| luma(p[0], p[1], p[2]) as u64)
            .sum();
        let mean = (sum as f64 / (73 * 41) as f64 + 0.5) as u8;
        for portable in [false, true] {
            crate::augment::cpu::PORTABLE.with(|p| p.set(portable));
            assert_eq!(luma_sum(img.as_raw()), sum);
            for factor in [0.0f32, 0.6, 0.8312, 1.0, 1.2771, 1.4, 3.0] {
                let (mut b, mut c) = (img.clone(), img.clone());
                adjust_brightness(&mut b, factor);
                adjust_contrast(&mut c, factor);
                for ((&v, &bv), &cv) in img.as_raw().iter().zip(b.as_raw()).zip(c.as_raw()) {
                    assert_eq!(bv, blend(0, v, factor), "brightness {factor} of {v}");
                    assert_eq!(cv, blend(mean, v, factor), "contrast {factor} of {v}");
                }
            }
        }
    }

    /// The vectorised saturation equals the per-value `blend` on every colour.
    #[test]
    fn saturation_equals_the_per_value_blend_on_every_colour() {
        let img = all_colours();
        let cases = [0.0f32, 0.6, 0.9731, 1.3125, 1.4]
            .into_iter()
            .flat_map(|f| [(f, false), (f, true)]);
        for (factor, portable) in cases {
            crate::augment::cpu::PORTABLE.with(|p| p.set(portable));
            let mut ours = img.clone();
            adjust_saturation(&mut ours, factor);
            let wrong = img
                .as_raw()
                .chunks_exact(3)
                .zip(ours.as_raw().chunks_exact(3))
                .filter(|(p, o)| {
                    let l = luma(p[0], p[1], p[2]);
                    *o != [
                        blend(l, p[0], factor),
                        blend(l, p[1], factor),
                        blend(l, p[2], factor),
                    ]
                })
                .count();
            assert_eq!(
                wrong, 0,
                "factor {factor} (portable {portable}): {wrong} colours differ"
            );
        }
    }
}
