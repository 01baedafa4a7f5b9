//! Goodness of fit of the sampled augmentation parameters (fixed seeds):
//! RandomResizedCrop boxes against torchvision's own `get_params` (two-sample
//! Kolmogorov–Smirnov), ColorJitter factors against their uniform laws
//! (one-sample KS) and its order against the uniform law on the 24
//! permutations (χ²).
//!
//! Critical values at α = 0.001: KS two-sample `1.949 √((n + m)/(n m))`,
//! one-sample `1.949 / √n` (asymptotic Kolmogorov quantile); χ² with 23
//! degrees of freedom 49.73. With fixed seeds the tests are deterministic; a
//! wrong law (e.g. uniform instead of log-uniform ratio, missing fallback,
//! off-by-one placement) exceeds these by far at these sample sizes.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssl_data::augment::color_jitter::ColorJitter;
use ssl_data::augment::random_resized_crop::RandomResizedCrop;
use tch::Tensor;

const N: usize = 20_000;
const KS_C: f64 = 1.949;

/// `sup |F₁ − F₂|` of two samples.
fn ks_two_sample(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// `sup |F_n − F|` against the uniform law on `[lo, hi]`.
fn ks_uniform(x: &[f64], lo: f64, hi: f64) -> f64 {
    let mut x = x.to_vec();
    x.sort_by(f64::total_cmp);
    let n = x.len() as f64;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let f = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

const TORCH_BOXES: &str = r#"
import sys
import numpy as np
import torch
import torchvision.transforms as T
n, side, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
img = torch.zeros(3, side, side)
boxes = [T.RandomResizedCrop.get_params(img, [0.2, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]
np.save(out, np.array(boxes, dtype=np.int64))
"#;

fn compare_boxes(side: usize) {
    let dir = test_support::scratch_dir();
    let path = dir.path().join("boxes.npy");
    test_support::run_python(
        TORCH_BOXES,
        &[&N.to_string(), &side.to_string(), path.to_str().unwrap()],
    );
    let theirs = Vec::<i64>::try_from(&Tensor::read_npy(&path).unwrap().flatten(0, -1)).unwrap();
    let rrc = RandomResizedCrop::new(side);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let ours: Vec<[f64; 4]> = (0..N)
        .map(|_| {
            let b = rrc.sample_box(side, side, &mut rng);
            [b.top as f64, b.left as f64, b.height as f64, b.width as f64]
        })
        .collect();
    let theirs: Vec<[f64; 4]> = theirs
        .chunks_exact(4)
        .map(|c| [c[0] as f64, c[1] as f64, c[2] as f64, c[3] as f64])
        .collect();
    let area = |v: &[[f64; 4]]| -> Vec<f64> { v.iter().map(|b| b[2] * b[3]).collect() };
    let ratio = |v: &[[f64; 4]]| -> Vec<f64> { v.iter().map(|b| (b[3] / b[2]).ln()).collect() };
    let top = |v: &[[f64; 4]]| -> Vec<f64> { v.iter().map(|b| b[0]).collect() };
    let left = |v: &[[f64; 4]]| -> Vec<f64> { v.iter().map(|b| b[1]).collect() };
    let crit = KS_C * (2.0 / N as f64).sqrt();
    for (name, f) in [
        ("area", &area as &dyn Fn(&[[f64; 4]]) -> Vec<f64>),
        ("log ratio", &ratio),
        ("top", &top),
        ("left", &left),
    ] {
        let d = ks_two_sample(&f(&ours), &f(&theirs));
        eprintln!("{side}x{side} crop {name}: KS D = {d:.4} (critical {crit:.4})");
        assert!(
            d < crit,
            "{side}x{side} crop {name}: KS D = {d:.4} >= {crit:.4}"
        );
    }
}

#[test]
fn crop_boxes_follow_torchvision_distribution_224() {
    compare_boxes(224);
}

#[test]
fn crop_boxes_follow_torchvision_distribution_32() {
    compare_boxes(32);
}

#[test]
fn jitter_factors_are_uniform_and_orders_uniform() {
    let cj = ColorJitter::ssl_default();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let draws: Vec<_> = (0..N).map(|_| cj.sample(&mut rng)).collect();
    let crit = KS_C / (N as f64).sqrt();
    let get =
        |f: &dyn Fn(&ssl_data::augment::color_jitter::JitterParams) -> Option<f32>| -> Vec<f64> {
            draws.iter().map(|p| f(p).unwrap() as f64).collect()
        };
    for (name, x, lo, hi) in [
        ("brightness", get(&|p| p.brightness), 0.6, 1.4),
        ("contrast", get(&|p| p.contrast), 0.6, 1.4),
        ("saturation", get(&|p| p.saturation), 0.6, 1.4),
        ("hue", get(&|p| p.hue), -0.1, 0.1),
    ] {
        let d = ks_uniform(&x, lo, hi);
        eprintln!("{name}: KS D = {d:.4} (critical {crit:.4})");
        assert!(d < crit, "{name}: KS D = {d:.4} >= {crit:.4}");
        assert!(
            x.iter().all(|&v| (lo..=hi).contains(&v)),
            "{name} out of range"
        );
    }
    // Order: a permutation of 0..4, each of the 24 equally likely.
    let mut counts = std::collections::HashMap::new();
    for p in &draws {
        let mut sorted = p.order;
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3]);
        *counts.entry(p.order).or_insert(0usize) += 1;
    }
    assert_eq!(counts.len(), 24);
    let e = N as f64 / 24.0;
    let chi2: f64 = counts.values().map(|&c| (c as f64 - e).powi(2) / e).sum();
    eprintln!("order: chi-square {chi2:.1} (critical 49.73)");
    assert!(
        chi2 < 49.73,
        "order chi-square {chi2:.1} >= 49.73 (23 dof, alpha 0.001)"
    );
}

#[test]
fn crop_fallback_is_torchvisions_central_crop() {
    // A 1x40 strip: no box with a ratio in [3/4, 4/3] fits, so every draw
    // ends in the fallback: ratio 40 > 4/3, h = 1, w = round(1 * 4/3) = 1, centred.
    let rrc = RandomResizedCrop::new(8);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let b = rrc.sample_box(1, 40, &mut rng);
    assert_eq!((b.top, b.left, b.height, b.width), (0, 19, 1, 1));
    // 40x10 (tall, ratio 0.25 < 3/4): w = 10, h = round(10 / 0.75) = 13, top = (40 - 13) / 2 = 13.
    let b = ssl_data::augment::random_resized_crop::central_fallback(40, 10, (0.75, 4.0 / 3.0));
    assert_eq!((b.top, b.left, b.height, b.width), (13, 0, 13, 10));
}
