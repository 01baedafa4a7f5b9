//! JPEG decoding exactly as Pillow does it: `PIL.Image.open(p).convert("RGB")`,
//! which is what torchvision's `ImageFolder` (and so the release's ImageNet
//! runs) fed the network.
//!
//! **Library.** Pillow decodes with libjpeg-turbo (its wheels bundle 3.x).
//! We call the same library through `turbojpeg-sys`, the raw bindings to
//! libjpeg-turbo's TurboJPEG 3 API that the `turbojpeg` crate sits on: it
//! builds the libjpeg-turbo sources it vendors (3.1) with CMake and NASM
//! (which `cargo xtask setup` installs on Debian), so no system library is
//! needed and the SIMD kernels are in. The safe `turbojpeg` wrapper was not
//! enough: it has no partial decode (`tj3SetCroppingRegion`, libjpeg-turbo's
//! `jpeg_crop_scanline` + `jpeg_skip_scanlines`), the biggest lever on the
//! ImageNet recipe's speed. `mozjpeg` exposes libjpeg's API but reports
//! libjpeg errors by unwinding through C and has no partial decode either.
//! TurboJPEG catches libjpeg's errors in C and returns them, so the small
//! `unsafe` surface (`turbo.rs`) needs no unwinding tricks.
//!
//! **Pillow's settings** (`JpegImagePlugin.py`, `JpegDecode.c`): accurate
//! integer IDCT (`JDCT_ISLOW`), fancy upsampling on, no DCT scaling (no
//! `draft`), libjpeg's own colour conversion to RGB for YCbCr / RGB files and
//! to grey for one-component files; 4-component files are read as CMYK with
//! Pillow's "assume Adobe conventions" raw mode `CMYK;I` (each value
//! inverted) — libjpeg turns YCCK into CMYK first — then `convert("RGB")`
//! is Pillow's `cmyk2rgb`: `k' = 255 − K`, `R = k' − muldiv255(C, k')`
//! (likewise G, B), `muldiv255(a, b) = ((t >> 8) + t) >> 8`, `t = a b + 128`.
//! Grey is replicated to three channels. Like Pillow, samples of other than
//! 8 bits, or other than 1, 3 or 4 components, are errors, and so is an image
//! over twice Pillow's `MAX_IMAGE_PIXELS` (its decompression-bomb error).
//!
//! **Warnings and errors.** libjpeg's warnings (e.g. "extraneous bytes
//! before marker", corrupt entropy data) do not stop Pillow, which keeps
//! what libjpeg decoded; nor do they stop us. A file that ends early
//! ("Premature end of JPEG file") is an error in Pillow ("image file is
//! truncated") and here.
//!
//! **Partial decode.** [`decode_region`] decodes only the iMCU columns and
//! rows around a box (libjpeg-turbo still entropy-decodes the whole scan,
//! but skips the inverse DCT, upsampling and colour conversion elsewhere).
//! The decoded rectangle extends the box by margins wide enough that the
//! rectangle's edges, which libjpeg treats as image edges when upsampling
//! chroma (and when smoothing the blocks of an incomplete progressive
//! file), are far enough from the box: the box's pixels are bit-identical
//! to a full decode (`tests/jpeg_decode.rs` checks this on random boxes of
//! every subsampling).
//!
//! **DCT-domain scaling** ([`decode_scaled`], opt-in, as FFCV does): libjpeg
//! decodes at `n/8` of the size straight from the coefficients. It changes
//! pixels (it is not Pillow's decode followed by a resize), so nothing uses
//! it unless asked.

mod turbo;

use crate::augment::random_resized_crop::CropBox;
use crate::image::RgbImage;
use turbo::{Decompressor, PixelFormat, RawHeader, Request};

/// Pillow's `Image.MAX_IMAGE_PIXELS`: twice this many pixels is its
/// `DecompressionBombError`.
pub const PIL_MAX_IMAGE_PIXELS: usize = 89_478_485;

/// Whether `bytes` start like a JPEG file (Pillow's `_accept`: `FF D8 FF`).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// How the components of a JPEG are coded (libjpeg's `jpeg_color_space`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JpegColorspace {
    /// One component.
    Gray,
    /// Three components, YCbCr.
    YCbCr,
    /// Three components stored as RGB (Adobe transform 0, or `R`/`G`/`B` ids).
    Rgb,
    /// Four components, CMYK.
    Cmyk,
    /// Four components, YCCK (Adobe transform 2).
    Ycck,
}

/// What the header of a JPEG file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JpegHeader {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Colour space of the components.
    pub colorspace: JpegColorspace,
    /// The iMCU `(width, height)` in pixels (8, 16 or 32 by 8, 16 or 32),
    /// `None` for unusual sampling factors (such a file is decoded whole).
    pub imcu: Option<(usize, usize)>,
    /// Progressive (multi-scan) coding.
    pub progressive: bool,
    raw: RawHeader,
}

/// Runs `f` on a new decompressor. Each file gets its own: a TurboJPEG
/// instance keeps the last header it parsed, and a file without a frame
/// header (tables only) would otherwise report the previous file's size.
/// Creating one costs microseconds against milliseconds of decoding.
fn with_decompressor<T>(
    f: impl FnOnce(&mut Decompressor) -> Result<T, String>,
) -> Result<T, String> {
    f(&mut Decompressor::new(2 * PIL_MAX_IMAGE_PIXELS)?)
}

/// Whether a libjpeg warning is one Pillow fails on: the data ended before
/// the image did (Pillow: "image file is truncated").
fn fatal_warning(warning: Option<String>) -> Result<(), String> {
    match warning {
        Some(w) if w.contains("Premature end of JPEG file") => {
            Err(format!("the file is truncated ({w})"))
        }
        _ => Ok(()),
    }
}

/// Reads the header of the JPEG `bytes`; fails where Pillow would refuse
/// the file (see the module doc).
pub fn read_header(bytes: &[u8]) -> Result<JpegHeader, String> {
    if !is_jpeg(bytes) {
        return Err("not a JPEG file (it does not start with FF D8 FF)".into());
    }
    let (raw, warning) = with_decompressor(|d| d.header(bytes))?;
    fatal_warning(warning)?;
    if raw.precision != 8 {
        return Err(format!("cannot handle {}-bit samples", raw.precision));
    }
    let colorspace = match raw.colorspace {
        c if c == turbojpeg_sys::TJCS_TJCS_GRAY as i32 => JpegColorspace::Gray,
        c if c == turbojpeg_sys::TJCS_TJCS_YCbCr as i32 => JpegColorspace::YCbCr,
        c if c == turbojpeg_sys::TJCS_TJCS_RGB as i32 => JpegColorspace::Rgb,
        c if c == turbojpeg_sys::TJCS_TJCS_CMYK as i32 => JpegColorspace::Cmyk,
        c if c == turbojpeg_sys::TJCS_TJCS_YCCK as i32 => JpegColorspace::Ycck,
        c => return Err(format!("unknown JPEG colour space {c}")),
    };
    let imcu = if raw.lossless {
        None
    } else {
        turbo::imcu_size(raw.subsamp)
    };
    Ok(JpegHeader {
        width: raw.width,
        height: raw.height,
        colorspace,
        imcu,
        progressive: raw.progressive,
        raw,
    })
}

impl JpegHeader {
    fn format(&self) -> PixelFormat {
        match self.colorspace {
            JpegColorspace::Cmyk | JpegColorspace::Ycck => PixelFormat::Cmyk,
            _ => PixelFormat::Rgb,
        }
    }

    /// The rectangle [`decode_region`] decodes for `want`: `want` grown by
    /// the margins of the module doc, its left edge on an iMCU boundary,
    /// clipped to the image. `None` when the file can only be decoded whole.
    pub fn region_for(&self, want: CropBox) -> Option<CropBox> {
        let (mw, mh) = self.imcu?;
        // One iMCU covers fancy upsampling's reach (one chroma sample) past
        // the rectangle's edge; block smoothing of progressive files reads
        // two blocks on each side of a block, so three iMCUs there.
        let (mx, my) = if self.progressive || self.raw.arithmetic {
            (3 * mw, 3 * mh)
        } else {
            (mw, mh)
        };
        let x0 = want.left.saturating_sub(mx) / mw * mw;
        let y0 = want.top.saturating_sub(my) / mh * mh;
        let x1 = (want.left + want.width + mx).min(self.width);
        let y1 = (want.top + want.height + my).min(self.height);
        Some(CropBox {
            top: y0,
            left: x0,
            height: y1 - y0,
            width: x1 - x0,
        })
    }
}

/// Pillow's `cmyk2rgb` after its `CMYK;I` unpacking (module doc), in place:
/// `n` 4-byte CMYK pixels at the start of `buf` become `n` 3-byte RGB ones.
fn inverted_cmyk_to_rgb(buf: &mut Vec<u8>, n: usize) {
    #[inline]
    fn muldiv255(a: u32, b: u32) -> u32 {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    }
    for i in 0..n {
        let p = &buf[4 * i..4 * i + 4];
        let (c, m, y, k) = (
            255 - p[0] as u32,
            255 - p[1] as u32,
            255 - p[2] as u32,
            255 - p[3] as u32,
        );
        let nk = 255 - k;
        let rgb = [
            nk.saturating_sub(muldiv255(c, nk)).min(255) as u8,
            nk.saturating_sub(muldiv255(m, nk)).min(255) as u8,
            nk.saturating_sub(muldiv255(y, nk)).min(255) as u8,
        ];
        // Output pixel i ends at 3i + 3 <= 4i + 4: never past what is still to be read.
        buf[3 * i..3 * i + 3].copy_from_slice(&rgb);
    }
    buf.truncate(3 * n);
}

fn decode_request(
    bytes: &[u8],
    header: &JpegHeader,
    scale: (i32, i32),
    region: Option<CropBox>,
) -> Result<RgbImage, String> {
    let format = header.format();
    let (w, h) = match region {
        Some(b) => (b.width, b.height),
        None => (
            turbo::scaled(header.width, scale),
            turbo::scaled(header.height, scale),
        ),
    };
    let mut buf = vec![0u8; w * h * format.bytes()];
    let req = Request {
        scale,
        region: region.map(|b| (b.left, b.top, b.width, b.height)),
        format,
    };
    let warning = with_decompressor(|d| d.decompress(bytes, &header.raw, req, &mut buf))?;
    fatal_warning(warning)?;
    if format == PixelFormat::Cmyk {
        inverted_cmyk_to_rgb(&mut buf, w * h);
    }
    RgbImage::from_raw(w, h, buf).map_err(|e| e.to_string())
}

/// Decodes a whole JPEG file to RGB, bit-identical to
/// `PIL.Image.open(f).convert("RGB")`.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, String> {
    let header = read_header(bytes)?;
    decode_request(bytes, &header, (1, 1), None)
}

/// Decodes at least the pixels of `want` (a box inside the image): returns
/// the decoded rectangle and its position, `(image, left, top)`, whose
/// pixels equal those of [`decode`] at the same place. Files that cannot be
/// decoded in part (unusual sampling, lossless) are decoded whole.
pub fn decode_region(
    bytes: &[u8],
    header: &JpegHeader,
    want: CropBox,
) -> Result<(RgbImage, usize, usize), String> {
    if want.width == 0
        || want.height == 0
        || want.left + want.width > header.width
        || want.top + want.height > header.height
    {
        return Err(format!(
            "box {}x{} at ({}, {}) is outside the {}x{} image",
            want.width, want.height, want.left, want.top, header.width, header.height
        ));
    }
    match header.region_for(want) {
        Some(r) if (r.width, r.height) != (header.width, header.height) => {
            let img = decode_request(bytes, header, (1, 1), Some(r))?;
            Ok((img, r.left, r.top))
        }
        _ => Ok((decode_request(bytes, header, (1, 1), None)?, 0, 0)),
    }
}

/// The box `want` decoded with no margin (its left edge moved down to an
/// iMCU boundary, then cut back to `want`): what [`decode_region`]'s margins
/// avoid. For the test that shows them necessary; not for use.
#[doc(hidden)]
pub fn decode_exact_region_for_tests(
    bytes: &[u8],
    header: &JpegHeader,
    want: CropBox,
) -> Result<RgbImage, String> {
    let (mw, _) = header.imcu.ok_or("no iMCU size")?;
    let left = want.left / mw * mw;
    let r = CropBox {
        left,
        width: want.width + want.left - left,
        ..want
    };
    let img = decode_request(bytes, header, (1, 1), Some(r))?;
    let skip = want.left - left;
    let data = img
        .as_raw()
        .chunks_exact(3 * r.width)
        .flat_map(|row| row[3 * skip..].iter().copied())
        .collect();
    RgbImage::from_raw(want.width, want.height, data).map_err(|e| e.to_string())
}

/// Decodes a JPEG at `num/8` of its size (`num` in `1..=8`) with libjpeg's
/// DCT-domain scaling: the output is `⌈w num / 8⌉ × ⌈h num / 8⌉`.
/// **Not** Pillow's pixels (module doc); `num = 8` is [`decode`].
pub fn decode_scaled(bytes: &[u8], num: u8) -> Result<RgbImage, String> {
    if !(1..=8).contains(&num) {
        return Err(format!("DCT scaling is num/8 with num in 1..=8, got {num}"));
    }
    let header = read_header(bytes)?;
    if header.raw.lossless && num != 8 {
        return decode_request(bytes, &header, (1, 1), None);
    }
    // TurboJPEG lists its factors in lowest terms (1/2, not 4/8).
    let factor = match num {
        2 => (1, 4),
        4 => (1, 2),
        6 => (3, 4),
        8 => (1, 1),
        n => (n as i32, 8),
    };
    decode_request(bytes, &header, factor, None)
}
