//! k-NN against independent evidence: an f64 brute-force oracle written out
//! here (sort by (distance, index), count, first maximum), crafted ties, the
//! reference's own torch code (W-MSE `eval_knn`) run by the venv Python, and
//! blocked against unblocked runs.

use ssl_eval::{
    knn_evaluate, knn_scores, nearest_neighbours, top_k_accuracy, EvalError, Features, KnnConfig,
    KnnMetric,
};
use tch::{Device, Kind, Tensor};

fn features(x: &[f32], d: usize, y: &[i64]) -> Features {
    let x = Tensor::from_slice(x).view([(x.len() / d) as i64, d as i64]);
    Features::new(x, Tensor::from_slice(y), "test data").expect("valid features")
}

/// Small-integer coordinates: every distance is an exact small integer in
/// f32, so ties are real and the oracle's order is the only right one.
fn integer_data(n: usize, d: usize, seed: u64, classes: i64) -> (Vec<f32>, Vec<i64>) {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as i64
    };
    let x = (0..n * d).map(|_| (next() % 5 - 2) as f32).collect();
    let y = (0..n).map(|_| next() % classes).collect();
    (x, y)
}

/// The oracle: the k nearest by (squared distance, index), majority vote,
/// ties to the smallest label.
fn oracle(
    train: &[f32],
    ty: &[i64],
    test: &[f32],
    d: usize,
    k: usize,
    classes: usize,
) -> (Vec<Vec<usize>>, Vec<i64>) {
    let n_train = train.len() / d;
    let mut all_nb = Vec::new();
    let mut preds = Vec::new();
    for q in test.chunks(d) {
        let mut dist: Vec<(f64, usize)> = (0..n_train)
            .map(|j| {
                let r = &train[j * d..(j + 1) * d];
                (
                    q.iter()
                        .zip(r)
                        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                        .sum(),
                    j,
                )
            })
            .collect();
        dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let nb: Vec<usize> = dist[..k].iter().map(|p| p.1).collect();
        let mut counts = vec![0usize; classes];
        for &j in &nb {
            counts[ty[j] as usize] += 1;
        }
        let best = *counts.iter().max().expect("classes > 0");
        preds.push(
            counts
                .iter()
                .position(|&c| c == best)
                .expect("a maximum exists") as i64,
        );
        all_nb.push(nb);
    }
    (all_nb, preds)
}

fn to_vec_i64(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.flatten(0, -1)).expect("i64 tensor")
}

#[test]
fn euclidean_5nn_matches_brute_force_oracle_with_ties_for_every_blocking() {
    let (d, classes) = (4, 4);
    let (xtr, ytr) = integer_data(60, d, 1, classes);
    let (xte, yte) = integer_data(40, d, 2, classes);
    let train = features(&xtr, d, &ytr);
    let test = features(&xte, d, &yte);
    let (nb_oracle, pred_oracle) = oracle(&xtr, &ytr, &xte, d, 5, classes as usize);
    let hits = pred_oracle.iter().zip(&yte).filter(|(p, y)| p == y).count();
    let oracle_acc = hits as f64 / yte.len() as f64;
    let vote_ties = nb_oracle
        .iter()
        .filter(|nb| {
            let mut counts = vec![0; classes as usize];
            nb.iter().for_each(|&j| counts[ytr[j] as usize] += 1);
            let best = *counts.iter().max().expect("classes > 0");
            counts.iter().filter(|&&c| c == best).count() > 1
        })
        .count();
    // Blocks: unblocked, uneven test blocks, training blocks of exactly k
    // and of a size that does not divide 60.
    for (tb, trb) in [(1000, 1000), (7, 5), (1, 13), (16, 60)] {
        let cfg = KnnConfig {
            test_block: tb,
            train_block: trb,
            ..KnnConfig::reference()
        };
        let nb = nearest_neighbours(&train.x, &test.x, &cfg).expect("k-NN runs");
        let idx = to_vec_i64(&nb.indices);
        for (r, want) in nb_oracle.iter().enumerate() {
            let got: Vec<usize> = idx[r * 5..(r + 1) * 5]
                .iter()
                .map(|&i| i as usize)
                .collect();
            assert_eq!(
                &got, want,
                "neighbours of test row {r} with blocks ({tb}, {trb})"
            );
        }
        let scores = knn_scores(&train, &test.x, classes, &cfg).expect("scores");
        assert_eq!(
            to_vec_i64(&scores.argmax(1, false)),
            pred_oracle,
            "blocks ({tb}, {trb})"
        );
        // The reported accuracy is that of the oracle's predictions.
        let res = knn_evaluate(&train, &test, &cfg).expect("k-NN");
        assert_eq!(res.top1, oracle_acc, "blocks ({tb}, {trb})");
    }
    // Vote ties decide some of these predictions (else the check above
    // says nothing about them).
    assert!(vote_ties > 3, "only {vote_ties} test rows with a tied vote");
    // The data must actually contain ties for the test to mean anything:
    // some test row has its 5th and 6th nearest at the same distance.
    let boundary_ties = xte
        .chunks(d)
        .filter(|q| {
            let mut ds: Vec<i64> = xtr
                .chunks(d)
                .map(|r| {
                    q.iter()
                        .zip(r)
                        .map(|(a, b)| ((a - b) * (a - b)) as i64)
                        .sum()
                })
                .collect();
            ds.sort();
            ds[4] == ds[5]
        })
        .count();
    assert!(
        boundary_ties > 10,
        "only {boundary_ties} rows with a tie at the 5th neighbour"
    );
}

#[test]
fn vote_ties_go_to_the_smallest_label_and_distance_ties_to_the_smaller_index() {
    // 1-D: the test point sits at 0. Neighbours at 1, 2, 3, 4, 5 with labels
    // 3, 3, 1, 1, 0: labels 1 and 3 tie with two votes; the smallest wins.
    let train = features(&[1.0, 2.0, 3.0, 4.0, 5.0, 9.0], 1, &[3, 3, 1, 1, 0, 2]);
    let test = Tensor::from_slice(&[0.0f32]).view([1, 1]);
    let s = knn_scores(&train, &test, 4, &KnnConfig::reference()).expect("scores");
    assert_eq!(
        Vec::<f32>::try_from(s.flatten(0, -1)).expect("f32"),
        vec![1.0, 2.0, 0.0, 2.0]
    );
    assert_eq!(s.argmax(1, false).int64_value(&[0]), 1);

    // Seven training points all at distance 1 (±1): the five with the
    // smallest indices are the neighbours, in index order.
    let train = features(
        &[1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0],
        1,
        &[0, 0, 0, 1, 1, 1, 1],
    );
    for trb in [5, 6, 7] {
        let cfg = KnnConfig {
            train_block: trb,
            ..KnnConfig::reference()
        };
        let nb = nearest_neighbours(&train.x, &test, &cfg).expect("k-NN runs");
        assert_eq!(
            to_vec_i64(&nb.indices),
            vec![0, 1, 2, 3, 4],
            "train_block {trb}"
        );
        assert_eq!(
            Vec::<f32>::try_from(nb.values.flatten(0, -1)).expect("f32"),
            vec![1.0; 5]
        );
    }
}

/// The reported top-1 breaks vote ties toward the smallest label, as the
/// release's `eval_knn` does: two labels with two votes each out of five,
/// the test row labelled with the smaller one is a hit and with the larger
/// one a miss, whichever of the two is nearer and whatever the number of
/// classes (with ten, libtorch's `topk` would pick 7 over 3).
#[test]
fn reported_top1_breaks_vote_ties_toward_the_smallest_label() {
    for (labels, small, large, classes) in [
        ([7, 3, 7, 3, 0], 3, 7, 10),
        ([3, 7, 3, 7, 0], 3, 7, 10),
        ([3, 3, 1, 1, 0], 1, 3, 4),
        ([9, 2, 2, 9, 5], 2, 9, 10),
    ] {
        // 1-D: the test point at 0, neighbours at 1..=5 with `labels`, and
        // a far point that makes the label range `classes`.
        let mut y = labels.to_vec();
        y.push(classes - 1);
        let train = features(&[1.0, 2.0, 3.0, 4.0, 5.0, 50.0], 1, &y);
        for (label, want) in [(small, 1.0), (large, 0.0)] {
            let test = features(&[0.0], 1, &[label]);
            let res = knn_evaluate(&train, &test, &KnnConfig::reference()).expect("k-NN");
            assert_eq!(
                res.top1, want,
                "votes {labels:?}, {classes} classes, test label {label}"
            );
        }
    }
}

/// Ties in any score (neighbour counts, logits) rank toward the smallest
/// label at every k; a NaN score ranks first and a NaN own score misses.
#[test]
fn top_k_accuracy_ranks_ties_toward_the_smallest_label() {
    let scores =
        Tensor::from_slice(&[0.0f32, 5.0, 1.0, 5.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]).view([1, 10]);
    // Best first: the tied 5s by label, then the 1, then the tied 0s.
    let order = [1i64, 3, 4, 2, 0, 5, 6, 7, 8, 9];
    for k in 1..=10 {
        for (rank, &label) in order.iter().enumerate() {
            let want = if (rank as i64) < k { 1.0 } else { 0.0 };
            let got = top_k_accuracy(&scores, &Tensor::from_slice(&[label]), k);
            assert_eq!(got, want, "label {label} at k = {k}");
        }
    }
    let nan = Tensor::from_slice(&[1.0f32, f32::NAN, 2.0]).view([1, 3]);
    assert_eq!(top_k_accuracy(&nan, &Tensor::from_slice(&[2i64]), 1), 0.0);
    assert_eq!(top_k_accuracy(&nan, &Tensor::from_slice(&[2i64]), 2), 1.0);
    assert_eq!(top_k_accuracy(&nan, &Tensor::from_slice(&[1i64]), 3), 0.0);
}

#[test]
fn weighted_cosine_matches_f64_oracle_and_blocking_does_not_change_it() {
    tch::manual_seed(3);
    let (n_train, n_test, d, classes, k, t) = (90, 30, 16, 5, 10, 0.07);
    let train = Features::new(
        Tensor::randn([n_train, d], (Kind::Float, Device::Cpu)),
        Tensor::randint(classes, [n_train], (Kind::Int64, Device::Cpu)),
        "train",
    )
    .expect("valid");
    let test = Tensor::randn([n_test, d], (Kind::Float, Device::Cpu));
    let xtr = Vec::<f32>::try_from(train.x.flatten(0, -1)).expect("f32");
    let xte = Vec::<f32>::try_from(test.flatten(0, -1)).expect("f32");
    let ytr = Vec::<i64>::try_from(&train.y).expect("i64");
    let unit = |v: &[f32]| -> Vec<f64> {
        let n = v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        v.iter().map(|a| *a as f64 / n).collect()
    };
    let mut want = Vec::new();
    for q in xte.chunks(d as usize) {
        let q = unit(q);
        let mut sims: Vec<(f64, usize)> = xtr
            .chunks(d as usize)
            .enumerate()
            .map(|(j, r)| (q.iter().zip(unit(r)).map(|(a, b)| a * b).sum(), j))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut score = vec![0.0f64; classes as usize];
        for &(s, j) in &sims[..k as usize] {
            score[ytr[j] as usize] += (s / t).exp();
        }
        want.extend(score);
    }
    for (tb, trb) in [(1000, 1000), (4, 10), (7, 33)] {
        let cfg = KnnConfig {
            test_block: tb,
            train_block: trb,
            ..KnnConfig::weighted_cosine(k, t)
        };
        let got = Vec::<f32>::try_from(
            knn_scores(&train, &test, classes, &cfg)
                .expect("scores")
                .flatten(0, -1),
        )
        .expect("f32");
        // Weights exp(s/T) reach e^14 ≈ 1e6; f32 similarities are good to
        // ~1e-7, so exp(s/T) to ~1e-7/0.07 ≈ 2e-6 relative: allow 1e-5.
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                ((*g as f64) - w).abs() <= 1e-5 * w.abs().max(1.0),
                "score {i}: {g} vs {w} (blocks {tb}, {trb})"
            );
        }
    }
}

#[test]
fn matches_the_reference_eval_knn_torch_code() {
    tch::manual_seed(11);
    let (n_train, n_test, d) = (500, 200, 16);
    let centres = Tensor::randn([4, d], (Kind::Float, Device::Cpu)) * 1.5;
    let ytr = Tensor::randint(4, [n_train], (Kind::Int64, Device::Cpu));
    let yte = Tensor::randint(4, [n_test], (Kind::Int64, Device::Cpu));
    let xtr =
        centres.index_select(0, &ytr) + Tensor::randn([n_train, d], (Kind::Float, Device::Cpu));
    let xte =
        centres.index_select(0, &yte) + Tensor::randn([n_test, d], (Kind::Float, Device::Cpu));
    let dir = test_support::scratch_dir();
    for (t, name) in [(&xtr, "xtr"), (&ytr, "ytr"), (&xte, "xte"), (&yte, "yte")] {
        t.write_npy(dir.path().join(format!("{name}.npy")))
            .expect("write npy");
    }
    // W-MSE / CW-RGP eval_knn, verbatim apart from loading the data.
    let script = r#"
import sys, numpy as np, torch
p = sys.argv[1]
x_train, y_train, x_test, y_test = (torch.from_numpy(np.load(f"{p}/{n}.npy")) for n in ("xtr", "ytr", "xte", "yte"))
d = torch.cdist(x_test, x_train)
topk = torch.topk(d, k=5, dim=1, largest=False)
labels = y_train[topk.indices]
pred = torch.empty_like(y_test)
for i in range(len(labels)):
    x = labels[i].unique(return_counts=True)
    pred[i] = x[0][x[1].argmax()]
np.save(f"{p}/pred.npy", pred.numpy())
print((pred == y_test).float().mean().item())
"#;
    let out = test_support::run_python(script, &[dir.path().to_str().expect("utf-8 path")]);
    let ref_acc: f64 = out.trim().parse().expect("accuracy printed");
    let ref_pred = Tensor::read_npy(dir.path().join("pred.npy")).expect("read npy");
    let train = Features::new(xtr, ytr, "train").expect("valid");
    let test = Features::new(xte, yte, "test").expect("valid");
    let scores = knn_scores(&train, &test.x, 4, &KnnConfig::reference()).expect("scores");
    // Random floats have no distance ties, so predictions agree exactly.
    assert_eq!(to_vec_i64(&scores.argmax(1, false)), to_vec_i64(&ref_pred));
    let res = knn_evaluate(&train, &test, &KnnConfig::reference()).expect("k-NN");
    assert!(
        (res.top1 - ref_acc).abs() < 1e-6,
        "ours {} vs reference {ref_acc}",
        res.top1
    );
    assert!(res.top5.is_none());
    assert_eq!(
        (res.k, res.metric, res.n_train, res.n_test),
        (5, KnnMetric::Euclidean, 500, 200)
    );
}

#[test]
fn bad_settings_and_shapes_are_errors_naming_them() {
    let train = features(&[0.0, 1.0, 2.0], 1, &[0, 1, 0]);
    let test = features(&[0.5], 1, &[0]);
    let err =
        knn_evaluate(&train, &test, &KnnConfig::reference()).expect_err("k = 5 > 3 training rows");
    assert!(
        matches!(err, EvalError::Config { key: "knn.k", .. }),
        "{err}"
    );
    let cfg = KnnConfig {
        k: 1,
        metric: KnnMetric::WeightedCosine { temperature: 0.0 },
        ..KnnConfig::reference()
    };
    let err = knn_evaluate(&train, &test, &cfg).expect_err("T = 0");
    assert!(err.to_string().contains("knn.temperature"), "{err}");
    let wide = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
    let err = nearest_neighbours(
        &train.x,
        &wide,
        &KnnConfig {
            k: 1,
            ..KnnConfig::reference()
        },
    )
    .expect_err("dimension mismatch");
    assert!(matches!(err, EvalError::Shape { .. }), "{err}");
}
