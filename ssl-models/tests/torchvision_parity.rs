//! Our ResNets against torchvision itself, computed by the venv's torch in
//! the test: same state_dict names and shapes, same parameter counts, same
//! outputs and running statistics in eval and train mode with the same
//! weights.

mod common;

use common::{copy_named, max_abs, max_abs_diff, read_npz, variables};
use std::path::{Path, PathBuf};

use ssl_models::{Depth, ResNet, ResNetConfig, Stem};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// For each `dir,arch,stem,batch,size` argument: builds torchvision's network, randomises every BatchNorm (γ, β, running
/// statistics, counter) so the comparison covers them, and saves its
/// state_dict, an input, the eval and train outputs and the state after the
/// train pass. Prints the state_dict keys/shapes and the parameter count.
const TORCHVISION: &str = r#"
import os, sys, json, torch, torchvision, numpy as np
torch.set_num_threads(1)
for spec in sys.argv[1:]:
    out, arch, stem, n, size = spec.split(",")
    n, size = int(n), int(size)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    m = getattr(torchvision.models, arch)(zero_init_residual=True)
    if stem in ("cifar", "small"):
        m.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    if stem == "cifar":
        m.maxpool = torch.nn.Identity()
    m.fc = torch.nn.Identity()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 1.5)
                mod.num_batches_tracked.fill_(3)
    np.savez(out + "/weights.npz", **{k: v.numpy() for k, v in m.state_dict().items()})
    x = torch.randn(n, 3, size, size)
    np.save(out + "/x.npy", x.numpy())
    with torch.no_grad():
        m.eval(); np.save(out + "/y_eval.npy", m(x).numpy())
        m.train(); np.save(out + "/y_train.npy", m(x).numpy())
    np.savez(out + "/after.npz", **{k: v.numpy() for k, v in m.state_dict().items()})
    print(json.dumps({"keys": [[k, list(v.shape)] for k, v in m.state_dict().items()],
                      "params": sum(p.numel() for p in m.parameters())}))
"#;

struct Parity {
    eval_diff: f64,
    eval_scale: f64,
    train_diff: f64,
    train_scale: f64,
    state_diff: f64,
}

fn parity(dir: &Path, report: &serde_json::Value, arch: &str, depth: Depth, stem: Stem) -> Parity {
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), &ResNetConfig::new(depth, stem)).expect("build");

    // Names and shapes exactly torchvision's state_dict (as sets: the
    // VarStore has no order).
    let mut theirs: Vec<(String, Vec<i64>)> = report["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|kv| {
            let shape = kv[1]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_i64().expect("dim"))
                .collect();
            (kv[0].as_str().expect("name").to_string(), shape)
        })
        .collect();
    theirs.sort();
    let ours: Vec<(String, Vec<i64>)> = variables(&vs)
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect();
    assert_eq!(
        ours, theirs,
        "{arch}: state_dict names/shapes differ from torchvision's"
    );
    let trainable: i64 = vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    assert_eq!(
        trainable,
        report["params"].as_i64().expect("params"),
        "{arch}: parameter count"
    );

    copy_named(&vs, &read_npz(&dir.join("weights.npz")));
    let x = Tensor::read_npy(dir.join("x.npy")).expect("x");
    let y_eval = Tensor::read_npy(dir.join("y_eval.npy")).expect("y_eval");
    let y_train = Tensor::read_npy(dir.join("y_train.npy")).expect("y_train");
    let ours_eval = tch::no_grad(|| net.forward_t(&x, false));
    let ours_train = tch::no_grad(|| net.forward_t(&x, true));
    let after = read_npz(&dir.join("after.npz"));
    let mut state_diff: f64 = 0.0;
    for (name, var) in variables(&vs) {
        if var.kind() == Kind::Int64 {
            assert!(
                var.equal(&after[&name]),
                "{name}: {var:?} vs {:?}",
                after[&name]
            );
        } else {
            state_diff = state_diff.max(max_abs_diff(&var, &after[&name]));
        }
    }
    Parity {
        eval_diff: max_abs_diff(&ours_eval, &y_eval),
        eval_scale: max_abs(&y_eval),
        train_diff: max_abs_diff(&ours_train, &y_train),
        train_scale: max_abs(&y_train),
        state_diff,
    }
}

/// Tolerance: both sides run the same libtorch 2.13 CPU kernels in float32;
/// differences can come only from thread-dependent reduction order, a few
/// float32 ulps of the output scale, so `1e-5·max(1, max|y|)` is loose for
/// that yet fails on any real difference (a missing ReLU, a wrong stride or
/// a swapped BN moves outputs by O(max|y|)). Observed: exactly 0.
fn assert_close(what: &str, p: &Parity) {
    eprintln!(
        "{what}: eval max|Δ| {:.2e} (max|y| {:.2}), train max|Δ| {:.2e} (max|y| {:.2}), running stats max|Δ| {:.2e}",
        p.eval_diff, p.eval_scale, p.train_diff, p.train_scale, p.state_diff
    );
    assert!(
        p.eval_diff <= 1e-5 * p.eval_scale.max(1.0),
        "{what}: eval outputs differ"
    );
    assert!(
        p.train_diff <= 1e-5 * p.train_scale.max(1.0),
        "{what}: train outputs differ"
    );
    assert!(
        p.state_diff <= 1e-5,
        "{what}: running statistics differ after the train pass"
    );
    assert!(
        p.eval_scale > 0.1 && p.train_scale > 0.1,
        "{what}: outputs must not be trivially zero"
    );
}

/// One Python run (importing torchvision costs seconds) for the three
/// networks: ResNet-18 with the CIFAR stem, with the STL-10/Tiny-ImageNet
/// stem, and ResNet-50 with the ImageNet stem.
#[test]
fn resnets_match_torchvision_in_eval_and_train_mode() {
    common::single_threaded();
    let scratch = test_support::scratch_dir();
    let cases = [
        (
            "ResNet-18 CIFAR stem",
            "resnet18",
            "cifar",
            Depth::ResNet18,
            Stem::Cifar,
            4,
            32,
        ),
        (
            "ResNet-18 STL/Tiny stem",
            "resnet18",
            "small",
            Depth::ResNet18,
            Stem::SmallWithMaxPool,
            2,
            64,
        ),
        (
            "ResNet-50 ImageNet stem",
            "resnet50",
            "imagenet",
            Depth::ResNet50,
            Stem::ImageNet,
            2,
            64,
        ),
    ];
    let dirs: Vec<PathBuf> = cases.iter().map(|c| scratch.path().join(c.2)).collect();
    let specs: Vec<String> = cases
        .iter()
        .zip(&dirs)
        .map(|(c, d)| format!("{},{},{},{},{}", d.display(), c.1, c.2, c.5, c.6))
        .collect();
    let args: Vec<&str> = specs.iter().map(String::as_str).collect();
    let output = test_support::run_python(TORCHVISION, &args);
    let reports: Vec<serde_json::Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).expect("python JSON"))
        .collect();
    assert_eq!(reports.len(), cases.len());
    for ((case, dir), report) in cases.iter().zip(&dirs).zip(&reports) {
        let p = parity(dir, report, case.1, case.3, case.4);
        assert_close(case.0, &p);
    }
}
