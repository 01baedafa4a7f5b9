//! torchvision `RandomGrayscale` / `rgb_to_grayscale(num_output_channels=3)`
//! on PIL images: Pillow's `convert("L")`,
//! `L = (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16` — the ITU-R 601 luma
//! `0.299 R + 0.587 G + 0.114 B` in 16-bit fixed point, rounded — copied
//! to three channels.

use crate::image::RgbImage;

/// Pillow's 8-bit luma of one pixel.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Replaces every pixel by its luma in all three channels.
pub fn to_grayscale(img: &mut RgbImage) {
    for p in img.as_raw_mut().chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]);
        p.fill(l);
    }
}
