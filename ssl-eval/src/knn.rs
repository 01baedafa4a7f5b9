//! k-nearest-neighbour classification of frozen features (`docs/reference.md`
//! §7.2).
//!
//! The reference (W-MSE / CW-RGP `eval_knn`): k = 5, Euclidean distance,
//! majority vote of the k nearest training labels, ties to the smallest
//! label (`unique(return_counts)` then `argmax`). Optionally the
//! temperature-weighted cosine vote solo-learn reports
//! (`WeightedKNNClassifier`, Wu et al. 2018): score of class `c` =
//! `Σ_{i ∈ kNN, y_i = c} exp(cos(q, x_i) / T)`.
//!
//! Distances are computed a block of test rows against a block of training
//! rows at a time, `d²(a, b) = ‖a‖² + ‖b‖² − 2 a·b` by one matrix product, and
//! a running top-k is merged across training blocks, so memory is
//! `O(test_block × train_block)` whatever the split sizes (50k × 50k, or
//! ImageNet's 1.28M training rows). Among equal distances the smaller
//! training index is nearer, so the neighbour set is deterministic.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::features::{num_classes, Features};
use crate::results::KnnResult;
use crate::EvalError;

/// How neighbours are found and how they vote.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KnnMetric {
    /// Euclidean distance, one vote per neighbour, ties to the smallest label
    /// (the paper's protocol).
    Euclidean,
    /// Cosine similarity of L2-normalised features, votes weighted by
    /// `exp(cos / temperature)` (solo-learn; its defaults are k = 20, T = 0.07).
    WeightedCosine {
        /// The temperature `T`.
        temperature: f64,
    },
}

/// k-NN settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnConfig {
    /// Number of neighbours `k`.
    pub k: i64,
    /// Distance and vote.
    pub metric: KnnMetric,
    /// Test rows per distance block.
    pub test_block: i64,
    /// Training rows per distance block.
    pub train_block: i64,
}

impl KnnConfig {
    /// The paper's protocol: k = 5, Euclidean, majority vote.
    pub fn reference() -> Self {
        Self {
            k: 5,
            metric: KnnMetric::Euclidean,
            test_block: 1024,
            train_block: 32768,
        }
    }

    /// solo-learn's weighted cosine k-NN with `k` neighbours and temperature `t`.
    pub fn weighted_cosine(k: i64, temperature: f64) -> Self {
        Self {
            k,
            metric: KnnMetric::WeightedCosine { temperature },
            ..Self::reference()
        }
    }

    fn validate(&self, n_train: i64) -> Result<(), EvalError> {
        let bad = |key, value: String, reason: String| EvalError::Config { key, value, reason };
        if self.k < 1 || self.k > n_train {
            return Err(bad(
                "knn.k",
                self.k.to_string(),
                format!("must lie in [1, {n_train}] (the training split size)"),
            ));
        }
        if self.test_block < 1 {
            return Err(bad(
                "knn.test_block",
                self.test_block.to_string(),
                "must be ≥ 1".into(),
            ));
        }
        if self.train_block < self.k {
            return Err(bad(
                "knn.train_block",
                self.train_block.to_string(),
                format!("must be ≥ k = {}", self.k),
            ));
        }
        if let KnnMetric::WeightedCosine { temperature } = self.metric {
            if !(temperature > 0.0 && temperature.is_finite()) {
                return Err(bad(
                    "knn.temperature",
                    temperature.to_string(),
                    "must be a positive finite number".into(),
                ));
            }
        }
        Ok(())
    }
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self::reference()
    }
}

/// The `k` nearest training rows of every test row, nearest first.
#[derive(Debug)]
pub struct Neighbours {
    /// `[n_test, k]` training-row indices (i64).
    pub indices: Tensor,
    /// `[n_test, k]` squared Euclidean distances (Euclidean metric) or cosine
    /// similarities (weighted cosine metric), f32.
    pub values: Tensor,
}

/// Finds the `cfg.k` nearest training rows of each test row, block by block
/// (on the CPU by sgemm blocks with a fused top-k scan, elsewhere by
/// `addmm` + `topk` blocks; both rank the same keys the same way). On an
/// AVX2 CPU, from 2²⁵ test × train pairs, an exact 7-bit integer prefilter
/// with f64 re-ranking of its candidates replaces the sgemm blocks: it ranks
/// the keys as exact arithmetic does, where the blocks rank their f32
/// roundings, so the two can order near-ties (keys equal to ~1e-7
/// relative) differently; exact ties go to the smaller index in both.
///
/// Euclidean: ranks by `‖b‖² − 2a·b` (the per-test-row `‖a‖²` cannot change
/// the order, so it is added to the k winners only) and returns
/// `d² = max(0, ‖a‖² + ‖b‖² − 2a·b)`. Cosine: ranks by `−â·b̂` and returns
/// `â·b̂` with `x̂ = x / max(‖x‖, 1e-12)` (torch `F.normalize`).
pub fn nearest_neighbours(
    train_x: &Tensor,
    test_x: &Tensor,
    cfg: &KnnConfig,
) -> Result<Neighbours, EvalError> {
    nearest_impl(train_x, test_x, cfg, true).map(|(nb, _)| nb)
}

/// [`nearest_neighbours`], with the CPU kernel (`fused`) or the tensor
/// path that other devices take (tested against each other on the CPU);
/// also what the CPU kernel's prefilter did (`None` when it did not run).
fn nearest_impl(
    train_x: &Tensor,
    test_x: &Tensor,
    cfg: &KnnConfig,
    fused: bool,
) -> Result<(Neighbours, Option<crate::knn_quant::PrefilterStats>), EvalError> {
    for (t, what) in [
        (train_x, "k-NN train features"),
        (test_x, "k-NN test features"),
    ] {
        if t.dim() != 2 || t.size()[0] == 0 {
            return Err(EvalError::Shape {
                what: what.into(),
                expected: "a non-empty [n, d] matrix".into(),
                got: t.size(),
            });
        }
    }
    if train_x.size()[1] != test_x.size()[1] {
        return Err(EvalError::Shape {
            what: "k-NN test features".into(),
            expected: format!("dimension d = {} as the train features", train_x.size()[1]),
            got: test_x.size(),
        });
    }
    let n_train = train_x.size()[0];
    cfg.validate(n_train)?;
    let euclid = matches!(cfg.metric, KnnMetric::Euclidean);
    tch::no_grad(|| {
        let train = train_x.to_kind(Kind::Float);
        let test = test_x.to_kind(Kind::Float).to_device(train.device());
        // Per-training-row term of the ranking key: ‖b‖² (Euclidean) or 0.
        let (train, train_sq) = if euclid {
            let sq = train.square().sum_dim_intlist(1, false, Kind::Float);
            (train, Some(sq))
        } else {
            (normalize_rows(&train), None)
        };
        let n_test = test.size()[0];
        if fused && train.device() == tch::Device::Cpu {
            // sgemm blocks with a fused top-k scan (`knn_cpu`).
            let flat = |t: &Tensor| Vec::<f32>::try_from(&t.contiguous().view([-1]));
            let d = train.size()[1] as usize;
            let test_rows = if euclid {
                test.shallow_clone()
            } else {
                normalize_rows(&test)
            };
            let bias = match &train_sq {
                Some(sq) => flat(sq)?,
                None => vec![0.0; n_train as usize],
            };
            let (idx, keys, stats) = with_f32_slice(&train, |train| {
                with_f32_slice(&test_rows, |test| {
                    let problem = crate::knn_cpu::Problem {
                        train,
                        test,
                        bias: &bias,
                        d,
                        k: cfg.k as usize,
                        alpha: if euclid { -2.0 } else { -1.0 },
                    };
                    crate::knn_cpu::k_best(&problem, cfg.train_block as usize)
                })
            })?;
            let keys = Tensor::from_slice(&keys).view([n_test, cfg.k]);
            let values = if euclid {
                (keys + test.square().sum_dim_intlist(1, true, Kind::Float)).clamp_min(0.0)
            } else {
                -keys
            };
            return Ok((
                Neighbours {
                    indices: Tensor::from_slice(&idx).view([n_test, cfg.k]),
                    values,
                },
                stats,
            ));
        }
        let mut all_idx = Vec::new();
        let mut all_val = Vec::new();
        let mut r0 = 0;
        while r0 < n_test {
            let rows = cfg.test_block.min(n_test - r0);
            let a = test.narrow(0, r0, rows);
            // Ranking key = ‖b‖² + (−2a)·b, or (−â)·b̂: one addmm/mm per block.
            let (a_scaled, a_sq) = if euclid {
                (
                    &a * -2.0,
                    Some(a.square().sum_dim_intlist(1, true, Kind::Float)),
                )
            } else {
                (normalize_rows(&a) * -1.0, None)
            };
            // Running top-k over training blocks, seeded by the first block.
            let block_k = |c0: i64| {
                let cols = cfg.train_block.min(n_train - c0);
                let b = train.narrow(0, c0, cols);
                let keys = match &train_sq {
                    Some(sq) => sq
                        .narrow(0, c0, cols)
                        .unsqueeze(0)
                        .addmm(&a_scaled, &b.tr()),
                    None => a_scaled.mm(&b.tr()),
                };
                let (k_key, k_idx) = k_smallest(&keys, cfg.k.min(cols));
                (k_key, k_idx + c0, cols)
            };
            let (mut key, mut idx, mut c0) = block_k(0);
            while c0 < n_train {
                let (k_key, k_idx, cols) = block_k(c0);
                (key, idx) = merge_sorted(&key, &idx, &k_key, &k_idx, cfg.k);
                c0 += cols;
            }
            let val = match a_sq {
                Some(sq) => (key + sq).clamp_min(0.0),
                None => -key,
            };
            all_idx.push(idx);
            all_val.push(val);
            r0 += rows;
        }
        Ok((
            Neighbours {
                indices: Tensor::cat(&all_idx, 0),
                values: Tensor::cat(&all_val, 0),
            },
            None,
        ))
    })
}

/// Class scores `[n_test, num_classes]` of the k-NN vote: neighbour counts
/// (Euclidean) or `Σ exp(cos / T)` (weighted cosine). `argmax` of a row (the
/// first maximum, so ties go to the smallest label) is the prediction.
pub fn knn_scores(
    train: &Features,
    test_x: &Tensor,
    num_classes: i64,
    cfg: &KnnConfig,
) -> Result<Tensor, EvalError> {
    train.check_labels(num_classes, "k-NN train labels")?;
    let nb = nearest_neighbours(&train.x, test_x, cfg)?;
    Ok(tch::no_grad(|| {
        let labels = train
            .y
            .index_select(0, &nb.indices.flatten(0, -1))
            .view_as(&nb.indices);
        let votes = match cfg.metric {
            KnnMetric::Euclidean => nb.values.ones_like(),
            KnnMetric::WeightedCosine { temperature } => (nb.values / temperature).exp(),
        };
        let n_test = labels.size()[0];
        Tensor::zeros([n_test, num_classes], (Kind::Float, labels.device()))
            .scatter_add(1, &labels, &votes)
    }))
}

/// Runs the k-NN protocol and reports top-1 accuracy (and top-5 for the
/// weighted cosine vote, as solo-learn does; a majority vote of 5 has no
/// meaningful top-5). Accuracy = mean over test rows of `[pred = y]`, the
/// prediction being the class with the most votes and, among tied
/// classes, the smallest label, as the release's `eval_knn` decides
/// (see [`crate::top_k_accuracy`]).
pub fn knn_evaluate(
    train: &Features,
    test: &Features,
    cfg: &KnnConfig,
) -> Result<KnnResult, EvalError> {
    let classes = num_classes(train, test);
    test.check_labels(classes, "k-NN test labels")?;
    let scores = knn_scores(train, &test.x, classes, cfg)?;
    let y = test.y.to_device(scores.device());
    let top1 = crate::linear_classifier::top_k_accuracy(&scores, &y, 1);
    let top5 = match cfg.metric {
        KnnMetric::Euclidean => None,
        KnnMetric::WeightedCosine { .. } => {
            Some(crate::linear_classifier::top_k_accuracy(&scores, &y, 5))
        }
    };
    Ok(KnnResult {
        k: cfg.k,
        metric: cfg.metric,
        top1,
        top5,
        n_train: train.len(),
        n_test: test.len(),
    })
}

/// Runs `f` on the elements of `t`, a CPU f32 tensor, as one slice in
/// row-major order, without copying them when `t` is contiguous.
#[allow(unsafe_code)]
fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> R {
    let c = t.contiguous();
    assert!(c.kind() == Kind::Float && c.device() == tch::Device::Cpu);
    let n = c.numel();
    if n == 0 {
        return f(&[]);
    }
    // SAFETY: `c` is a contiguous CPU f32 tensor of `n` elements, alive
    // until `f` returns; the k-NN only reads it (under `no_grad`, on tensors
    // it made from its inputs), so nothing writes to it meanwhile.
    let s = unsafe { std::slice::from_raw_parts(c.data_ptr() as *const f32, n) };
    f(s)
}

/// `x / max(‖x‖₂, 1e-12)` row-wise (torch `F.normalize`).
pub(crate) fn normalize_rows(x: &Tensor) -> Tensor {
    let norm = x
        .square()
        .sum_dim_intlist(1, true, x.kind())
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

/// The `k` smallest entries of each row of `keys`, ordered by (key, column);
/// among equal keys the smaller column wins, also at the k-th place.
fn k_smallest(keys: &Tensor, k: i64) -> (Tensor, Tensor) {
    let cols = keys.size()[1];
    if k == cols {
        return keys.sort_stable(true, 1, false);
    }
    // One extra: a tie between the k-th and (k+1)-th key means topk may
    // have picked an arbitrary one of the tied columns.
    let (v, i) = keys.topk(k + 1, 1, false, true);
    let tied = v.select(1, k).eq_tensor(&v.select(1, k - 1));
    let (mut v, mut i) = lexicographic(&v.narrow(1, 0, k), &i.narrow(1, 0, k));
    let rows = tied.nonzero().flatten(0, -1);
    if rows.size()[0] > 0 {
        // Rare: redo those rows exactly with a stable full sort.
        let (sv, si) = keys.index_select(0, &rows).sort_stable(true, 1, false);
        v = v.index_copy(0, &rows, &sv.narrow(1, 0, k));
        i = i.index_copy(0, &rows, &si.narrow(1, 0, k));
    }
    (v, i)
}

/// Reorders each row by (key, index): sort by index, then stably by key.
fn lexicographic(v: &Tensor, i: &Tensor) -> (Tensor, Tensor) {
    let (i_sorted, order) = i.sort(1, false);
    let v_by_i = v.gather(1, &order, false);
    let (v_out, order) = v_by_i.sort_stable(true, 1, false);
    (v_out, i_sorted.gather(1, &order, false))
}

/// Merges two per-row (key, index)-sorted candidate lists whose indices
/// are all smaller in the first; keeps the `k` best in (key, index) order.
fn merge_sorted(k1: &Tensor, i1: &Tensor, k2: &Tensor, i2: &Tensor, k: i64) -> (Tensor, Tensor) {
    let keys = Tensor::cat(&[k1, k2], 1);
    let idx = Tensor::cat(&[i1, i2], 1);
    // A stable sort keeps the first list (smaller indices) ahead on ties.
    let (v, order) = keys.sort_stable(true, 1, false);
    let kk = k.min(v.size()[1]);
    (
        v.narrow(1, 0, kk),
        idx.gather(1, &order, false).narrow(1, 0, kk),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU kernel and the tensor path (what CUDA runs) find the same
    /// neighbours in the same order, ties included (integer features make
    /// many exact ties), for both metrics and blocks smaller than the data.
    #[test]
    fn cpu_kernel_and_tensor_path_agree() {
        tch::manual_seed(5);
        let train = Tensor::randint(3, [300, 7], (Kind::Float, tch::Device::Cpu));
        let test = Tensor::randint(3, [70, 7], (Kind::Float, tch::Device::Cpu));
        for metric in [
            KnnMetric::Euclidean,
            KnnMetric::WeightedCosine { temperature: 0.1 },
        ] {
            for (test_block, train_block) in [(1024, 32768), (16, 40)] {
                let cfg = KnnConfig {
                    k: 6,
                    metric,
                    test_block,
                    train_block,
                };
                let (a, stats) = nearest_impl(&train, &test, &cfg, true).unwrap();
                assert_eq!(
                    stats, None,
                    "21 000 pairs are far below the prefilter's size"
                );
                let (b, _) = nearest_impl(&train, &test, &cfg, false).unwrap();
                let diff = (&a.values - &b.values).abs().max().double_value(&[]);
                assert!(diff < 1e-5, "{metric:?}: values differ by {diff}");
                if matches!(metric, KnnMetric::Euclidean) {
                    // Integer data: exact keys, so the order is fully fixed.
                    assert!(
                        a.indices.equal(&b.indices),
                        "{metric:?} blocks {test_block}/{train_block}: indices differ"
                    );
                }
            }
        }
    }

    /// A problem large enough for the CPU path's 7-bit prefilter
    /// (`knn_quant`, from 2²⁵ test × train pairs): the prefilter runs on an
    /// AVX2 CPU (and ranks most rows from its candidates rather than handing
    /// them all to sgemm), declines elsewhere, and either way the
    /// neighbours are the tensor path's. Integer features keep every key
    /// exact in f32 too, and make ties at the k-th place common.
    #[test]
    fn prefiltered_cpu_path_and_tensor_path_agree() {
        tch::manual_seed(6);
        let (n, q) = (65536, 512);
        assert!(n * q >= crate::knn_quant::MIN_PAIRS);
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        let train = Tensor::randint(16, [n as i64, 64], (Kind::Float, tch::Device::Cpu));
        let test = Tensor::randint(16, [q as i64, 64], (Kind::Float, tch::Device::Cpu));
        for k in [1, 5, 20] {
            let cfg = KnnConfig {
                k,
                ..KnnConfig::reference()
            };
            let (a, stats) = nearest_impl(&train, &test, &cfg, true).unwrap();
            if avx2 {
                let stats = stats.unwrap_or_else(|| panic!("k = {k}: the prefilter did not run"));
                assert_eq!(stats.ranked + stats.fallback, q, "k = {k}: {stats:?}");
                assert!(stats.ranked > q / 2, "k = {k}: {stats:?}");
            } else {
                assert_eq!(stats, None, "no AVX2: the prefilter must decline");
            }
            let (b, _) = nearest_impl(&train, &test, &cfg, false).unwrap();
            assert!(a.indices.equal(&b.indices), "k = {k}: indices differ");
            assert!(a.values.equal(&b.values), "k = {k}: distances differ");
        }
    }
}
