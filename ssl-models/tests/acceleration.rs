//! Channels-last and bf16: reported no-ops on the CPU; the bf16 convolution
//! path itself (which `Acceleration` switches on for CUDA) checked on the
//! CPU against the float32 network.

mod common;

use common::{max_abs, max_abs_diff, variables};
use ssl_models::{Acceleration, Depth, ResNet, ResNetConfig, Stem};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

#[test]
fn on_the_cpu_both_options_are_skipped_with_a_note_each() {
    common::single_threaded();
    let vs = VarStore::new(Device::Cpu);
    let mut net = ResNet::new(
        &vs.root(),
        &ResNetConfig::new(Depth::ResNet18, Stem::Cifar).with_width(0.125),
    )
    .expect("net");
    let before: Vec<Vec<i64>> = variables(&vs).values().map(|t| t.stride()).collect();
    let status = Acceleration {
        channels_last: true,
        bf16: true,
    }
    .apply(&vs, &mut net);
    assert!(!status.channels_last && !status.bf16);
    assert_eq!(status.notes.len(), 2, "{:?}", status.notes);
    assert!(
        status
            .notes
            .iter()
            .all(|n| n.contains("skipped") && n.contains("Cpu")),
        "{:?}",
        status.notes
    );
    let after: Vec<Vec<i64>> = variables(&vs).values().map(|t| t.stride()).collect();
    assert_eq!(before, after, "no layout change on the CPU");
    let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
    assert_eq!(status.prepare_input(&x).stride(), x.stride());
    let off = Acceleration::default().apply(&vs, &mut net);
    assert!(off.notes.is_empty());
}

/// bf16 has an 8-bit mantissa (relative rounding 2⁻⁹ ≈ 2e-3 per value);
/// through 17 layers of convolution and train-mode BN over small batches
/// (which rescales small differences) the relative Frobenius error
/// `‖y_bf16 − y‖/‖y‖` measured 2.7%; 6% bounds it with margin while a wrong
/// layer would be O(100%) off. The output is float32 and the weights'
/// gradients are float32.
#[test]
fn bf16_convolutions_track_float32_and_keep_float32_gradients() {
    common::single_threaded();
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let config = ResNetConfig {
        zero_init_residual: false,
        ..ResNetConfig::new(Depth::ResNet18, Stem::Cifar).with_width(0.25)
    };
    let mut net = ResNet::new(&vs.root(), &config).expect("net");
    let x = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
    let reference = tch::no_grad(|| net.forward_t(&x, true));
    net.set_conv_kind(Kind::BFloat16);
    let y = net.forward_t(&x, true);
    assert_eq!(y.kind(), Kind::Float);
    let rel = (&y - &reference).norm().double_value(&[]) / reference.norm().double_value(&[]);
    eprintln!(
        "bf16 vs float32: relative error {rel:.3e}, max|Δ| {:.3e}, max|y| {:.3}",
        max_abs_diff(&y, &reference),
        max_abs(&reference)
    );
    assert!(rel < 0.06 && rel > 0.0, "relative error {rel}");
    y.sum(Kind::Float).backward();
    let g = variables(&vs)["layer2.0.conv1.weight"].grad();
    assert_eq!(g.kind(), Kind::Float);
    assert!(max_abs(&g) > 0.0);
}
