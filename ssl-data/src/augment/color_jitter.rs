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
    for p in img.as_raw_mut().chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]);
        p[0] = blend(l, p[0], factor);
        p[1] = blend(l, p[1], factor);
        p[2] = blend(l, p[2], factor);
    }
}

/// torchvision `adjust_hue` (PIL): convert to Pillow's 8-bit HSV, add
/// `trunc(255 h)` to H modulo 256, convert back.
pub fn adjust_hue(img: &mut RgbImage, hue_factor: f32) {
    // numpy's `np.array(h * 255).astype(np.uint8)`: truncate, then wrap.
    let shift = ((hue_factor as f64) * 255.0).trunc() as i64 as u8;
    for p in img.as_raw_mut().chunks_exact_mut(3) {
        let [h, s, v] = rgb_to_hsv(p[0], p[1], p[2]);
        let rgb = hsv_to_rgb(h.wrapping_add(shift), s, v);
        p.copy_from_slice(&rgb);
    }
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
    let r = if x - t as f64 >= 0.5 { t + 1 } else { t };
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
    // Pillow's `switch (i % 6)` as a table lookup: no branch to mispredict on varied hues.
    const ORDER: [[usize; 3]; 6] = [
        [0, 3, 1],
        [2, 0, 1],
        [1, 0, 3],
        [1, 2, 0],
        [3, 1, 0],
        [0, 1, 2],
    ];
    let values = [v, p, q, tt];
    ORDER[t.sector[h as usize] as usize].map(|i| values[i])
}
