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
/// then `≤ 0 → 0`, `≥ 255 → 255`, else truncated.
#[inline]
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

fn apply_lut(img: &mut RgbImage, lut: &[u8; 256]) {
    for v in img.as_raw_mut() {
        *v = lut[*v as usize];
    }
}

/// torchvision `adjust_brightness` (PIL): `blend(0, img, f)`.
pub fn adjust_brightness(img: &mut RgbImage, factor: f32) {
    let lut: [u8; 256] = std::array::from_fn(|v| blend(0, v as u8, factor));
    apply_lut(img, &lut);
}

/// torchvision `adjust_contrast` (PIL): `blend(m, img, f)` with
/// `m = ⌊mean(L) + 0.5⌋`, `L` the 8-bit grayscale image.
pub fn adjust_contrast(img: &mut RgbImage, factor: f32) {
    let raw = img.as_raw();
    let n = raw.len() / 3;
    if n == 0 {
        return;
    }
    let sum: u64 = raw
        .chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]) as u64)
        .sum();
    let mean = (sum as f64 / n as f64 + 0.5) as u8;
    let lut: [u8; 256] = std::array::from_fn(|v| blend(mean, v as u8, factor));
    apply_lut(img, &lut);
}

/// torchvision `adjust_saturation` (PIL): `blend(L, img, f)` per pixel,
/// `L` the pixel's 8-bit luma.
pub fn adjust_saturation(img: &mut RgbImage, factor: f32) {
    // Branch-free: the lumas of a block of pixels first, then the blends over
    // the block's bytes as one flat loop, which the compiler vectorises.
    const BLOCK: usize = 64;
    let mut lumas = [0f32; 3 * BLOCK];
    for block in img.as_raw_mut().chunks_mut(3 * BLOCK) {
        for (l, p) in lumas.chunks_exact_mut(3).zip(block.chunks_exact(3)) {
            l.fill(luma(p[0], p[1], p[2]) as f32);
        }
        for (v, &l) in block.iter_mut().zip(&lumas) {
            *v = blend_from(l, *v, factor);
        }
    }
}

/// [`blend`] with `a` already a float, without branches: the same value
/// (`t ≤ 0 → 0`, `t ≥ 255 → 255`, else truncated).
#[inline(always)]
fn blend_from(a: f32, b: u8, f: f32) -> u8 {
    let t = a + f * (b as f32 - a);
    t.clamp(0.0, 255.0) as u8
}

/// torchvision `adjust_hue` (PIL): convert to Pillow's 8-bit HSV, add
/// `trunc(255 h)` to H modulo 256, convert back.
pub fn adjust_hue(img: &mut RgbImage, hue_factor: f32) {
    // numpy's `np.array(h * 255).astype(np.uint8)`: truncate, then wrap.
    let shift = ((hue_factor as f64) * 255.0).trunc() as i64 as u8;
    let mut scratch = HueScratch::default();
    for block in img.as_raw_mut().chunks_mut(3 * HUE_BLOCK) {
        scratch.shift_block(block, shift);
    }
}

/// Pixels per block of [`adjust_hue`].
const HUE_BLOCK: usize = 64;

/// Per-pixel intermediate values of one block of [`adjust_hue`], one array
/// per quantity, so that each stage is a flat loop the compiler vectorises.
struct HueScratch {
    base: [f32; HUE_BLOCK],
    dx: [f32; HUE_BLOCK],
    dy: [f32; HUE_BLOCK],
    cr: [f32; HUE_BLOCK],
    v: [f32; HUE_BLOCK],
    uh: [i32; HUE_BLOCK],
    us: [i32; HUE_BLOCK],
    f: [f32; HUE_BLOCK],
    fs: [f32; HUE_BLOCK],
    pqt: [[i32; HUE_BLOCK]; 3],
}

impl Default for HueScratch {
    fn default() -> Self {
        Self {
            base: [0.0; HUE_BLOCK],
            dx: [0.0; HUE_BLOCK],
            dy: [0.0; HUE_BLOCK],
            cr: [1.0; HUE_BLOCK],
            v: [1.0; HUE_BLOCK],
            uh: [0; HUE_BLOCK],
            us: [0; HUE_BLOCK],
            f: [0.0; HUE_BLOCK],
            fs: [0.0; HUE_BLOCK],
            pqt: [[0; HUE_BLOCK]; 3],
        }
    }
}

impl HueScratch {
    /// `hsv_to_rgb(h + shift, s, v)` of `[h, s, v] = rgb_to_hsv(r, g, b)` for
    /// every pixel of `block` (at most [`HUE_BLOCK`] pixels): the same
    /// arithmetic as those two functions (the unit tests compare them on all
    /// 2²⁴ colours), reorganised into stages over the block without
    /// data-dependent branches.
    fn shift_block(&mut self, block: &mut [u8], shift: u8) {
        let n = block.len() / 3;
        // Integer stage: V, the chroma range and which channel is the maximum
        // (`rgb2hsv`'s three cases as `base + x − y`). A grey pixel (range 0)
        // gets range 1 so the divisions stay finite; its S is 0 regardless.
        for (i, p) in block.chunks_exact(3).enumerate() {
            let (r, g, b) = (p[0], p[1], p[2]);
            let maxc = r.max(g).max(b);
            let minc = r.min(g).min(b);
            let (dr, dg, db) = (maxc - r, maxc - g, maxc - b);
            let (base, dx, dy) = if r == maxc {
                (0.0, db, dg)
            } else if g == maxc {
                (2.0, dr, db)
            } else {
                (4.0, dg, dr)
            };
            self.base[i] = base;
            self.dx[i] = dx as f32;
            self.dy[i] = dy as f32;
            self.cr[i] = (maxc - minc) as f32;
            self.v[i] = maxc as f32;
        }
        // rgb2hsv's float stage: H and S bytes.
        for i in 0..HUE_BLOCK {
            let cr = self.cr[i].max(1.0);
            let (x, y) = (self.dx[i] / cr, self.dy[i] / cr);
            // C computes `bc − gc` in f32, `2.0 + rc − bc` / `4.0 + gc − rc` in
            // f64 stored to f32: all equal the exact `base + x − y` rounded once.
            let h = (self.base[i] as f64 + x as f64 - y as f64) as f32;
            // C: h = fmod(h / 6.0 + 1.0, 1.0) in double, stored in a float. The
            // argument is in (0, 2), where fmod(t, 1) is exactly t or t - 1.
            let t6 = h as f64 / 6.0 + 1.0;
            let h = (if t6 >= 1.0 { t6 - 1.0 } else { t6 }) as f32;
            self.uh[i] = ((h as f64 * 255.0) as i32).clamp(0, 255);
            let s = self.cr[i] / self.v[i].max(1.0);
            self.us[i] = ((s as f64 * 255.0) as i32).clamp(0, 255);
        }
        // The shifted hue's sector fraction and S / 255 (tables of 256).
        let t = &*HSV_TABLES;
        for i in 0..HUE_BLOCK {
            let h = (self.uh[i] as u8).wrapping_add(shift);
            self.f[i] = t.frac[h as usize];
            self.fs[i] = t.fs[self.us[i] as usize];
        }
        // hsv2rgb's float stage: p, q, t.
        for i in 0..HUE_BLOCK {
            let (f, fs, vf) = (self.f[i], self.fs[i], self.v[i] as f64);
            self.pqt[0][i] = round_to_i32(vf * (1.0 - fs as f64));
            self.pqt[1][i] = round_to_i32(vf * (1.0 - (fs * f) as f64));
            self.pqt[2][i] = round_to_i32(vf * (1.0 - fs as f64 * (1.0 - f as f64)));
        }
        for (i, p) in block.chunks_exact_mut(3).enumerate().take(n) {
            let v = self.v[i] as u8;
            if self.us[i] == 0 {
                p.fill(v);
                continue;
            }
            let h = (self.uh[i] as u8).wrapping_add(shift);
            let values = [
                v,
                self.pqt[0][i].clamp(0, 255) as u8,
                self.pqt[1][i].clamp(0, 255) as u8,
                self.pqt[2][i].clamp(0, 255) as u8,
            ];
            let order = HUE_ORDER[t.sector[h as usize] as usize];
            p[0] = values[order[0]];
            p[1] = values[order[1]];
            p[2] = values[order[2]];
        }
    }
}

/// C's `round` (half away from zero) of a value in `[0, 256)`, as an integer.
#[inline(always)]
fn round_to_i32(x: f64) -> i32 {
    let t = x as i32; // truncation = floor for x >= 0
    t + (x - t as f64 >= 0.5) as i32
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
        // Shifts 0, 1, 25, 128 and, wrapping below 0, 231 and 255.
        for factor in [0.0f32, 1.5 / 255.0, 0.1, 0.5, -0.1, -1.5 / 255.0] {
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
            assert_eq!(wrong, 0, "shift {shift}: {wrong} colours differ");
        }
    }

    /// The vectorised saturation equals the per-value `blend` on every colour.
    #[test]
    fn saturation_equals_the_per_value_blend_on_every_colour() {
        let img = all_colours();
        for factor in [0.0f32, 0.6, 0.9731, 1.3125, 1.4] {
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
            assert_eq!(wrong, 0, "factor {factor}: {wrong} colours differ");
        }
    }
}
