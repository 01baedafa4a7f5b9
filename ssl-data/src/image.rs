//! The in-memory image every reader returns and every transform takes:
//! 8-bit RGB, row-major, channels interleaved (`HWC`), like a PIL `RGB` image.

use std::path::Path;

use crate::error::DataError;

/// An 8-bit RGB image stored `HWC`: byte `3 (y w + x) + c` is channel `c` of pixel `(x, y)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps `HWC` bytes; fails unless `data.len() == 3 width height`.
    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Result<Self, DataError> {
        if data.len() != 3 * width * height {
            return Err(DataError::InvalidParameter(format!(
                "an RGB image of {width}x{height} needs {} bytes, got {}",
                3 * width * height,
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// A black image.
    pub fn zeros(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; 3 * width * height],
        }
    }

    /// Builds an image from three planes (`CHW`, as CIFAR stores them):
    /// `out[y][x][c] = planes[c h w + y w + x]`.
    pub fn from_planes(width: usize, height: usize, planes: &[u8]) -> Result<Self, DataError> {
        let n = width * height;
        if planes.len() != 3 * n {
            return Err(DataError::InvalidParameter(format!(
                "three {width}x{height} planes need {} bytes, got {}",
                3 * n,
                planes.len()
            )));
        }
        let mut data = vec![0u8; 3 * n];
        for (p, px) in data.chunks_exact_mut(3).enumerate() {
            px[0] = planes[p];
            px[1] = planes[n + p];
            px[2] = planes[2 * n + p];
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// The planes `CHW` (the inverse of [`RgbImage::from_planes`]).
    pub fn to_planes(&self) -> Vec<u8> {
        let n = self.width * self.height;
        let mut planes = vec![0u8; 3 * n];
        for (p, px) in self.data.chunks_exact(3).enumerate() {
            planes[p] = px[0];
            planes[n + p] = px[1];
            planes[2 * n + p] = px[2];
        }
        planes
    }

    /// Decodes a JPEG or PNG file to RGB as `PIL.Image.open(path).convert("RGB")`
    /// does: JPEG through libjpeg-turbo with Pillow's settings, bit for bit
    /// ([`crate::jpeg`]); other formats (PNG) through the `image` crate (grey
    /// replicated, alpha dropped). The format is told by the file's first
    /// bytes, as Pillow does, not by its extension. `entry` is the sample's
    /// index, for the error message.
    pub fn decode_file(path: &Path, entry: usize) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::decode_bytes(&bytes).map_err(|message| DataError::Decode {
            path: path.to_path_buf(),
            entry,
            message,
        })
    }

    /// [`RgbImage::decode_file`] on the bytes of a file.
    pub fn decode_bytes(bytes: &[u8]) -> Result<Self, String> {
        if crate::jpeg::is_jpeg(bytes) {
            return crate::jpeg::decode(bytes);
        }
        let decoded = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
        let rgb = decoded.into_rgb8();
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        Ok(Self {
            width: w,
            height: h,
            data: rgb.into_raw(),
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The `HWC` bytes.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    /// The `HWC` bytes, mutable.
    pub fn as_raw_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Gives the `HWC` bytes back.
    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    /// The pixel at column `x`, row `y`.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let o = 3 * (y * self.width + x);
        [self.data[o], self.data[o + 1], self.data[o + 2]]
    }
}
