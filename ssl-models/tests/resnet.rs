//! Construction facts of the ResNets that need no Python: parameter counts
//! against torchvision's published figures, torchvision's initialisation,
//! `zero_init_residual`, stems and the width multiplier.

mod common;

use common::variables;
use ssl_models::{Depth, ModelError, ResNet, ResNetConfig, Stem};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn trainable_count(depth: Depth, stem: Stem) -> i64 {
    let vs = VarStore::new(Device::Cpu);
    ResNet::new(&vs.root(), &ResNetConfig::new(depth, stem)).expect("build");
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

/// torchvision's documented totals (resnet18 11,689,512; resnet34
/// 21,797,672; resnet50 25,557,032) minus `fc` (512·1000 + 1000 = 513,000;
/// 2048·1000 + 1000 = 2,049,000); the CIFAR stem's 3×3 `conv1` has
/// 64·3·(49 − 9) = 7,680 weights fewer than the 7×7 one.
#[test]
fn parameter_counts_equal_torchvision_without_fc() {
    common::single_threaded();
    assert_eq!(
        trainable_count(Depth::ResNet18, Stem::ImageNet),
        11_689_512 - 513_000
    );
    assert_eq!(
        trainable_count(Depth::ResNet18, Stem::Cifar),
        11_689_512 - 513_000 - 7_680
    );
    assert_eq!(
        trainable_count(Depth::ResNet34, Stem::ImageNet),
        21_797_672 - 513_000
    );
    assert_eq!(
        trainable_count(Depth::ResNet50, Stem::ImageNet),
        25_557_032 - 2_049_000
    );
    // The "11.17M" for ResNet-18 without fc is the CIFAR-stem network
    // (11,168,832; the 7×7 stem gives 11,176,512 = 11.18M).
    assert_eq!(
        (trainable_count(Depth::ResNet18, Stem::Cifar) as f64 / 1e4).round(),
        1117.0
    );
}

fn std_and_mean(t: &Tensor) -> (f64, f64) {
    let t = t.to_kind(Kind::Double);
    (
        t.std(true).double_value(&[]),
        t.mean(Kind::Double).double_value(&[]),
    )
}

/// torchvision: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, so
/// `std = sqrt(2 / (C_out·k·k))`. With n ≥ 2.3M samples the sample std has
/// relative standard error `1/sqrt(2n)` < 0.05%, so 1% is a > 20σ bound; the
/// mean's standard error is `std/sqrt(n)`, bounded at 6σ.
#[test]
fn convolutions_are_kaiming_normal_fan_out_and_bn_starts_at_identity() {
    common::single_threaded();
    tch::manual_seed(7);
    let vs = VarStore::new(Device::Cpu);
    ResNet::new(
        &vs.root(),
        &ResNetConfig::new(Depth::ResNet18, Stem::ImageNet),
    )
    .expect("build");
    let vars = variables(&vs);
    for (name, fan_out) in [
        ("layer4.1.conv2.weight", 512 * 9),
        ("layer4.0.conv1.weight", 512 * 9),
    ] {
        let w = &vars[name];
        let n = w.numel() as f64;
        let expected = (2.0 / fan_out as f64).sqrt();
        let (std, mean) = std_and_mean(w);
        assert!(
            (std / expected - 1.0).abs() < 0.01,
            "{name}: std {std}, expected {expected}"
        );
        assert!(
            mean.abs() < 6.0 * expected / n.sqrt(),
            "{name}: mean {mean}"
        );
    }
    for (name, t) in &vars {
        let value = |v: f64| t.to_kind(Kind::Double).eq(v).all().int64_value(&[]) == 1;
        if name.ends_with("running_mean")
            || name.ends_with(".bias")
            || name.ends_with("num_batches_tracked")
        {
            assert!(value(0.0), "{name} must start at 0");
        } else if name.ends_with("running_var") {
            assert!(value(1.0), "{name} must start at 1");
        } else if name.contains("bn") || name.contains("downsample.1") {
            // zero_init_residual: the last BN of each BasicBlock is bn2.
            let last_bn = name.starts_with("layer") && name.ends_with("bn2.weight");
            assert!(
                value(if last_bn { 0.0 } else { 1.0 }),
                "{name}: wrong initial γ"
            );
        }
    }
}

#[test]
fn zero_init_residual_makes_bottleneck_bn3_zero_and_can_be_turned_off() {
    common::single_threaded();
    let vs = VarStore::new(Device::Cpu);
    let config = ResNetConfig::new(Depth::ResNet50, Stem::ImageNet).with_width(0.125);
    ResNet::new(&vs.root(), &config).expect("build");
    let vars = variables(&vs);
    assert_eq!(
        vars["layer3.2.bn3.weight"]
            .abs()
            .sum(Kind::Double)
            .double_value(&[]),
        0.0
    );
    assert!(vars["layer3.2.bn2.weight"].eq(1.0).all().int64_value(&[]) == 1);

    let vs = VarStore::new(Device::Cpu);
    let config = ResNetConfig {
        zero_init_residual: false,
        ..config
    };
    ResNet::new(&vs.root(), &config).expect("build");
    assert!(
        variables(&vs)["layer3.2.bn3.weight"]
            .eq(1.0)
            .all()
            .int64_value(&[])
            == 1
    );
}

/// With `zero_init_residual` every residual branch starts at 0, so each
/// block is `relu(shortcut(x))`: the identity blocks leave a non-negative
/// input unchanged. A closed-form check of the block wiring.
#[test]
fn zero_initialised_identity_blocks_pass_their_input_through() {
    common::single_threaded();
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let config = ResNetConfig::new(Depth::ResNet18, Stem::Cifar).with_width(0.125);
    let net = ResNet::new(&vs.root(), &config).expect("build");
    // Only layer1 (no downsample) differs from the identity on positive
    // inputs; compare the network with one whose layer1 convolutions are
    // scrambled: outputs must be identical since the branches are zero.
    let x = Tensor::randn([2, 3, 16, 16], (Kind::Float, Device::Cpu));
    let before = tch::no_grad(|| net.forward_t(&x, false));
    tch::no_grad(|| {
        let mut w = variables(&vs)["layer1.1.conv1.weight"].shallow_clone();
        let _ = w.normal_(0.0, 5.0);
    });
    let after = tch::no_grad(|| net.forward_t(&x, false));
    assert!(before.equal(&after), "a zero-γ branch must not contribute");
    assert!(before.abs().max().double_value(&[]) > 0.0);
}

#[test]
fn width_multiplier_scales_every_stage_and_the_output() {
    common::single_threaded();
    let config = ResNetConfig::new(Depth::ResNet50, Stem::Cifar).with_width(0.125);
    assert_eq!(config.stage_widths().expect("widths"), [8, 16, 32, 64]);
    assert_eq!(config.out_dim().expect("dim"), 256);
    let vs = VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), &config).expect("build");
    let y = tch::no_grad(|| {
        net.forward_t(
            &Tensor::randn([3, 3, 8, 8], (Kind::Float, Device::Cpu)),
            true,
        )
    });
    assert_eq!(y.size(), [3, 256]);
    assert_eq!(
        ResNetConfig::new(Depth::ResNet18, Stem::Cifar)
            .out_dim()
            .expect("dim"),
        512
    );
    assert_eq!(
        ResNetConfig::new(Depth::ResNet50, Stem::ImageNet)
            .out_dim()
            .expect("dim"),
        2048
    );
    for bad in [0.0, -1.0, f64::NAN] {
        let err = ResNet::new(&vs.root(), &config.with_width(bad)).expect_err("invalid width");
        assert!(
            matches!(err, ModelError::Config(ref m) if m.contains("width_multiplier")),
            "{err}"
        );
    }
}

#[test]
fn stems_have_the_kernel_sizes_of_spec_section_4() {
    common::single_threaded();
    for (stem, k) in [
        (Stem::Cifar, 3),
        (Stem::SmallWithMaxPool, 3),
        (Stem::ImageNet, 7),
    ] {
        let vs = VarStore::new(Device::Cpu);
        ResNet::new(
            &vs.root(),
            &ResNetConfig::new(Depth::ResNet18, stem).with_width(0.125),
        )
        .expect("build");
        assert_eq!(
            variables(&vs)["conv1.weight"].size(),
            [8, 3, k, k],
            "{stem:?}"
        );
    }
}

#[test]
fn names_map_to_depths_and_datasets_to_the_stems_of_spec_section_4() {
    common::single_threaded();
    for depth in [Depth::ResNet18, Depth::ResNet34, Depth::ResNet50] {
        assert_eq!(Depth::parse(depth.as_str()).expect("round trip"), depth);
        // The serde name is torchvision's name too.
        assert_eq!(
            serde_json::to_string(&depth).expect("json"),
            format!("\"{}\"", depth.as_str())
        );
    }
    assert!(Depth::parse("resnet101")
        .expect_err("unknown")
        .to_string()
        .contains("resnet101"));
    assert_eq!(Stem::for_dataset("cifar10"), Some(Stem::Cifar));
    assert_eq!(Stem::for_dataset("cifar100"), Some(Stem::Cifar));
    assert_eq!(Stem::for_dataset("stl10"), Some(Stem::SmallWithMaxPool));
    assert_eq!(
        Stem::for_dataset("tiny-imagenet"),
        Some(Stem::SmallWithMaxPool)
    );
    assert_eq!(Stem::for_dataset("imagenet"), Some(Stem::ImageNet));
    assert_eq!(Stem::for_dataset("mnist"), None);
}
