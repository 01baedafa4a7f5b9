//! Heads, predictors and SwAV prototypes against torch `nn.Sequential`s
//! built by the venv's torch in the test: same state_dict names and shapes,
//! same outputs in train and eval mode with the same weights.

mod common;

use common::{copy_named, max_abs, max_abs_diff, read_npz, variables};
use ssl_models::{Mlp, ProjectionHeadConfig, Prototypes};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

const HEADS: &str = r#"
import sys, torch, numpy as np
torch.set_num_threads(1)
nn = torch.nn
out = sys.argv[1]
torch.manual_seed(0)
heads = {
    "proj": (16, nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 8))),
    "proj3_nobn": (16, nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8))),
    "byol_pred": (8, nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 8))),
    "simsiam_head": (16, nn.Sequential(nn.Linear(16, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
                                       nn.Linear(32, 32, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
                                       nn.Linear(32, 8, bias=False), nn.BatchNorm1d(8, affine=False))),
    "simsiam_pred": (8, nn.Sequential(nn.Linear(8, 12, bias=False), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 8))),
}
for name, (d, m) in heads.items():
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm1d):
                if mod.affine:
                    mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 1.5)
    np.savez(f"{out}/{name}.npz", **{k: v.numpy() for k, v in m.state_dict().items()})
    x = torch.randn(6, d)
    np.save(f"{out}/{name}_x.npy", x.numpy())
    with torch.no_grad():
        m.eval(); np.save(f"{out}/{name}_eval.npy", m(x).numpy())
        m.train(); np.save(f"{out}/{name}_train.npy", m(x).numpy())
"#;

/// float32 on both sides with the same libtorch kernels; outputs are O(1),
/// so 1e-5 is a few hundred ulps yet far below any wiring error.
const TOL: f64 = 1e-5;

#[test]
fn heads_and_predictors_match_torch_sequentials() {
    common::single_threaded();
    let dir = test_support::scratch_dir();
    test_support::run_python(HEADS, &[dir.path().to_str().expect("utf-8 path")]);
    type Build = fn(&tch::nn::Path<'_>) -> Mlp;
    let cases: [(&str, Build); 5] = [
        ("proj", |p| {
            let config = ProjectionHeadConfig {
                in_dim: 16,
                hidden_dim: 32,
                out_dim: 8,
                layers: 2,
                batch_norm: true,
            };
            Mlp::projection_head(p, &config).expect("head")
        }),
        ("proj3_nobn", |p| {
            let config = ProjectionHeadConfig {
                in_dim: 16,
                hidden_dim: 32,
                out_dim: 8,
                layers: 3,
                batch_norm: false,
            };
            Mlp::projection_head(p, &config).expect("head")
        }),
        ("byol_pred", |p| Mlp::byol_predictor(p, 8, 32)),
        ("simsiam_head", |p| Mlp::simsiam_head(p, 16, 32, 8)),
        ("simsiam_pred", |p| Mlp::simsiam_predictor(p, 8, 12)),
    ];
    for (name, build) in cases {
        let vs = VarStore::new(Device::Cpu);
        let head = build(&vs.root());
        assert_eq!(head.out_dim(), 8);
        copy_named(&vs, &read_npz(&dir.path().join(format!("{name}.npz"))));
        let x = Tensor::read_npy(dir.path().join(format!("{name}_x.npy"))).expect("x");
        for mode in ["eval", "train"] {
            let expected =
                Tensor::read_npy(dir.path().join(format!("{name}_{mode}.npy"))).expect("y");
            let ours = tch::no_grad(|| head.forward_t(&x, mode == "train"));
            let diff = max_abs_diff(&ours, &expected);
            eprintln!(
                "{name} {mode}: max|Δ| {diff:.2e} (max|y| {:.2})",
                max_abs(&expected)
            );
            assert!(
                diff < TOL,
                "{name} in {mode} mode differs from torch by {diff}"
            );
        }
    }
}

/// PyTorch's Linear default: weight and bias uniform in ±1/sqrt(fan_in).
#[test]
fn linear_layers_use_pytorch_default_initialisation() {
    common::single_threaded();
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let config = ProjectionHeadConfig::small_dataset(512, 64);
    assert_eq!(
        (config.layers, config.hidden_dim, config.batch_norm),
        (2, 1024, true)
    );
    let imagenet = ProjectionHeadConfig::imagenet(2048);
    assert_eq!(
        (imagenet.layers, imagenet.hidden_dim, imagenet.out_dim),
        (3, 2048, 1024)
    );
    Mlp::projection_head(&vs.root(), &config).expect("head");
    let vars = variables(&vs);
    for (name, fan_in) in [
        ("0.weight", 512.0),
        ("3.weight", 1024.0),
        ("3.bias", 1024.0),
    ] {
        let bound = 1.0 / f64::sqrt(fan_in);
        let max = max_abs(&vars[name]);
        // 65k (or 64) uniform draws: the maximum lies within 10% of the bound
        // with probability ≥ 1 − 0.9⁶⁴ > 0.998.
        assert!(
            max <= bound && max > 0.9 * bound,
            "{name}: max |w| {max}, bound {bound}"
        );
    }
    assert!(Mlp::projection_head(
        &(vs.root() / "bad"),
        &ProjectionHeadConfig {
            layers: 0,
            ..config
        }
    )
    .is_err());
}

/// SwAV: after normalisation every prototype is a unit vector, and scores
/// are cosines `⟨z/‖z‖, c_k⟩` (checked against an f64 computation).
#[test]
fn prototypes_are_unit_vectors_and_scores_are_cosines() {
    common::single_threaded();
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let mut protos = Prototypes::new(&(vs.root() / "prototypes"), 16, 10);
    assert_eq!(variables(&vs)["prototypes.weight"].size(), [10, 16]);
    let norms = protos
        .weight
        .to_kind(Kind::Double)
        .norm_scalaropt_dim(2, [1], false);
    assert!(max_abs_diff(&norms, &Tensor::ones([10], (Kind::Double, Device::Cpu))) < 1e-6);
    // Perturb (as an optimiser step would) and renormalise.
    tch::no_grad(|| {
        let _ = protos.weight.g_mul_scalar_(3.0);
    });
    protos.normalize();
    let c = protos.weight.to_kind(Kind::Double);
    assert!(
        max_abs_diff(
            &c.norm_scalaropt_dim(2, [1], false),
            &Tensor::ones([10], (Kind::Double, Device::Cpu))
        ) < 1e-6
    );
    let z = Tensor::randn([5, 16], (Kind::Float, Device::Cpu)) * 4.0;
    let z64 = z.to_kind(Kind::Double);
    let expected = (&z64 / z64.norm_scalaropt_dim(2, [1], true)).matmul(&c.tr());
    let scores = protos.scores(&z);
    assert_eq!(scores.size(), [5, 10]);
    // float32 dot products of unit vectors of length 16: error ≲ 16·6e-8.
    assert!(max_abs_diff(&scores, &expected) < 1e-5);
    assert!(
        scores.requires_grad(),
        "scores must be differentiable w.r.t. the prototypes"
    );
}
