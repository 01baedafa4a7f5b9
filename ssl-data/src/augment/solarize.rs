//! torchvision `RandomSolarize` / `solarize` on PIL images (Pillow
//! `ImageOps.solarize`): `v ← 255 − v` for `v ≥ threshold`, unchanged below.

use crate::image::RgbImage;

/// Inverts every channel value at or above `threshold`.
pub fn solarize(img: &mut RgbImage, threshold: u8) {
    for v in img.as_raw_mut() {
        if *v >= threshold {
            *v = 255 - *v;
        }
    }
}
