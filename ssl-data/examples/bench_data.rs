//! `cargo run --release -p ssl-data --example bench_data [-- --data DIR]`:
//! images per second of the loader on the training recipes of the paper's
//! release (CIFAR, STL-10, ImageNet), in the peer's line format
//! (`ours | <what> | images/s | <value>`), to pair with
//! `xtask/peer/torch_peer.py aug` (`cargo xtask bench data` runs both).
//!
//! - CIFAR recipe: 4096 random 32×32 images in memory, 2 views, batch 256,
//!   2 threads (the peer: a `DataLoader` with 2 workers).
//! - STL-10 recipe (96 → 64 crops), 2 views, batch 256: 512 `train` + 512
//!   `unlabeled` random images written in STL-10's binary layout and read
//!   back through [`Stl10`] (the peer: torchvision's `STL10` on the same
//!   files), on 1 thread (per core) and on 2.
//! - ImageNet recipe: 256 JPEG files (500×375, quality 90, procedurally
//!   drawn so they compress like photographs rather than noise) read through
//!   [`ImageFolder`], decoded, 224 crop, jitter, blur; 2 views, batch 64, on
//!   1 thread (per core) and on 2.
//!
//! Each figure is the median of the epochs after one warm-up epoch.
//! `--data DIR` writes the STL-10 and ImageNet files into DIR
//! (`stl10_binary/`, `imagenet/`) and leaves them there, for the peer to
//! read the same files; without it they go to a temporary folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssl_data::{
    Dataset, DatasetKind, ImageFolder, InMemoryDataset, Loader, LoaderConfig, Pipeline, RgbImage,
    Sample, Stl10, Stl10Split,
};

/// STL-10 images written per file (`train_X.bin`, `unlabeled_X.bin`).
const STL10_TRAIN: usize = 512;
const STL10_UNLABELED: usize = 512;
/// ImageNet JPEGs written.
const IMAGENET_IMAGES: usize = 256;

fn random_images(n: usize, side: usize, seed: u64) -> Arc<InMemoryDataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let samples = (0..n)
        .map(|_| Sample {
            image: RgbImage::from_raw(
                side,
                side,
                (0..3 * side * side).map(|_| rng.random()).collect(),
            )
            .expect("3 side² bytes"),
            label: Some(0),
        })
        .collect();
    Arc::new(InMemoryDataset::new(samples, 1).expect("labels in range"))
}

/// Median images per second over `epochs` epochs after one warm-up epoch.
fn images_per_second<D: Dataset + 'static>(loader: &Loader<D>, epochs: u64) -> anyhow::Result<f64> {
    let mut rates = Vec::new();
    for epoch in 0..=epochs {
        let start = Instant::now();
        let mut n = 0;
        for batch in loader.epoch(epoch) {
            n += batch?.indices.len();
        }
        if epoch > 0 {
            rates.push(n as f64 / start.elapsed().as_secs_f64());
        }
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

/// STL-10's binary layout with random pixels: `train_X.bin` (+ labels
/// `train_y.bin`, `1..=10`) and `unlabeled_X.bin` in `dir/stl10_binary`.
fn write_stl10(dir: &Path) -> anyhow::Result<PathBuf> {
    let folder = dir.join("stl10_binary");
    std::fs::create_dir_all(&folder)?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let image_bytes = 3 * ssl_data::stl10::STL10_SIDE * ssl_data::stl10::STL10_SIDE;
    let mut random_bytes = |n: usize| (0..n).map(|_| rng.random()).collect::<Vec<u8>>();
    std::fs::write(
        folder.join("train_X.bin"),
        random_bytes(STL10_TRAIN * image_bytes),
    )?;
    std::fs::write(
        folder.join("unlabeled_X.bin"),
        random_bytes(STL10_UNLABELED * image_bytes),
    )?;
    let labels: Vec<u8> = (0..STL10_TRAIN).map(|i| 1 + (i % 10) as u8).collect();
    std::fs::write(folder.join("train_y.bin"), labels)?;
    Ok(folder)
}

/// `n` JPEGs of one class in `dir/imagenet/n00000000`; returns `dir/imagenet`.
fn write_jpegs(dir: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let root = dir.join("imagenet");
    let class_dir = root.join("n00000000");
    std::fs::create_dir_all(&class_dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..n {
        // A synthetic scene at 500x375: draw at 125x94 and upscale for smooth content.
        let small = ssl_data::synthetic::render(i % 10, 125, &mut rng);
        let img = ssl_data::augment::resize::resize(
            &small,
            500,
            375,
            ssl_data::augment::resize::Interpolation::Bicubic,
        )?;
        let file = std::fs::File::create(class_dir.join(format!("{i}.JPEG")))?;
        let mut enc =
            image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90);
        enc.encode(img.as_raw(), 500, 375, image::ExtendedColorType::Rgb8)?;
    }
    Ok(root)
}

#[derive(Debug, Parser)]
#[command(about = "Images per second of the loader on the CIFAR, STL-10 and ImageNet recipes")]
struct Args {
    /// Write the STL-10 and ImageNet files into DIR and keep them there (for
    /// the peer to read the same files); without it, a temporary folder.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

/// The two loader set-ups of the STL-10 and ImageNet figures.
const PER_CORE_AND_TWO: [(usize, &str); 2] = [(1, "per core"), (2, "DataLoader with 2 workers")];

fn main() -> anyhow::Result<()> {
    let given = Args::parse().data;
    let temp = tempfile::tempdir()?;
    let dir = given.as_deref().unwrap_or(temp.path());
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let cifar = Loader::new(
        random_images(4096, 32, 0),
        Pipeline::ssl_small(DatasetKind::Cifar10),
        LoaderConfig {
            threads: 2,
            ..LoaderConfig::new(256, 2, 0)
        },
    )?;
    let v = images_per_second(&cifar, 5)?;
    println!("ours | CIFAR augmentation, 2 views, DataLoader with 2 workers | images/s | {v:.0}");

    let stl_dir = write_stl10(dir)?;
    let stl = Arc::new(Stl10::open(&stl_dir, Stl10Split::TrainUnlabeled)?);
    for (threads, how) in PER_CORE_AND_TWO {
        let loader = Loader::new(
            Arc::clone(&stl),
            Pipeline::ssl_small(DatasetKind::Stl10),
            LoaderConfig {
                threads,
                ..LoaderConfig::new(256, 2, 0)
            },
        )?;
        let v = images_per_second(&loader, 3)?;
        println!("ours | STL-10 augmentation 96->64, 2 views, {how} | images/s | {v:.0}");
    }

    let folder = Arc::new(ImageFolder::open(&write_jpegs(dir, IMAGENET_IMAGES)?)?);
    for (threads, how) in PER_CORE_AND_TWO {
        let loader = Loader::new(
            Arc::clone(&folder),
            Pipeline::ssl_imagenet(),
            LoaderConfig {
                threads,
                ..LoaderConfig::new(64, 2, 0)
            },
        )?;
        let v = images_per_second(&loader, 3)?;
        println!("ours | ImageNet augmentation (JPEG 500x375 decode, 224 crop, jitter, blur), 2 views, {how} | images/s | {v:.0}");
    }
    Ok(())
}
