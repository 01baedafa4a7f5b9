//! `cargo run --release -p ssl-data --example bench_jpeg [-- DIR]`: where
//! the time of the ImageNet recipe goes, per image on one core (2 views;
//! each item timed 5 times and the least kept, so that a shared machine's
//! noise stays out):
//! reading the file, decoding it whole or only the region the two crops
//! need, the bilinear `RandomResizedCrop`, colour jitter, grayscale,
//! Pillow's blur, flip, normalisation; then the loader's images/s with 1
//! and 2 threads, decoding whole and in part.
//!
//! `--loader` measures the loader only. `DIR` is an image-folder root (`DIR/<class>/*.JPEG`); without it, 256
//! JPEGs of 500×375 at quality 90 are written to a temporary folder, as
//! `bench_data` writes them.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ssl_data::augment::color_jitter::{apply_jitter, ColorJitter};
use ssl_data::augment::flip::hflip;
use ssl_data::augment::gaussian_blur::{gaussian_blur, GaussianBlur};
use ssl_data::augment::grayscale::to_grayscale;
use ssl_data::augment::random_resized_crop::{resized_crop, CropBox, RandomResizedCrop};
use ssl_data::augment::resize::Interpolation;
use ssl_data::{jpeg, Dataset, ImageFolder, Loader, LoaderConfig, Pipeline, RgbImage};

fn write_jpegs(dir: &Path, n: usize) -> anyhow::Result<()> {
    let class_dir = dir.join("n00000000");
    std::fs::create_dir_all(&class_dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..n {
        let small = ssl_data::synthetic::render(i % 10, 125, &mut rng);
        let img = ssl_data::augment::resize::resize(&small, 500, 375, Interpolation::Bicubic)?;
        let file = std::fs::File::create(class_dir.join(format!("{i}.JPEG")))?;
        let mut enc =
            image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90);
        enc.encode(img.as_raw(), 500, 375, image::ExtendedColorType::Rgb8)?;
    }
    Ok(())
}

/// Mean microseconds per call of `f` over `items`, each item's time the
/// least of 5 calls (the machine may be shared: the least is the run
/// least disturbed by other processes).
fn per_item<T>(items: &[T], mut f: impl FnMut(&T)) -> f64 {
    let total: f64 = items
        .iter()
        .map(|item| {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    f(item);
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .sum();
    total * 1e6 / items.len() as f64
}

fn union(a: CropBox, b: CropBox) -> CropBox {
    let (l, t) = (a.left.min(b.left), a.top.min(b.top));
    let (r, bt) = (
        (a.left + a.width).max(b.left + b.width),
        (a.top + a.height).max(b.top + b.height),
    );
    CropBox {
        top: t,
        left: l,
        height: bt - t,
        width: r - l,
    }
}

/// This process's CPU time (user + system, all threads) in seconds, from
/// `/proc/self/stat` (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    // After the command name: state is field 3, utime 14 and stime 15 (in
    // clock ticks of 1/100 s on Linux).
    let tick = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(14) + tick(15)) / 100.0
}

/// Median images per second over `epochs` epochs after a warm-up epoch,
/// by the wall clock and per second of this process's CPU time.
fn images_per_second<D: Dataset + 'static>(
    loader: &Loader<D>,
    epochs: u64,
) -> anyhow::Result<(f64, f64)> {
    let mut rates = Vec::new();
    let mut cpu_rates = Vec::new();
    for epoch in 0..=epochs {
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let mut n = 0;
        for batch in loader.epoch(epoch) {
            n += batch?.indices.len();
        }
        if epoch > 0 {
            rates.push(n as f64 / start.elapsed().as_secs_f64());
            cpu_rates.push(n as f64 / (cpu_seconds() - cpu).max(1e-9));
        }
    }
    rates.sort_by(f64::total_cmp);
    cpu_rates.sort_by(f64::total_cmp);
    Ok((rates[rates.len() / 2], cpu_rates[cpu_rates.len() / 2]))
}

fn main() -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let loader_only = std::env::args().any(|a| a == "--loader");
    let root = match std::env::args().skip(1).find(|a| a != "--loader") {
        Some(d) => d.into(),
        None => {
            write_jpegs(temp.path(), 256)?;
            temp.path().to_path_buf()
        }
    };
    let folder = ImageFolder::open(&root)?;
    let files: Vec<Vec<u8>> = folder
        .entries()
        .iter()
        .map(|(p, _)| std::fs::read(p))
        .collect::<Result<_, _>>()?;
    let n = files.len();
    if loader_only {
        return loader_rates(folder);
    }

    let read = per_item(folder.entries(), |(p, _)| {
        std::hint::black_box(std::fs::read(p).unwrap());
    });
    let full = per_item(&files, |b| {
        std::hint::black_box(jpeg::decode(b).unwrap());
    });
    let header = per_item(&files, |b| {
        std::hint::black_box(jpeg::read_header(b).unwrap());
    });
    let half = per_item(&files, |b| {
        std::hint::black_box(jpeg::decode_scaled(b, 4).unwrap());
    });
    let images: Vec<RgbImage> = files.iter().map(|b| jpeg::decode(b).unwrap()).collect();

    // Two views' random draws per image, as the recipe makes them.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let rrc = RandomResizedCrop::new(224).with_interpolation(Interpolation::Bilinear);
    let jitter = ColorJitter::ssl_default();
    let blur = GaussianBlur::imagenet();
    struct View {
        crop: CropBox,
        jitter: Option<ssl_data::augment::color_jitter::JitterParams>,
        gray: bool,
        blur: Option<f32>,
        flip: bool,
    }
    let views: Vec<[View; 2]> = images
        .iter()
        .map(|img| {
            std::array::from_fn(|_| View {
                crop: rrc.sample_box(img.height(), img.width(), &mut rng),
                jitter: (rng.random::<f64>() < 0.8).then(|| jitter.sample(&mut rng)),
                gray: rng.random::<f64>() < 0.2,
                blur: (rng.random::<f64>() < 0.5).then(|| blur.sample_radius(&mut rng)),
                flip: rng.random::<f64>() < 0.5,
            })
        })
        .collect();
    let idx: Vec<usize> = (0..n).collect();
    let region = per_item(&idx, |&i| {
        let h = jpeg::read_header(&files[i]).unwrap();
        let u = union(views[i][0].crop, views[i][1].crop);
        std::hint::black_box(jpeg::decode_region(&files[i], &h, u).unwrap());
    });
    let crops: Vec<[RgbImage; 2]> = idx
        .iter()
        .map(|&i| {
            std::array::from_fn(|v| {
                resized_crop(
                    &images[i],
                    views[i][v].crop,
                    224,
                    224,
                    Interpolation::Bilinear,
                )
                .unwrap()
            })
        })
        .collect();
    let t_crop = per_item(&idx, |&i| {
        for v in &views[i] {
            std::hint::black_box(
                resized_crop(&images[i], v.crop, 224, 224, Interpolation::Bilinear).unwrap(),
            );
        }
    });
    let t_jitter = per_item(&idx, |&i| {
        for (v, c) in views[i].iter().zip(&crops[i]) {
            if let Some(p) = &v.jitter {
                let mut x = c.clone();
                apply_jitter(&mut x, p);
                std::hint::black_box(x);
            }
        }
    });
    let t_gray = per_item(&idx, |&i| {
        for (v, c) in views[i].iter().zip(&crops[i]) {
            if v.gray {
                let mut x = c.clone();
                to_grayscale(&mut x);
                std::hint::black_box(x);
            }
        }
    });
    let t_blur = per_item(&idx, |&i| {
        for (v, c) in views[i].iter().zip(&crops[i]) {
            if let Some(r) = v.blur {
                std::hint::black_box(gaussian_blur(c, r).unwrap());
            }
        }
    });
    let t_flip = per_item(&idx, |&i| {
        for (v, c) in views[i].iter().zip(&crops[i]) {
            if v.flip {
                let mut x = c.clone();
                hflip(&mut x);
                std::hint::black_box(x);
            }
        }
    });
    let norm = *Pipeline::ssl_imagenet().normalization();
    let mut out = vec![0f32; 3 * 224 * 224];
    let t_norm = per_item(&idx, |&i| {
        for c in &crops[i] {
            norm.apply_into(c, &mut out).unwrap();
        }
    });
    let t_clone = per_item(&idx, |&i| {
        for c in &crops[i] {
            std::hint::black_box(c.clone());
        }
    });
    // What DCT-domain scaling (opt-in: jpeg::decode_scaled) does to the
    // pixels: each image resized whole (bilinear) from the 1/2 decode,
    // against the same from the exact decode; to 112x112 (the 1/2 decode
    // still has more pixels than the output) and to 224x224 (it has fewer
    // rows than the output: what scaling a 375-row image for a 224 crop does).
    for side in [112, 224] {
        let (mut sum, mut max, mut count) = (0u64, 0u8, 0usize);
        for (b, img) in files.iter().zip(&images) {
            let exact =
                ssl_data::augment::resize::resize(img, side, side, Interpolation::Bilinear)?;
            let small = jpeg::decode_scaled(b, 4).map_err(anyhow::Error::msg)?;
            let approx =
                ssl_data::augment::resize::resize(&small, side, side, Interpolation::Bilinear)?;
            for (&x, &y) in exact.as_raw().iter().zip(approx.as_raw()) {
                let d = x.abs_diff(y);
                sum += d as u64;
                max = max.max(d);
                count += 1;
            }
        }
        println!(
            "dct-scaling | 1/2 decode then resize to {side}x{side} vs exact | mean |Δ| {:.2} levels, max {max}",
            sum as f64 / count as f64
        );
    }
    println!("stage | µs per image (2 views, one core) over {n} files");
    for (what, t) in [
        ("read file", read),
        ("read the JPEG header", header),
        ("decode whole (libjpeg-turbo)", full),
        ("decode whole at 1/2 scale (DCT domain: other pixels)", half),
        ("decode the two crops' union", region),
        ("RandomResizedCrop bilinear x2", t_crop),
        ("colour jitter (p 0.8) x2", t_jitter - 0.8 * t_clone),
        ("grayscale (p 0.2) x2", t_gray - 0.2 * t_clone),
        ("Pillow blur (p 0.5) x2", t_blur),
        ("flip (p 0.5) x2", t_flip - 0.5 * t_clone),
        ("to tensor + normalise x2", t_norm),
    ] {
        println!("stage | {what} | {t:.0}");
    }

    loader_rates(folder)
}

/// The loader's images/s on the ImageNet recipe with 1 and 2 threads.
fn loader_rates(folder: ImageFolder) -> anyhow::Result<()> {
    let folder = Arc::new(folder);
    for threads in [1, 2] {
        let loader = Loader::new(
            Arc::clone(&folder),
            Pipeline::ssl_imagenet(),
            LoaderConfig {
                threads,
                ..LoaderConfig::new(64, 2, 0)
            },
        )?;
        let (v, per_cpu) = images_per_second(&loader, 3)?;
        println!("ours | ImageNet recipe, 2 views, {threads} thread(s) | images/s | {v:.0}");
        println!(
            "ours | ImageNet recipe, 2 views, {threads} thread(s) | images per CPU-second | {per_cpu:.0}"
        );
    }
    Ok(())
}
