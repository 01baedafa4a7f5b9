//! A synthetic, class-structured image dataset written in the CIFAR binary
//! format, so it goes through the real reader ([`crate::cifar`]). It is the
//! embedded default of the demo and the tests.
//!
//! It is built so that invariance is the point: the class is carried by
//! something the SSL augmentations (docs/reference.md §5.2: colour jitter,
//! greyscale, random resized crop, horizontal flip) keep — the *shape* of
//! one object — while what they randomise — colour, brightness, position,
//! scale, background — varies freely from image to image and makes up most
//! of the pixels. A randomly initialised encoder therefore sees mostly
//! nuisances (5-NN near chance), and an encoder trained to match augmented
//! views of the same image has to find the shape.
//!
//! Class `k` of `K` is shape `k mod 10`: disc, ring, triangle, square, plus,
//! five-pointed star, crescent, bar, heart, L-corner (upright; the mirror
//! image, which a horizontal flip makes, is the same class). Above 10
//! classes, `⌊k / 10⌋` picks a fill pattern of the shape (solid, horizontal
//! or vertical stripes, checks, cross-hatch, dots, concentric bands,
//! outline, dark top half, dark core), also kept by the augmentations.
//!
//! Each image draws, from its own RNG:
//! - a background that is a smooth field of colours: a 3×3 grid of colours
//!   of any hue (saturation `U[0.2, 0.7]`, value `U[0.1, 0.35]`)
//!   interpolated bilinearly, so crops of one image see different colours;
//! - 0 to 4 clutter strokes (length `U[3, 12]/32` of the side, any
//!   direction and hue, value `U[0.1, 0.6]`);
//! - the object: radius `U[0.33, 0.4]` of the side, scaled per shape so that
//!   every shape covers the same area (the foreground's pixel count says
//!   nothing about the class), centre anywhere that keeps it mostly inside
//!   (`U[0.9 r, side − 0.9 r]`), mirrored with probability ½, in a colour of
//!   any hue (saturation `U[0.2, 0.5]`, value `U[0.6, 0.95]`: brighter than
//!   the background and the clutter).
//!
//! Everything is a function of `(seed, split, index)`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

/// The shapes, in class order.
pub const SHAPES: [&str; 10] = [
    "disc", "ring", "triangle", "square", "plus", "star", "crescent", "bar", "heart", "L-corner",
];

/// The fill patterns of classes 10 and above, in order.
pub const PATTERNS: [&str; 10] = [
    "solid",
    "horizontal stripes",
    "vertical stripes",
    "checks",
    "cross-hatch",
    "dots",
    "bands",
    "outline",
    "dark top",
    "dark core",
];

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
    let r2 = u * u + v * v;
    match shape {
        0 => r2 <= 0.75 * 0.75,
        1 => (0.55 * 0.55..=0.95 * 0.95).contains(&r2),
        2 => v >= -0.5 && u.abs() <= (1.0 - v) * 0.577_350_269,
        3 => u.abs().max(v.abs()) <= 0.68,
        4 => (u.abs() <= 0.28 && v.abs() <= 0.95) || (v.abs() <= 0.28 && u.abs() <= 0.95),
        5 => {
            // Radius 0.42 between the points, 1 at the points.
            let turn = (v.atan2(u) + std::f64::consts::FRAC_PI_2) * 5.0 / std::f64::consts::TAU;
            let k = ((turn.rem_euclid(1.0)) - 0.5).abs() * 2.0;
            r2.sqrt() <= 0.42 + 0.58 * k * k
        }
        6 => r2 <= 0.9 * 0.9 && (u - 0.45) * (u - 0.45) + v * v >= 0.7 * 0.7,
        7 => u.abs() <= 0.95 && v.abs() <= 0.3,
        8 => {
            let (x, y) = (u / 0.9, v / 0.9 - 0.1);
            (x * x + y * y - 0.6).powi(3) - x * x * y.powi(3) <= 0.0
        }
        _ => {
            ((-0.7..=-0.2).contains(&u) && (-0.8..=0.8).contains(&v))
                || ((-0.7..=0.7).contains(&u) && (-0.8..=-0.3).contains(&v))
        }
    }
}

/// Whether pattern `pattern` darkens the point `(u, v)` of a shape.
fn dark(pattern: usize, shape: usize, u: f64, v: f64) -> bool {
    let band = |t: f64| (t / 0.3).floor().rem_euclid(2.0) == 0.0;
    match pattern {
        0 => false,
        1 => band(v),
        2 => band(u),
        3 => band(u) != band(v),
        4 => band(u + v) != band(u - v),
        5 => {
            let (a, b) = ((u / 0.4).round() * 0.4 - u, (v / 0.4).round() * 0.4 - v);
            a * a + b * b <= 0.12 * 0.12
        }
        6 => band((u * u + v * v).sqrt()),
        7 => {
            // Inside the shape shrunk by a fifth: the outline stays light.
            inside(shape, u * 1.25, v * 1.25)
        }
        8 => v > 0.0,
        _ => u * u + v * v <= 0.35 * 0.35,
    }
}

/// Area of each shape in its frame (radius 1), measured once on a grid.
fn shape_areas() -> &'static [f64; 10] {
    static AREAS: OnceLock<[f64; 10]> = OnceLock::new();
    AREAS.get_or_init(|| {
        let n = 400;
        let step = 3.0 / n as f64;
        std::array::from_fn(|shape| {
            let mut hits = 0usize;
            for i in 0..n {
                for j in 0..n {
                    let (u, v) = (
                        -1.5 + (i as f64 + 0.5) * step,
                        -1.5 + (j as f64 + 0.5) * step,
                    );
                    hits += inside(shape, u, v) as usize;
                }
            }
            hits as f64 * step * step
        })
    })
}

/// The radius factor that gives shape `shape` the mean area of all shapes.
fn equal_area_scale(shape: usize) -> f64 {
    let areas = shape_areas();
    let mean = areas.iter().sum::<f64>() / areas.len() as f64;
    (mean / areas[shape]).sqrt()
}

/// Draws one `side × side` image of class `class` (see the module doc).
pub fn render<R: Rng + ?Sized>(class: usize, side: usize, rng: &mut R) -> RgbImage {
    let shape = class % SHAPES.len();
    let pattern = (class / SHAPES.len()) % PATTERNS.len();
    let s = side as f64;
    let px = s / 32.0; // lengths below are given for a 32-pixel side
    let mut img = vec![[0f64; 3]; side * side];
    // Background: bilinear field of a 3x3 grid of dark colours of any hue.
    let grid: Vec<[f64; 3]> = (0..9)
        .map(|_| {
            hsv(
                rng.random::<f64>(),
                rng.random_range(0.2..0.7),
                rng.random_range(0.1..0.35),
            )
        })
        .collect();
    for y in 0..side {
        for x in 0..side {
            let (gy, gx) = ((y as f64 + 0.5) / s * 2.0, (x as f64 + 0.5) / s * 2.0);
            let (i0, j0) = ((gy.floor() as usize).min(1), (gx.floor() as usize).min(1));
            let (fy, fx) = (gy - i0 as f64, gx - j0 as f64);
            let c = |i: usize, j: usize| grid[i * 3 + j];
            img[y * side + x] = std::array::from_fn(|ch| {
                c(i0, j0)[ch] * (1.0 - fy) * (1.0 - fx)
                    + c(i0 + 1, j0)[ch] * fy * (1.0 - fx)
                    + c(i0, j0 + 1)[ch] * (1.0 - fy) * fx
                    + c(i0 + 1, j0 + 1)[ch] * fy * fx
            });
        }
    }
    // Clutter: thin strokes, dimmer than the object.
    for _ in 0..rng.random_range(0..=4usize) {
        let colour = hsv(
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random_range(0.1..0.6),
        );
        let (cx, cy) = (rng.random_range(0.0..s), rng.random_range(0.0..s));
        let a = rng.random_range(0.0..std::f64::consts::PI);
        let half_len = rng.random_range(3.0..12.0) * px / 2.0;
        let (ca, sa) = (a.cos(), a.sin());
        for y in 0..side {
            for x in 0..side {
                let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
                if (-dx * sa + dy * ca).abs() <= 0.7 * px && (dx * ca + dy * sa).abs() <= half_len {
                    img[y * side + x] = colour;
                }
            }
        }
    }
    // The object.
    let radius = rng.random_range(0.33..0.4) * s * equal_area_scale(shape);
    let margin = 0.9 * radius;
    let (cx, cy) = if s > 2.0 * margin {
        (
            rng.random_range(margin..s - margin),
            rng.random_range(margin..s - margin),
        )
    } else {
        (s / 2.0, s / 2.0)
    };
    let mirror = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
    let fg = hsv(
        rng.random::<f64>(),
        rng.random_range(0.2..0.5),
        rng.random_range(0.6..0.95),
    );
    let fg_dark = fg.map(|c| c * 0.45);
    for y in 0..side {
        for x in 0..side {
            let u = mirror * (x as f64 + 0.5 - cx) / radius;
            let v = (cy - (y as f64 + 0.5)) / radius;
            if inside(shape, u, v) {
                img[y * side + x] = if dark(pattern, shape, u, v) {
                    fg_dark
                } else {
                    fg
                };
            }
        }
    }
    let data = img
        .iter()
        .flat_map(|p| p.map(|c| (c * 255.0 + 0.5).clamp(0.0, 255.0) as u8))
        .collect();
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
