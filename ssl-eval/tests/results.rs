//! The JSON results: round trip, errors naming the file, and feature
//! extraction (what produces the features the results describe).

use ssl_eval::{
    collapse_diagnostics, extract_features, extract_features_module, EvalError, EvalResults,
    KnnConfig, KnnMetric, KnnResult, LinearProtocol, LinearResult, Representation,
};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

#[test]
fn results_round_trip_through_json() {
    let mut r = EvalResults::new(Representation::Whitened);
    r.knn = Some(KnnResult {
        k: 20,
        metric: KnnConfig::weighted_cosine(20, 0.07).metric,
        top1: 0.875,
        top5: Some(0.99),
        n_train: 50_000,
        n_test: 10_000,
    });
    r.linear = Some(LinearResult {
        protocol: LinearProtocol::AdamProbe,
        epochs: 500,
        top1: 0.9247,
        top5: 0.998,
        train_loss: 0.21,
        n_train: 50_000,
        n_test: 10_000,
        best_epoch: None,
        last_top1: None,
    });
    let x = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 2.0, 0.0, 0.0]).view([3, 2]);
    r.diagnostics = Some(
        collapse_diagnostics(&x, Some(&Tensor::from_slice(&[0i64, 1, 1]))).expect("diagnostics"),
    );
    let dir = test_support::scratch_dir();
    let path = dir.path().join("eval.json");
    r.save(&path).expect("save");
    assert_eq!(EvalResults::load(&path).expect("load"), r);
    // The field names other tools read.
    let json = r.to_json();
    for key in [
        "\"representation\": \"whitened\"",
        "\"weighted_cosine\"",
        "\"adam_probe\"",
        "\"stable_rank\"",
    ] {
        assert!(json.contains(key), "{key} missing from {json}");
    }
    assert!(matches!(
        r.knn.as_ref().map(|k| k.metric),
        Some(KnnMetric::WeightedCosine { .. })
    ));
}

#[test]
fn load_errors_name_the_file() {
    let dir = test_support::scratch_dir();
    let missing = dir.path().join("missing.json");
    let err = EvalResults::load(&missing).expect_err("no file");
    assert!(
        matches!(err, EvalError::Io { .. }) && err.to_string().contains("missing.json"),
        "{err}"
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"representation\": \"encoder\", \"knn\": 3}").expect("write");
    let err = EvalResults::load(&bad).expect_err("bad json");
    assert!(
        matches!(err, EvalError::Json { .. }) && err.to_string().contains("bad.json"),
        "{err}"
    );
}

#[test]
fn extraction_concatenates_batches_in_order() {
    tch::manual_seed(1);
    let x = Tensor::randn([10, 3], (Kind::Float, Device::Cpu));
    let y = Tensor::arange(10, (Kind::Int64, Device::Cpu));
    let batches = (0..3).map(|b| {
        let rows = if b == 2 { 2 } else { 4 };
        (x.narrow(0, b * 4, rows), y.narrow(0, b * 4, rows))
    });
    // "head" = any closure: here x ↦ 2x.
    let f = extract_features(|t| t * 2.0, batches, Device::Cpu, "train").expect("extract");
    assert!(f.x.equal(&(&x * 2.0)));
    assert!(f.y.equal(&y));
    assert!(!f.x.requires_grad());
    let err = extract_features(
        |t| t.narrow(0, 0, 1),
        [(x.shallow_clone(), y.shallow_clone())],
        Device::Cpu,
        "test",
    )
    .expect_err("wrong batch size");
    assert!(
        matches!(err, EvalError::Shape { .. }) && err.to_string().contains("test batch 0"),
        "{err}"
    );
}

#[test]
fn module_extraction_runs_in_evaluation_mode() {
    let vs = nn::VarStore::new(Device::Cpu);
    let bn = nn::batch_norm1d(vs.root() / "bn", 3, Default::default());
    tch::manual_seed(2);
    let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu)) * 3.0 + 5.0;
    let y = Tensor::zeros([8], (Kind::Int64, Device::Cpu));
    let f = extract_features_module(&bn, [(x.shallow_clone(), y)], Device::Cpu, "train")
        .expect("extract");
    // Fresh running stats (mean 0, var 1): eval-mode BN is
    // γ·x/sqrt(1 + 1e-5) + β, and the stats stay untouched. Train mode
    // would centre the batch instead.
    let (gamma, beta) = (
        bn.ws.as_ref().expect("affine"),
        bn.bs.as_ref().expect("affine"),
    );
    let want = &x / (1.0f64 + 1e-5).sqrt() * gamma + beta;
    assert!(f.x.allclose(&want, 1e-5, 1e-5, false));
    assert!(bn
        .running_mean
        .equal(&Tensor::zeros([3], (Kind::Float, Device::Cpu))));
    let train_mode = bn.forward_t(&x, true);
    assert!(!train_mode.allclose(&f.x, 1e-2, 1e-2, false));
}
