//! The one place ssl-data calls C: a safe handle over libjpeg-turbo's
//! TurboJPEG 3 decompressor (`turbojpeg-sys`). Every `unsafe` block has its
//! SAFETY note; everything outside this module is safe Rust.
//!
//! TurboJPEG catches libjpeg's errors itself (`setjmp` inside the C code)
//! and reports them as return values, so no C error ever unwinds into Rust.

#![allow(unsafe_code)]

use std::ffi::{c_int, CStr};
use std::ptr::NonNull;

use turbojpeg_sys as tj;

/// The parameters read from a JPEG header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub width: usize,
    pub height: usize,
    /// `TJSAMP_*`, `-1` when the sampling factors are unusual.
    pub subsamp: c_int,
    /// `TJCS_*`.
    pub colorspace: c_int,
    /// Bits per sample (8, 12 or 16).
    pub precision: c_int,
    pub progressive: bool,
    pub arithmetic: bool,
    pub lossless: bool,
}

/// How a call ended when it did not fail: cleanly, or with a libjpeg
/// warning (the output is complete; the message is the first warning's).
pub(crate) type Outcome = Result<Option<String>, String>;

/// Output pixel formats this crate asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PixelFormat {
    /// 3 bytes, R G B.
    Rgb,
    /// 4 bytes, C M Y K as libjpeg returns them (not inverted).
    Cmyk,
}

impl PixelFormat {
    pub(crate) fn bytes(self) -> usize {
        match self {
            PixelFormat::Rgb => 3,
            PixelFormat::Cmyk => 4,
        }
    }

    fn code(self) -> c_int {
        match self {
            PixelFormat::Rgb => tj::TJPF_TJPF_RGB,
            PixelFormat::Cmyk => tj::TJPF_TJPF_CMYK,
        }
    }
}

/// What to decode: a scaling factor (1/1 unless the caller opts into
/// DCT-domain scaling) and a region of the scaled image (`None`: all of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// `(num, denom)`, one of TurboJPEG's supported factors.
    pub scale: (c_int, c_int),
    /// `(x, y, w, h)` in scaled pixels; `x` a multiple of the scaled iMCU width.
    pub region: Option<(usize, usize, usize, usize)>,
    pub format: PixelFormat,
}

/// `TJSCALED(dim, sf)`: `⌈dim · num / denom⌉`.
pub(crate) fn scaled(dim: usize, (num, denom): (c_int, c_int)) -> usize {
    (dim * num as usize).div_ceil(denom as usize)
}

/// iMCU `(width, height)` in pixels of a `TJSAMP_*` value (`turbojpeg.h`'s
/// `tjMCUWidth`/`tjMCUHeight`, which are header-only tables), `None` for unknown.
pub(crate) fn imcu_size(subsamp: c_int) -> Option<(usize, usize)> {
    // 4:4:4, 4:2:2, 4:2:0, grey, 4:4:0, 4:1:1, 4:4:1.
    const WIDTH: [usize; 7] = [8, 16, 16, 8, 8, 32, 8];
    const HEIGHT: [usize; 7] = [8, 8, 16, 8, 16, 8, 32];
    let i = usize::try_from(subsamp).ok().filter(|&i| i < 7)?;
    Some((WIDTH[i], HEIGHT[i]))
}

/// A TurboJPEG decompression instance.
#[derive(Debug)]
pub(crate) struct Decompressor {
    handle: NonNull<std::ffi::c_void>,
}

// SAFETY: a TurboJPEG instance holds no thread-affine state (its error text
// and jump buffer live in the instance); it may be used from any thread as
// long as one thread at a time uses it, which `&mut self` on every call ensures.
unsafe impl Send for Decompressor {}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from `tj3Init` and is destroyed once, here.
        unsafe { tj::tj3Destroy(self.handle.as_ptr()) }
    }
}

impl Decompressor {
    /// A new instance with Pillow's decoder settings: accurate integer IDCT
    /// (`JDCT_ISLOW`), fancy upsampling, warnings not fatal; and Pillow's
    /// decompression-bomb limit as an error (`max_pixels`).
    pub(crate) fn new(max_pixels: usize) -> Result<Self, String> {
        // SAFETY: plain constructor; a null return is handled below.
        let raw = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) };
        let handle = NonNull::new(raw).ok_or_else(|| {
            // SAFETY: with a null handle, tj3GetErrorStr reads the thread-local
            // global error text; the pointer is copied out immediately.
            unsafe { c_text(tj::tj3GetErrorStr(std::ptr::null_mut())) }
        })?;
        let mut d = Self { handle };
        d.set(tj::TJPARAM_TJPARAM_FASTDCT, 0)?;
        d.set(tj::TJPARAM_TJPARAM_FASTUPSAMPLE, 0)?;
        d.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 0)?;
        d.set(
            tj::TJPARAM_TJPARAM_MAXPIXELS,
            c_int::try_from(max_pixels).unwrap_or(c_int::MAX),
        )?;
        Ok(d)
    }

    fn set(&mut self, param: tj::TJPARAM, value: c_int) -> Result<(), String> {
        // SAFETY: a live handle; `param` is one of the library's constants.
        let rc = unsafe { tj::tj3Set(self.handle.as_ptr(), param as c_int, value) };
        if rc == 0 {
            Ok(())
        } else {
            Err(self.error_text())
        }
    }

    fn get(&self, param: tj::TJPARAM) -> c_int {
        // SAFETY: a live handle; `tj3Get` only reads the instance.
        unsafe { tj::tj3Get(self.handle.as_ptr(), param as c_int) }
    }

    fn error_text(&self) -> String {
        // SAFETY: a live handle; the returned C string belongs to the instance
        // and is copied before the next call on it.
        unsafe { c_text(tj::tj3GetErrorStr(self.handle.as_ptr())) }
    }

    /// Turns a return code into an [`Outcome`]: `-1` with `TJERR_WARNING` is a
    /// warning (the operation completed), any other `-1` an error.
    fn outcome(&self, rc: c_int) -> Outcome {
        if rc == 0 {
            return Ok(None);
        }
        // SAFETY: a live handle; reads the instance's last error code.
        let code = unsafe { tj::tj3GetErrorCode(self.handle.as_ptr()) };
        let text = self.error_text();
        if code == tj::TJERR_TJERR_WARNING as c_int {
            Ok(Some(text))
        } else {
            Err(text)
        }
    }

    /// Reads the header of `jpeg` (an error for an empty buffer).
    pub(crate) fn header(&mut self, jpeg: &[u8]) -> Result<(RawHeader, Option<String>), String> {
        if jpeg.is_empty() {
            return Err("empty file".into());
        }
        // SAFETY: a live handle; `jpeg` is a valid buffer of `jpeg.len()`
        // bytes that the library only reads during the call.
        let rc = unsafe {
            tj::tj3DecompressHeader(self.handle.as_ptr(), jpeg.as_ptr(), jpeg.len() as _)
        };
        let warning = self.outcome(rc)?;
        let (w, h) = (
            self.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
            self.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
        );
        if w < 1 || h < 1 {
            return Err("the header gives no image size".into());
        }
        Ok((
            RawHeader {
                width: w as usize,
                height: h as usize,
                subsamp: self.get(tj::TJPARAM_TJPARAM_SUBSAMP),
                colorspace: self.get(tj::TJPARAM_TJPARAM_COLORSPACE),
                precision: self.get(tj::TJPARAM_TJPARAM_PRECISION),
                progressive: self.get(tj::TJPARAM_TJPARAM_PROGRESSIVE) == 1,
                arithmetic: self.get(tj::TJPARAM_TJPARAM_ARITHMETIC) == 1,
                lossless: self.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1,
            },
            warning,
        ))
    }

    /// Decodes `jpeg` as `req` asks into `out`, which must hold exactly the
    /// requested pixels (`w · h · bytes`, rows packed). `header` is what
    /// [`Decompressor::header`] returned for the same bytes.
    pub(crate) fn decompress(
        &mut self,
        jpeg: &[u8],
        header: &RawHeader,
        req: Request,
        out: &mut [u8],
    ) -> Outcome {
        if header.precision != 8 {
            return Err(format!(
                "{}-bit samples are not supported",
                header.precision
            ));
        }
        let (sw, sh) = (
            scaled(header.width, req.scale),
            scaled(header.height, req.scale),
        );
        if header.lossless && (req.scale != (1, 1) || req.region.is_some()) {
            return Err("a lossless JPEG can only be decoded whole".into());
        }
        let (x, y, w, h) = req.region.unwrap_or((0, 0, sw, sh));
        if w == 0 || h == 0 || x + w > sw || y + h > sh {
            return Err(format!(
                "region {w}x{h} at ({x}, {y}) is outside the {sw}x{sh} image"
            ));
        }
        let pitch = w * req.format.bytes();
        if out.len() != pitch * h {
            return Err(format!(
                "output buffer of {} bytes for {w}x{h} pixels of {} bytes",
                out.len(),
                req.format.bytes()
            ));
        }
        let int = |v: usize| c_int::try_from(v).map_err(|_| format!("{v} is too large"));
        let (x, y, w_i, h_i, pitch_i) = (int(x)?, int(y)?, int(w)?, int(h)?, int(pitch)?);
        let sf = tj::tjscalingfactor {
            num: req.scale.0,
            denom: req.scale.1,
        };
        // SAFETY: a live handle; `sf` is passed by value and checked by the library.
        let rc = unsafe { tj::tj3SetScalingFactor(self.handle.as_ptr(), sf) };
        self.outcome(rc)?;
        // The cropping region is checked against the header last read, so read it now.
        // SAFETY: as in `header`.
        let rc = unsafe {
            tj::tj3DecompressHeader(self.handle.as_ptr(), jpeg.as_ptr(), jpeg.len() as _)
        };
        self.outcome(rc)?;
        let region = match req.region {
            Some(_) => tj::tjregion {
                x,
                y,
                w: w_i,
                h: h_i,
            },
            None => tj::tjregion {
                x: 0,
                y: 0,
                w: 0,
                h: 0,
            },
        };
        // SAFETY: a live handle; the region is passed by value and checked by the library.
        let rc = unsafe { tj::tj3SetCroppingRegion(self.handle.as_ptr(), region) };
        self.outcome(rc)?;
        // SAFETY: a live handle; `jpeg` is read-only for the call; `out` is a
        // writable buffer of exactly `pitch · h` bytes, where `h` and the row
        // width `pitch / bytes` are the cropping region's (or, uncropped, the
        // scaled image's, for a lossy JPEG) — the rows the library writes,
        // `pitch` bytes apart — and the header these sizes came from was read
        // from the same bytes just above.
        let rc = unsafe {
            tj::tj3Decompress8(
                self.handle.as_ptr(),
                jpeg.as_ptr(),
                jpeg.len() as _,
                out.as_mut_ptr(),
                pitch_i,
                req.format.code(),
            )
        };
        self.outcome(rc)
    }
}

/// Copies a C string (lossily to UTF-8); a null pointer gives a placeholder.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string valid for the call.
unsafe fn c_text(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return "unknown TurboJPEG error".into();
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    unsafe { CStr::from_ptr(p) }
        .to_string_lossy()
        .trim()
        .to_string()
}
