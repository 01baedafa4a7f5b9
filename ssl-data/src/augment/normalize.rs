//! torchvision `ToTensor` then `Normalize(mean, std)`: `x = v / 255` in
//! `f32`, then `(x − mean_c) / std_c`, written `CHW`. Both steps are the same
//! `f32` operations torchvision performs, so the result is bit-identical; a
//! 256-entry table per channel holds them.

use crate::error::DataError;
use crate::image::RgbImage;

/// Per-channel mean and standard deviation (the datasets' in [`crate::augment::pipeline::DatasetKind::mean_std`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    /// Channel means.
    pub mean: [f32; 3],
    /// Channel standard deviations.
    pub std: [f32; 3],
    lut: [[f32; 256]; 3],
}

impl Normalize {
    /// Builds the tables; fails on a non-positive std.
    pub fn new(mean: [f32; 3], std: [f32; 3]) -> Result<Self, DataError> {
        if std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            return Err(DataError::InvalidParameter(format!(
                "normalisation std must be positive, got {std:?}"
            )));
        }
        let lut =
            std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - mean[c]) / std[c]));
        Ok(Self { mean, std, lut })
    }

    /// Writes the normalised `CHW` image into `out` (`3 H W` floats).
    pub fn apply_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<(), DataError> {
        let n = img.width() * img.height();
        if out.len() != 3 * n {
            return Err(DataError::InvalidParameter(format!(
                "output of {} floats for a {}x{} image (needs {})",
                out.len(),
                img.width(),
                img.height(),
                3 * n
            )));
        }
        let (r, rest) = out.split_at_mut(n);
        let (g, b) = rest.split_at_mut(n);
        for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
            r[i] = self.lut[0][p[0] as usize];
            g[i] = self.lut[1][p[1] as usize];
            b[i] = self.lut[2][p[2] as usize];
        }
        Ok(())
    }
}
