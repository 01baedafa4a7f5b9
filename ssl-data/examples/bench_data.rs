//! `cargo run --release -p ssl-data --example bench_data`: images per second
//! of the loader on the training recipes of the paper's release, in the peer
//! baseline's line format (`ours | <what> | images/s | <value>`), to pair
//! with `xtask/peer/torch_peer.py aug`.
//!
//! - CIFAR recipe: 4096 random 32×32 images, 2 views, batch 256, 2 threads,
//!   one full epoch (the peer's measurement: one pass of its DataLoader with 2
//!   workers); the median of 5 epochs after one warm-up epoch.
//! - STL-10 recipe (96 → 64 crops), 2 views, 1 thread: images per second per core.
//! - ImageNet recipe: JPEG files (500×375, quality 90, procedurally drawn so
//!   they compress like photographs rather than noise) read through
//!   `ImageFolder`, decoded, 224 crop, jitter, blur; 2 views, 1 thread.

use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssl_data::{
    Dataset, DatasetKind, ImageFolder, InMemoryDataset, Loader, LoaderConfig, Pipeline, RgbImage,
    Sample,
};

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

fn write_jpegs(dir: &std::path::Path, n: usize) -> anyhow::Result<()> {
    let class_dir = dir.join("n00000000");
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
    Ok(())
}

fn main() -> anyhow::Result<()> {
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

    let stl = Loader::new(
        random_images(1024, 96, 1),
        Pipeline::ssl_small(DatasetKind::Stl10),
        LoaderConfig {
            threads: 1,
            ..LoaderConfig::new(256, 2, 0)
        },
    )?;
    let v = images_per_second(&stl, 3)?;
    println!("ours | STL-10 augmentation 96->64, 2 views, per core | images/s | {v:.0}");

    let dir = tempfile::tempdir()?;
    write_jpegs(dir.path(), 256)?;
    let imagenet = Loader::new(
        Arc::new(ImageFolder::open(dir.path())?),
        Pipeline::ssl_imagenet(),
        LoaderConfig {
            threads: 1,
            ..LoaderConfig::new(64, 2, 0)
        },
    )?;
    let v = images_per_second(&imagenet, 3)?;
    println!("ours | ImageNet augmentation (JPEG 500x375 decode, 224 crop, jitter, blur), 2 views, per core | images/s | {v:.0}");
    Ok(())
}
