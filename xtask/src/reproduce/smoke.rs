//! `reproduce --smoke`: Table 1's whole pipeline at toy scale on the CPU.
//!
//! Synthetic images are written in each dataset's *distribution* format, as
//! `cargo xtask download` unpacks it and as ssl-data's readers read it
//! (xtask cannot link ssl-data: it pulls in libtorch), so the real readers,
//! splits and evaluation transforms are exercised:
//!
//! - CIFAR-10 (`cifar-10-batches-bin/data_batch_{1..5}.bin`, `test_batch.bin`):
//!   records of 1 label byte then the R, G, B planes of 32×32 (row-major).
//! - CIFAR-100 (`cifar-100-binary/train.bin`, `test.bin`): a coarse label
//!   byte (`0..20`), a fine label byte (`0..100`), then the planes.
//! - STL-10 (`stl10_binary/{train,test,unlabeled}_X.bin`, `{train,test}_y.bin`):
//!   96×96×3 uint8 planes, each plane column-major; labels `1..=10`.
//! - Tiny-ImageNet (`tiny-imagenet-200/`): `wnids.txt`, `words.txt`,
//!   `train/<wnid>/images/<wnid>_<i>.JPEG` with `<wnid>_boxes.txt`,
//!   `val/images/val_<i>.JPEG` labelled by `val/val_annotations.txt`
//!   (`file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1`).
//!
//! Every class gets a colour and a stripe direction of its own plus noise,
//! so a trained encoder has something to find; sizes are a few dozen images
//! per class (ten classes; CIFAR-100 uses ten of its hundred fine labels).

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Classes written per dataset.
pub const CLASSES: usize = 10;
/// Training images per class (SSL and classifier split).
pub const TRAIN_PER_CLASS: usize = 10;
/// Test images per class.
pub const TEST_PER_CLASS: usize = 4;
/// STL-10's unlabeled images (part of its SSL split).
pub const STL_UNLABELED: usize = 32;

/// A small deterministic generator (xorshift64*), so the data is the same
/// on every machine without a dependency.
#[derive(Debug)]
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An RGB image (`side × side`, row-major, interleaved) of class `class`:
/// the class's colour, stripes at the class's angle, a random phase and
/// offset, and pixel noise.
pub fn class_image(class: usize, index: usize, side: usize) -> Vec<u8> {
    let mut rng = Noise::new((class as u64) << 32 | index as u64);
    let hue = class as f64 / CLASSES as f64;
    let base = [
        0.5 + 0.4 * (std::f64::consts::TAU * hue).cos(),
        0.5 + 0.4 * (std::f64::consts::TAU * (hue + 1.0 / 3.0)).cos(),
        0.5 + 0.4 * (std::f64::consts::TAU * (hue + 2.0 / 3.0)).cos(),
    ];
    let angle = std::f64::consts::PI * class as f64 / CLASSES as f64;
    let (s, c) = angle.sin_cos();
    let freq = 6.0 / side as f64 * (1.0 + (class % 3) as f64);
    let phase = rng.unit() * std::f64::consts::TAU;
    let mut out = Vec::with_capacity(side * side * 3);
    for y in 0..side {
        for x in 0..side {
            let t = (std::f64::consts::TAU * freq * (c * x as f64 + s * y as f64) + phase).sin();
            for b in base {
                let v = b * (0.75 + 0.25 * t) + 0.15 * (rng.unit() - 0.5);
                out.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
    }
    out
}

/// Interleaved RGB (row-major) to CIFAR's R, G, B planes (row-major).
fn to_planes(rgb: &[u8], side: usize) -> Vec<u8> {
    let mut out = vec![0u8; rgb.len()];
    for p in 0..side * side {
        for ch in 0..3 {
            out[ch * side * side + p] = rgb[3 * p + ch];
        }
    }
    out
}

/// Interleaved RGB (row-major) to STL-10's planes, each column-major:
/// byte `c·s² + x·s + y` is channel `c` of the pixel in column `x`, row `y`.
fn to_column_major_planes(rgb: &[u8], side: usize) -> Vec<u8> {
    let mut out = vec![0u8; rgb.len()];
    for y in 0..side {
        for x in 0..side {
            for ch in 0..3 {
                out[ch * side * side + x * side + y] = rgb[3 * (y * side + x) + ch];
            }
        }
    }
    out
}

/// `(class, index)` pairs of a split, classes interleaved (as the shuffled
/// real files are).
fn split(per_class: usize, offset: usize) -> Vec<(usize, usize)> {
    (0..per_class)
        .flat_map(|i| (0..CLASSES).map(move |c| (c, offset + i)))
        .collect()
}

/// CIFAR-100 fine label of smoke class `c` (ten of the hundred) and its
/// coarse label (the fine labels 5k..5k+4 share coarse label k here).
fn cifar100_labels(c: usize) -> (u8, u8) {
    let fine = (c * 10) as u8;
    (fine / 5, fine)
}

pub fn write_cifar10(root: &Path) -> Result<()> {
    let dir = root.join("cifar-10-batches-bin");
    fs::create_dir_all(&dir)?;
    let train = split(TRAIN_PER_CLASS, 0);
    // Five training batches, as the distribution has.
    let per_file = train.len().div_ceil(5);
    for (i, chunk) in train.chunks(per_file).enumerate() {
        let mut bytes = Vec::new();
        for &(c, idx) in chunk {
            bytes.push(c as u8);
            bytes.extend(to_planes(&class_image(c, idx, 32), 32));
        }
        fs::write(dir.join(format!("data_batch_{}.bin", i + 1)), bytes)?;
    }
    let mut bytes = Vec::new();
    for (c, idx) in split(TEST_PER_CLASS, 1000) {
        bytes.push(c as u8);
        bytes.extend(to_planes(&class_image(c, idx, 32), 32));
    }
    fs::write(dir.join("test_batch.bin"), bytes)?;
    fs::write(
        dir.join("batches.meta.txt"),
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n",
    )?;
    Ok(())
}

pub fn write_cifar100(root: &Path) -> Result<()> {
    let dir = root.join("cifar-100-binary");
    fs::create_dir_all(&dir)?;
    for (name, per_class, offset) in [
        ("train.bin", TRAIN_PER_CLASS, 0),
        ("test.bin", TEST_PER_CLASS, 1000),
    ] {
        let mut bytes = Vec::new();
        for (c, idx) in split(per_class, offset) {
            let (coarse, fine) = cifar100_labels(c);
            bytes.push(coarse);
            bytes.push(fine);
            bytes.extend(to_planes(&class_image(c, idx, 32), 32));
        }
        fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

pub fn write_stl10(root: &Path) -> Result<()> {
    let dir = root.join("stl10_binary");
    fs::create_dir_all(&dir)?;
    const SIDE: usize = 96;
    for (name, per_class, offset) in [
        ("train", TRAIN_PER_CLASS / 2, 0),
        ("test", TEST_PER_CLASS, 1000),
    ] {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (c, idx) in split(per_class, offset) {
            x.extend(to_column_major_planes(&class_image(c, idx, SIDE), SIDE));
            y.push(c as u8 + 1);
        }
        fs::write(dir.join(format!("{name}_X.bin")), x)?;
        fs::write(dir.join(format!("{name}_y.bin")), y)?;
    }
    let mut x = Vec::new();
    for i in 0..STL_UNLABELED {
        x.extend(to_column_major_planes(
            &class_image(i % CLASSES, 2000 + i, SIDE),
            SIDE,
        ));
    }
    fs::write(dir.join("unlabeled_X.bin"), x)?;
    fs::write(
        dir.join("class_names.txt"),
        "airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n",
    )?;
    Ok(())
}

fn jpeg(path: &Path, rgb: &[u8], side: usize) -> Result<()> {
    let img = image::RgbImage::from_raw(side as u32, side as u32, rgb.to_vec())
        .context("image buffer size")?;
    img.save_with_format(path, image::ImageFormat::Jpeg)
        .with_context(|| format!("writing {}", path.display()))
}

/// The WordNet-style id of smoke class `c`.
pub fn wnid(c: usize) -> String {
    format!("n{:08}", 1_000_000 + c)
}

pub fn write_tiny_imagenet(root: &Path) -> Result<()> {
    let dir = root.join("tiny-imagenet-200");
    const SIDE: usize = 64;
    let wnids: Vec<String> = (0..CLASSES).map(wnid).collect();
    fs::create_dir_all(dir.join("val/images"))?;
    fs::create_dir_all(dir.join("test/images"))?;
    fs::write(dir.join("wnids.txt"), wnids.join("\n") + "\n")?;
    let words: String = wnids
        .iter()
        .enumerate()
        .map(|(c, w)| format!("{w}\tsmoke class {c}\n"))
        .collect();
    fs::write(dir.join("words.txt"), words)?;
    for (c, w) in wnids.iter().enumerate() {
        let images = dir.join("train").join(w).join("images");
        fs::create_dir_all(&images)?;
        let mut boxes = String::new();
        for i in 0..TRAIN_PER_CLASS {
            let name = format!("{w}_{i}.JPEG");
            jpeg(&images.join(&name), &class_image(c, i, SIDE), SIDE)?;
            boxes.push_str(&format!("{name}\t0\t0\t63\t63\n"));
        }
        fs::write(
            dir.join("train").join(w).join(format!("{w}_boxes.txt")),
            boxes,
        )?;
    }
    let mut ann = String::new();
    for (i, (c, idx)) in split(TEST_PER_CLASS, 1000).into_iter().enumerate() {
        let name = format!("val_{i}.JPEG");
        jpeg(
            &dir.join("val/images").join(&name),
            &class_image(c, idx, SIDE),
            SIDE,
        )?;
        ann.push_str(&format!("{name}\t{}\t0\t0\t63\t63\n", wnids[c]));
    }
    fs::write(dir.join("val/val_annotations.txt"), ann)?;
    // The distribution's unlabeled test images (no reader uses them).
    jpeg(
        &dir.join("test/images/test_0.JPEG"),
        &class_image(0, 3000, SIDE),
        SIDE,
    )?;
    Ok(())
}

/// Writes the smoke version of `dataset` under `root` (idempotent: a
/// complete earlier copy, marked by a stamp file, is kept).
pub fn write_dataset(root: &Path, dataset: &str) -> Result<()> {
    let stamp = root.join(format!(".smoke-{dataset}.ok"));
    if stamp.exists() {
        return Ok(());
    }
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    match dataset {
        "cifar10" => write_cifar10(root),
        "cifar100" => write_cifar100(root),
        "stl10" => write_stl10(root),
        "tiny-imagenet" => write_tiny_imagenet(root),
        other => bail!("no smoke data for dataset {other}"),
    }
    .with_context(|| format!("writing the smoke {dataset} under {}", root.display()))?;
    fs::write(&stamp, "ok\n")?;
    Ok(())
}

/// The `--set` overrides that shrink a preset to toy scale (the caller sets
/// `optim.epochs=1`): a ResNet-18 at 1/8 width, batches of 32, training
/// crops of half the usual size (evaluation keeps the dataset's own
/// transform), a 20-epoch linear probe, and embedding/whitening sizes that
/// keep each method's constraints (CW: `emb/groups > w_size`; BW (W-MSE):
/// `w_size > emb`; `w_size` divides the batch). `method` is the preset's
/// `method.name`.
pub fn overrides(method: &str, dataset: &str) -> Vec<String> {
    let crop = match dataset {
        "cifar10" | "cifar100" => 16,
        _ => 32,
    };
    let mut o: Vec<String> = [
        "data.batch_size=32",
        "model.width=0.125",
        "model.head_size=64",
        "optim.warmup_iters=2",
        "eval.linear_epochs=20",
        "run.log_every=1",
        "data.workers=2",
    ]
    .map(String::from)
    .to_vec();
    o.push(format!("data.crop={crop}"));
    let sizes: &[&str] = match method {
        "cw-rgp" | "cw" | "cw-gp" => &["model.emb=64", "method.w_size=8"],
        "w-mse" => &["model.emb=16", "method.w_size=32"],
        "shuffled-dbn" => &["model.emb=32", "method.w_size=8"],
        _ => &["model.emb=32"],
    };
    o.extend(sizes.iter().map(|s| s.to_string()));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_readers_record_sizes() {
        let dir = tempfile::tempdir().unwrap();
        for ds in ["cifar10", "cifar100", "stl10", "tiny-imagenet"] {
            write_dataset(dir.path(), ds).unwrap();
        }
        let train = CLASSES * TRAIN_PER_CLASS;
        let test = CLASSES * TEST_PER_CLASS;
        let c10 = dir.path().join("cifar-10-batches-bin");
        let total: u64 = (1..=5)
            .map(|i| {
                fs::metadata(c10.join(format!("data_batch_{i}.bin")))
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(total as usize, train * 3073);
        let t = fs::read(c10.join("test_batch.bin")).unwrap();
        assert_eq!(t.len(), test * 3073);
        assert!(t.chunks(3073).all(|r| r[0] < 10));
        let c100 = fs::read(dir.path().join("cifar-100-binary/train.bin")).unwrap();
        assert_eq!(c100.len(), train * 3074);
        assert!(c100
            .chunks(3074)
            .all(|r| r[0] < 20 && r[1] < 100 && r[1] / 5 == r[0]));
        let stl = dir.path().join("stl10_binary");
        let y = fs::read(stl.join("train_y.bin")).unwrap();
        let x = fs::metadata(stl.join("train_X.bin")).unwrap().len() as usize;
        assert_eq!(x, y.len() * 96 * 96 * 3);
        assert!(y.iter().all(|&l| (1..=10).contains(&l)));
        let tiny = dir.path().join("tiny-imagenet-200");
        let ann = fs::read_to_string(tiny.join("val/val_annotations.txt")).unwrap();
        assert_eq!(ann.lines().count(), test);
        for line in ann.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 6);
            let img = image::open(tiny.join("val/images").join(f[0])).unwrap();
            assert_eq!((img.width(), img.height()), (64, 64));
        }
    }

    #[test]
    fn stl_planes_are_column_major() {
        let side = 3;
        let rgb: Vec<u8> = (0..27).collect();
        let planes = to_column_major_planes(&rgb, side);
        // Pixel (x = 2, y = 0) channel 1 is rgb[3·2 + 1] = 7, stored at 1·9 + 2·3 + 0.
        assert_eq!(planes[9 + 6], 7);
        // Pixel (x = 0, y = 2) channel 0 is rgb[3·6] = 18, stored at 0·9 + 0·3 + 2.
        assert_eq!(planes[2], 18);
        let cifar = to_planes(&rgb, side);
        // Row-major planes: pixel (x = 2, y = 0) channel 1 at 9 + 2.
        assert_eq!(cifar[9 + 2], 7);
    }
}
