//! The `--dry-run` estimate of GPU hours.
//!
//! Where the numbers come from: cost = (SSL images per epoch, rounded down
//! to whole batches) × views × epochs × a per-view-image training cost, plus
//! the evaluations the trainer runs. The per-image costs are *assumptions*,
//! not measurements of this code: typical fp32/TF32 training throughput of
//! torchvision ResNets on one A100-class GPU, with the data loader keeping
//! up:
//!
//! - ResNet-18 with the small-image stems (CIFAR 32×32 without max-pool;
//!   STL-10/Tiny-ImageNet 64×64 with max-pool, so layer1 also runs at
//!   32×32): ≈ 0.56 GFLOPs forward per image, ≈ 8 000 images/s forward +
//!   backward → 125 µs per view-image.
//! - ResNet-34 likewise: 250 µs.
//! - ResNet-50 at 224×224: ≈ 4.1 GFLOPs forward, ≈ 1 250 images/s → 800 µs.
//!
//! Evaluations (every `eval.every` = 10 epochs, every 5 in the last 50)
//! encode the classifier and test splits once (forward only: a third of the
//! training cost) and fit the 500-epoch linear probe on the features
//! (assumed 30 s on the GPU); ImageNet runs evaluate k-NN only during
//! training and add Table 2's linear protocol once at the end (100 epochs
//! of the training split through the frozen encoder: forward only).
//! Multi-GPU runs divide wall-clock time, not GPU hours.

/// What `--dry-run` prints under the total.
pub const ASSUMPTIONS: &str = "assumed per-view-image training cost: ResNet-18 125 us, \
     ResNet-34 250 us, ResNet-50 at 224 px 800 us; see xtask/src/reproduce/estimate.rs";

/// Seconds of GPU time to train on one view of one image.
pub fn seconds_per_view_image(arch: &str) -> f64 {
    match arch {
        "resnet50" => 800e-6,
        "resnet34" => 250e-6,
        _ => 125e-6,
    }
}

/// (SSL split, classifier split, test split) sizes of `docs/reference.md`
/// §5.1.
pub fn split_sizes(dataset: &str) -> (usize, usize, usize) {
    match dataset {
        "cifar10" | "cifar100" => (50_000, 50_000, 10_000),
        "stl10" => (105_000, 5_000, 8_000),
        "tiny-imagenet" => (100_000, 100_000, 10_000),
        "imagenet" => (1_281_167, 1_281_167, 50_000),
        _ => (0, 0, 0),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    pub images_per_epoch: usize,
    pub hours: f64,
}

pub fn gpu_hours(preset: &super::runs::Preset, epochs: usize) -> Estimate {
    let (ssl, classifier, test) = split_sizes(&preset.dataset);
    let images = ssl / preset.batch_size.max(1) * preset.batch_size;
    let per = seconds_per_view_image(&preset.arch);
    let train = (images * preset.views * epochs) as f64 * per;
    // Evaluations: every 10 epochs, every 5 in the last 50, and the last one.
    let evals = (epochs.saturating_sub(50) / 10 + epochs.min(50) / 5).max(1);
    let encode = (classifier + test) as f64 * per / 3.0;
    let (probe, linear_protocol) = if preset.dataset == "imagenet" {
        (0.0, 100.0 * classifier as f64 * per / 3.0)
    } else {
        (30.0, 0.0)
    };
    Estimate {
        images_per_epoch: images,
        hours: (train + evals as f64 * (encode + probe) + linear_protocol) / 3600.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cifar_cw_rgp_4_is_a_few_gpu_hours_and_imagenet_hundreds() {
        let root = crate::project_root();
        let read = |d: &str, r: &str| {
            super::super::runs::Preset::read(&root.join(format!("configs/{d}/{r}.toml")), d)
                .unwrap()
        };
        let c = gpu_hours(&read("cifar10", "cw-rgp-4"), 1000);
        assert_eq!(c.images_per_epoch, 49_920);
        // 49 920 × 4 × 1000 × 125 µs ≈ 6.9 h, plus evaluations.
        assert!((6.9..9.0).contains(&c.hours), "{}", c.hours);
        let i = gpu_hours(&read("imagenet", "cw-rgp-4-200ep"), 200);
        // 1.28 M × 4 × 200 × 800 µs ≈ 228 h, the linear protocol ≈ 9.5 h.
        assert!((235.0..275.0).contains(&i.hours), "{}", i.hours);
    }
}
