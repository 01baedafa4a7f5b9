//! Channels-last on the CPU (NHWC strides, same values and outputs), bf16
//! a reported no-op there; the bf16 convolution path itself (which
//! `Acceleration` switches on for CUDA) checked on the CPU against the
//! float32 network.

mod common;

use common::{max_abs, max_abs_diff, variables};
use ssl_models::{Acceleration, Depth, ResNet, ResNetConfig, Stem};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

#[test]
fn on_the_cpu_channels_last_applies_and_bf16_is_skipped_with_a_note() {
    common::single_threaded();
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let mut net = ResNet::new(
        &vs.root(),
        &ResNetConfig::new(Depth::ResNet18, Stem::Cifar).with_width(0.125),
    )
    .expect("net");
    let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
    let before = net.forward_t(&x, false);
    let values: Vec<Tensor> = variables(&vs).values().map(|t| t.copy()).collect();
    let status = Acceleration {
        channels_last: true,
        bf16: true,
    }
    .apply(&vs, &mut net);
    assert!(status.channels_last && !status.bf16);
    assert_eq!(status.notes.len(), 2, "{:?}", status.notes);
    assert!(status.notes[0].contains("NHWC"), "{:?}", status.notes);
    assert!(
        status.notes[1].contains("skipped") && status.notes[1].contains("Cpu"),
        "{:?}",
        status.notes
    );
    let mut converted = 0;
    for (t, v) in variables(&vs).values().zip(&values) {
        assert!(t.equal(v), "values unchanged");
        // 3×3 weights (a 1×1's size-1 dims have no meaningful strides).
        if t.dim() == 4 && t.size()[2] > 1 {
            let c = t.size()[1];
            assert_eq!(t.stride()[1], 1, "NHWC strides");
            assert_eq!(t.stride()[3], c);
            converted += 1;
        }
    }
    assert!(converted >= 17, "every 3×3 convolution weight: {converted}");
    let input = status.prepare_input(&x);
    assert_eq!(input.stride()[1], 1);
    // Same function: NHWC kernels sum in another order, so to rounding.
    let after = net.forward_t(&input, false);
    let diff = max_abs_diff(&after, &before);
    assert!(
        diff <= 1e-4 * max_abs(&before).max(1.0),
        "outputs differ by {diff}"
    );
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
