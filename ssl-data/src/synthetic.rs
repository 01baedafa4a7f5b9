//! A synthetic, class-structured image dataset written in the CIFAR binary
//! format, so it goes through the real reader ([`crate::cifar`]). It is the
//! embedded default of the demo and the tests.
//!
//! Class `k` of `K` fixes a combination of shape (`k mod 6`: disc, square,
//! triangle, ring, cross, diamond), foreground hue (`0.618034 k mod 1`, the
//! golden-ratio sequence, so hues are spread) and texture (`⌊k / 6⌋ mod 3`:
//! solid, stripes, checkerboard). Each image draws, from its own RNG, the
//! centre (`U[0.3, 0.7]` of the side), the radius (`U[0.22, 0.4]`), the
//! rotation (`U[0, 2π)`), the foreground hue jitter (`±0.04`), saturation
//! and value (`U[0.6, 1]`), a background of any hue with a linear gradient
//! at low saturation and value, and per-pixel noise (`U{−10..10}` per channel).
//! Everything is a function of `(seed, split, index)`.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::cifar::{encode_record, CifarBinary, CifarKind, CifarSplit};
use crate::error::DataError;
use crate::image::RgbImage;
use crate::seed::derive_seed;

/// Size and seed of a synthetic dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticConfig {
    /// Number of classes, `1..=100` (≤ 10 writes CIFAR-10 files, more CIFAR-100 files).
    pub classes: usize,
    /// Training images per class.
    pub train_per_class: usize,
    /// Test images per class.
    pub test_per_class: usize,
    /// Image side in pixels.
    pub side: usize,
    /// Seed everything derives from.
    pub seed: u64,
}

impl SyntheticConfig {
    /// The demo's default: 10 classes of 32×32 images, 500 train and 100 test per class.
    pub fn demo() -> Self {
        Self {
            classes: 10,
            train_per_class: 500,
            test_per_class: 100,
            side: 32,
            seed: 0,
        }
    }

    /// The CIFAR layout the files use.
    pub fn kind(&self) -> CifarKind {
        if self.classes <= 10 {
            CifarKind::Cifar10
        } else {
            CifarKind::Cifar100
        }
    }
}

const SHAPES: usize = 6;
const TEXTURES: usize = 3;

/// Colour from hue, saturation, value in `[0, 1]` (the standard HSV cone).
fn hsv(h: f64, s: f64, v: f64) -> [f64; 3] {
    let h6 = (h.rem_euclid(1.0)) * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as i32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Whether the point `(u, v)` (shape frame, radius 1, `v` up) is inside shape `shape`.
fn inside(shape: usize, u: f64, v: f64) -> bool {
    match shape {
        0 => u * u + v * v <= 1.0,
        1 => u.abs().max(v.abs()) <= 0.8,
        2 => v >= -0.5 && u.abs() <= (1.0 - v) * 0.577_350_269,
        3 => (0.3..=1.0).contains(&(u * u + v * v)),
        4 => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
        _ => u.abs() + v.abs() <= 1.0,
    }
}

/// Draws one `side × side` image of class `class` (see the module doc).
pub fn render<R: Rng + ?Sized>(class: usize, side: usize, rng: &mut R) -> RgbImage {
    let shape = class % SHAPES;
    let texture = (class / SHAPES) % TEXTURES;
    let base_hue = (0.618_034 * class as f64).rem_euclid(1.0);
    let s = side as f64;
    let (cx, cy) = (
        rng.random_range(0.3..0.7) * s,
        rng.random_range(0.3..0.7) * s,
    );
    let radius = rng.random_range(0.22..0.4) * s;
    let theta = rng.random_range(0.0..std::f64::consts::TAU);
    let fg = hsv(
        base_hue + rng.random_range(-0.04..0.04),
        rng.random_range(0.6..1.0),
        rng.random_range(0.6..1.0),
    );
    let fg_dark = fg.map(|c| c * 0.45);
    let bg_hue = rng.random::<f64>();
    let bg0 = hsv(
        bg_hue,
        rng.random_range(0.0..0.4),
        rng.random_range(0.1..0.5),
    );
    let bg1 = hsv(
        bg_hue + 0.1,
        rng.random_range(0.0..0.4),
        rng.random_range(0.1..0.5),
    );
    let grad = rng.random_range(0.0..std::f64::consts::TAU);
    let (gx, gy) = (grad.cos(), grad.sin());
    let period = 0.5; // texture period in radius units
    let (cos, sin) = (theta.cos(), theta.sin());
    let mut data = Vec::with_capacity(3 * side * side);
    for y in 0..side {
        for x in 0..side {
            let (dx, dy) = (x as f64 + 0.5 - cx, cy - (y as f64 + 0.5));
            let u = (cos * dx + sin * dy) / radius;
            let v = (-sin * dx + cos * dy) / radius;
            let colour = if inside(shape, u, v) {
                let dark = match texture {
                    0 => false,
                    1 => (u / period).floor() as i64 % 2 == 0,
                    _ => ((u / period).floor() as i64 + (v / period).floor() as i64) % 2 == 0,
                };
                if dark {
                    fg_dark
                } else {
                    fg
                }
            } else {
                let t =
                    ((x as f64 / s - 0.5) * gx + (y as f64 / s - 0.5) * gy + 0.5).clamp(0.0, 1.0);
                [0, 1, 2].map(|c| bg0[c] * (1.0 - t) + bg1[c] * t)
            };
            for c in colour {
                let noise = rng.random_range(-10i32..=10);
                data.push((c * 255.0 + 0.5 + noise as f64).clamp(0.0, 255.0) as u8);
            }
        }
    }
    RgbImage::from_raw(side, side, data).unwrap_or_else(|e| unreachable!("{e}"))
}

/// Labels of a split, every class `per_class` times, in a seeded random order.
fn split_labels(cfg: &SyntheticConfig, split: CifarSplit) -> Vec<usize> {
    let per_class = match split {
        CifarSplit::Train => cfg.train_per_class,
        CifarSplit::Test => cfg.test_per_class,
    };
    let mut labels: Vec<usize> = (0..cfg.classes)
        .flat_map(|c| std::iter::repeat_n(c, per_class))
        .collect();
    let stream = split_stream(split);
    labels.shuffle(&mut ChaCha8Rng::from_seed(derive_seed(
        cfg.seed,
        stream,
        u64::MAX,
    )));
    labels
}

fn split_stream(split: CifarSplit) -> u64 {
    match split {
        CifarSplit::Train => 0,
        CifarSplit::Test => 1,
    }
}

/// Writes the dataset into `dir` in CIFAR binary format — CIFAR-10 layout
/// (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`) for up to 10
/// classes, CIFAR-100 (`train.bin`, `test.bin`, coarse label `⌊20 k / K⌋`)
/// above — and returns the files written.
pub fn write_synthetic_cifar(dir: &Path, cfg: &SyntheticConfig) -> Result<Vec<PathBuf>, DataError> {
    if cfg.classes == 0 || cfg.classes > 100 || cfg.side == 0 {
        return Err(DataError::InvalidParameter(format!(
            "synthetic data needs 1..=100 classes and a positive side, got {} classes, side {}",
            cfg.classes, cfg.side
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let kind = cfg.kind();
    let mut written = Vec::new();
    for split in [CifarSplit::Train, CifarSplit::Test] {
        let labels = split_labels(cfg, split);
        let stream = split_stream(split);
        let records: Vec<Vec<u8>> = labels
            .par_iter()
            .enumerate()
            .map(|(i, &label)| {
                let mut rng = ChaCha8Rng::from_seed(derive_seed(cfg.seed, stream, i as u64));
                let img = render(label, cfg.side, &mut rng);
                let mut rec = Vec::new();
                let coarse = (20 * label / cfg.classes) as u8;
                encode_record(kind, label as u8, coarse, &img, &mut rec);
                rec
            })
            .collect();
        let names = kind.file_names(split);
        let per_file = records.len().div_ceil(names.len());
        for (f, name) in names.iter().enumerate() {
            let path = dir.join(name);
            let lo = (f * per_file).min(records.len());
            let hi = ((f + 1) * per_file).min(records.len());
            let bytes: Vec<u8> = records[lo..hi].concat();
            write_atomically(&path, &bytes)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Writes `bytes` atomically ([`ssl_files::write_atomic`]), so that a
/// reader never sees a partial file: several processes (the ranks of a data-parallel run, or
/// tests sharing a folder) may generate the same deterministic data into
/// the same folder at once, and each file appears whole or not at all.
/// The test split is written last, so its presence means the set is
/// complete.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    ssl_files::write_atomic(path, bytes).map_err(|e| DataError::io(path, e))
}

/// Opens a split written by [`write_synthetic_cifar`] through the CIFAR reader.
pub fn open_synthetic(
    dir: &Path,
    cfg: &SyntheticConfig,
    split: CifarSplit,
) -> Result<CifarBinary, DataError> {
    CifarBinary::open_with_side(dir, cfg.kind(), split, cfg.side)
}
