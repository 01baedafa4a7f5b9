//! torchvision `CenterCrop(size)`: the box at
//! `top = round((H − h) / 2)`, `left = round((W − w) / 2)` (round half to
//! even); a crop larger than the image pads it with zeros first, as torchvision does.

use crate::image::RgbImage;

/// Offset of the crop along one axis: negative when the axis is padded.
fn offset(size: usize, crop: usize) -> isize {
    if crop > size {
        -(((crop - size) / 2) as isize)
    } else {
        ((size - crop) as f64 / 2.0).round_ties_even() as isize
    }
}

/// The central `out_width × out_height` region.
pub fn center_crop(img: &RgbImage, out_width: usize, out_height: usize) -> RgbImage {
    let top = offset(img.height(), out_height);
    let left = offset(img.width(), out_width);
    let mut out = RgbImage::zeros(out_width, out_height);
    let (w, h) = (img.width() as isize, img.height() as isize);
    let src = img.as_raw();
    let dst = out.as_raw_mut();
    for y in 0..out_height {
        let sy = y as isize + top;
        if sy < 0 || sy >= h {
            continue;
        }
        for x in 0..out_width {
            let sx = x as isize + left;
            if sx < 0 || sx >= w {
                continue;
            }
            let s = 3 * (sy as usize * w as usize + sx as usize);
            dst[3 * (y * out_width + x)..][..3].copy_from_slice(&src[s..s + 3]);
        }
    }
    out
}
