//! The synthetic dataset: deterministic from its seed, written in CIFAR
//! format and read back by the real reader, balanced, and built so that
//! invariance is the point.
//!
//! Colour is a nuisance: a 1-NN on 4×4×4 colour histograms stays near the
//! 10 % of chance (a 5-NN on raw pixels is reported, not asserted: see the
//! test). The class is in the
//! shape: a descriptor that discards colour, position and scale (the bright
//! foreground's bounding box resampled to a 12×12 occupancy grid, made
//! mirror-symmetric) classifies it nearly perfectly with a 1-NN (1 000
//! train / 200 test images; the measured accuracies are in the assertion
//! messages and the report).

use ssl_data::{open_synthetic, write_synthetic_cifar, CifarSplit, Dataset, SyntheticConfig};

fn small(seed: u64) -> SyntheticConfig {
    SyntheticConfig {
        classes: 10,
        train_per_class: 100,
        test_per_class: 20,
        side: 32,
        seed,
    }
}

#[test]
fn writes_cifar10_files_read_back_balanced_and_deterministic() {
    let a = test_support::scratch_dir();
    let b = test_support::scratch_dir();
    let files = write_synthetic_cifar(a.path(), &small(0)).unwrap();
    assert_eq!(files.len(), 6);
    write_synthetic_cifar(b.path(), &small(0)).unwrap();
    for f in &files {
        let name = f.file_name().unwrap();
        assert_eq!(
            std::fs::read(f).unwrap(),
            std::fs::read(b.path().join(name)).unwrap(),
            "{name:?}"
        );
    }
    let c = test_support::scratch_dir();
    write_synthetic_cifar(c.path(), &small(1)).unwrap();
    assert_ne!(
        std::fs::read(a.path().join("test_batch.bin")).unwrap(),
        std::fs::read(c.path().join("test_batch.bin")).unwrap()
    );
    let train = open_synthetic(a.path(), &small(0), CifarSplit::Train).unwrap();
    let test = open_synthetic(a.path(), &small(0), CifarSplit::Test).unwrap();
    assert_eq!((train.len(), test.len()), (1000, 200));
    let mut counts = [0usize; 10];
    for i in 0..train.len() {
        counts[train.get(i).unwrap().label.unwrap() as usize] += 1;
    }
    assert_eq!(counts, [100; 10]);
    // Shuffled, not sorted by class.
    let first: Vec<_> = (0..10).map(|i| train.get(i).unwrap().label).collect();
    assert!(first.windows(2).any(|w| w[0] != w[1]));
}

#[test]
fn more_than_ten_classes_use_the_cifar100_layout_at_any_side() {
    let dir = test_support::scratch_dir();
    let cfg = SyntheticConfig {
        classes: 25,
        train_per_class: 2,
        test_per_class: 1,
        side: 20,
        seed: 3,
    };
    let files = write_synthetic_cifar(dir.path(), &cfg).unwrap();
    assert!(files.iter().any(|f| f.ends_with("train.bin")));
    let train = open_synthetic(dir.path(), &cfg, CifarSplit::Train).unwrap();
    assert_eq!(train.len(), 50);
    let s = train.get(0).unwrap();
    assert_eq!((s.image.width(), s.image.height()), (20, 20));
    let fine = s.label.unwrap() as usize;
    assert_eq!(
        train.coarse_label(0).unwrap(),
        Some((20 * fine / 25) as u32)
    );
    assert!(write_synthetic_cifar(
        dir.path(),
        &SyntheticConfig {
            classes: 101,
            ..cfg
        }
    )
    .is_err());
}

fn histogram(img: &ssl_data::RgbImage) -> Vec<f64> {
    let mut h = vec![0f64; 64];
    for p in img.as_raw().chunks_exact(3) {
        h[(p[0] as usize / 64) * 16 + (p[1] as usize / 64) * 4 + p[2] as usize / 64] += 1.0;
    }
    let n = (img.width() * img.height()) as f64;
    h.iter_mut().for_each(|v| *v /= n);
    h
}

fn knn_accuracy(train: &[(Vec<f64>, u32)], test: &[(Vec<f64>, u32)], k: usize) -> f64 {
    let mut correct = 0;
    for (x, y) in test {
        let mut d: Vec<(f64, u32)> = train
            .iter()
            .map(|(t, l)| (x.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).sum(), *l))
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut votes = [0usize; 10];
        for &(_, l) in &d[..k] {
            votes[l as usize] += 1;
        }
        let pred = (0..10)
            .max_by_key(|&c| (votes[c], std::cmp::Reverse(c)))
            .unwrap();
        correct += (pred == *y as usize) as usize;
    }
    correct as f64 / test.len() as f64
}

/// What a colour-, position- and scale-invariant view of the shape sees:
/// the foreground (the pixels brighter than anything else can be: value ≥
/// 0.6) cropped to its bounding box, resampled to a 12×12 occupancy grid
/// and averaged with its mirror image (a horizontal flip keeps the class).
fn shape_descriptor(img: &ssl_data::RgbImage) -> Vec<f64> {
    let (w, h) = (img.width(), img.height());
    let fg: Vec<bool> = img
        .as_raw()
        .chunks_exact(3)
        .map(|p| *p.iter().max().unwrap() >= 153)
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = (w, 0, h, 0);
    for y in 0..h {
        for x in 0..w {
            if fg[y * w + x] {
                (x0, x1, y0, y1) = (x0.min(x), x1.max(x + 1), y0.min(y), y1.max(y + 1));
            }
        }
    }
    const N: usize = 12;
    let mut d = vec![0f64; N * N];
    if x1 <= x0 || y1 <= y0 {
        return d;
    }
    for gy in 0..N {
        for gx in 0..N {
            let y = y0 + (gy * (y1 - y0) + (y1 - y0) / 2) / N;
            let x = x0 + (gx * (x1 - x0) + (x1 - x0) / 2) / N;
            let xm = x0 + x1 - 1 - x;
            d[gy * N + gx] = (fg[y * w + x] as u8 as f64 + fg[y * w + xm] as u8 as f64) / 2.0;
        }
    }
    d
}

#[test]
fn colour_is_a_nuisance_and_the_class_is_in_the_shape() {
    let dir = test_support::scratch_dir();
    let cfg = small(5);
    write_synthetic_cifar(dir.path(), &cfg).unwrap();
    let load = |split, f: &dyn Fn(&ssl_data::RgbImage) -> Vec<f64>| -> Vec<(Vec<f64>, u32)> {
        let ds = open_synthetic(dir.path(), &cfg, split).unwrap();
        (0..ds.len())
            .map(|i| {
                let s = ds.get(i).unwrap();
                (f(&s.image), s.label.unwrap())
            })
            .collect()
    };
    let accuracy = |f: &dyn Fn(&ssl_data::RgbImage) -> Vec<f64>, k| {
        knn_accuracy(&load(CifarSplit::Train, f), &load(CifarSplit::Test, f), k)
    };
    let hist_acc = accuracy(&histogram, 1);
    let raw = |img: &ssl_data::RgbImage| img.as_raw().iter().map(|&v| v as f64 / 255.0).collect();
    let raw_acc = accuracy(&raw, 5);
    let shape_acc = accuracy(&shape_descriptor, 1);
    eprintln!(
        "synthetic: histogram 1-NN {hist_acc:.3}, raw-pixel 5-NN {raw_acc:.3}, shape 1-NN {shape_acc:.3}"
    );
    // Chance is 0.10. Raw pixels are reported, not asserted near chance:
    // every object is large and near the centre (it has to be, for crops of
    // a fifth of the image to keep it), so the bright blob's outline lines
    // up between images of a class; colour statistics, which is what random
    // convolutional features mostly see, carry nothing.
    assert!(hist_acc < 0.2, "colour-histogram 1-NN accuracy {hist_acc}");
    assert!(
        shape_acc > 0.8,
        "shape-descriptor 1-NN accuracy {shape_acc}"
    );
    assert!(
        shape_acc > hist_acc + 0.6,
        "shape {shape_acc} vs colour histogram {hist_acc}"
    );
}

/// Several writers generating the same data into one folder at once (the
/// ranks of a data-parallel run do) never expose a partial file: a reader
/// polling the folder meanwhile sees each file either absent or whole.
/// Before files were renamed into place, a rank read a half-written
/// `test_batch.bin` ("not a whole number of 3073-byte records").
#[test]
fn concurrent_writers_never_expose_a_partial_file() {
    let dir = test_support::scratch_dir();
    let cfg = SyntheticConfig {
        train_per_class: 40,
        ..small(7)
    };
    let expected = {
        let other = test_support::scratch_dir();
        write_synthetic_cifar(other.path(), &cfg)
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f.file_name().unwrap().to_owned(),
                    std::fs::metadata(f).unwrap().len(),
                )
            })
            .collect::<Vec<_>>()
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut seen = 0usize;
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..3)
            .map(|_| s.spawn(|| write_synthetic_cifar(dir.path(), &cfg).unwrap()))
            .collect();
        let reader = s.spawn(|| {
            let mut checks = 0usize;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for (name, len) in &expected {
                    if let Ok(m) = std::fs::metadata(dir.path().join(name)) {
                        assert_eq!(m.len(), *len, "{name:?} seen partial");
                        checks += 1;
                    }
                }
            }
            checks
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        seen = reader.join().unwrap();
    });
    assert!(seen > 0, "the reader saw no file at all");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}
