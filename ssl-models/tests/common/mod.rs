//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use tch::nn::VarStore;
use tch::Tensor;

/// Every variable of `vs`, by name.
pub fn variables(vs: &VarStore) -> BTreeMap<String, Tensor> {
    vs.variables().into_iter().collect()
}

/// Reads a `.npz` written by `numpy.savez`.
pub fn read_npz(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_npz(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// Copies every tensor of `source` into the variable of `vs` with the same
/// name, after asserting the two have exactly the same names and shapes.
pub fn copy_named(vs: &VarStore, source: &BTreeMap<String, Tensor>) {
    let vars = variables(vs);
    let ours: Vec<(&String, Vec<i64>)> = vars.iter().map(|(k, v)| (k, v.size())).collect();
    let theirs: Vec<(&String, Vec<i64>)> = source.iter().map(|(k, v)| (k, v.size())).collect();
    assert_eq!(ours, theirs, "names and shapes differ");
    tch::no_grad(|| {
        for (name, var) in vars {
            let mut var = var;
            var.copy_(&source[&name]);
        }
    });
}

/// `max |a − b|` as f64.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(tch::Kind::Double) - b.to_kind(tch::Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// `max |a|` as f64.
pub fn max_abs(a: &Tensor) -> f64 {
    a.to_kind(tch::Kind::Double).abs().max().double_value(&[])
}

/// Bit-identical tensors (same shape, dtype and bytes).
pub fn bit_equal(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.kind() == b.kind() && a.equal(b)
}

/// One libtorch intra-op thread: nextest already runs one test per core,
/// and more threads than cores make OpenMP's spinning workers slow every
/// test on a shared 2-core machine (measured: 56 s → 24 s for the heavy
/// tests under load). Results do not depend on it.
pub fn single_threaded() {
    tch::set_num_threads(1);
}
