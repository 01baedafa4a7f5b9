//! torchvision `RandomHorizontalFlip` / `hflip`: column `x` becomes column `W − 1 − x`.

use crate::image::RgbImage;

/// Mirrors the image left–right in place.
pub fn hflip(img: &mut RgbImage) {
    let w = img.width();
    if w == 0 {
        return;
    }
    for row in img.as_raw_mut().chunks_exact_mut(3 * w) {
        for x in 0..w / 2 {
            let (a, b) = (3 * x, 3 * (w - 1 - x));
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
}
