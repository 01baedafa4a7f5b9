//! Collapse diagnostics on matrices with known spectra (closed forms) and
//! the class cosine similarities against an all-pairs f64 brute force.

use ssl_eval::{class_cosine_similarity, collapse_diagnostics};
use tch::{Device, Kind, Tensor};

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

#[test]
fn diagonal_matrix_has_its_diagonal_as_spectrum() {
    // [5, 3] with diag(3, 2, 1) on top: σ = (3, 2, 1).
    let a = Tensor::zeros([5, 3], F64);
    for (i, s) in [3.0, 2.0, 1.0].iter().enumerate() {
        let _ = a.get(i as i64).get(i as i64).fill_(*s);
    }
    let r = collapse_diagnostics(&a, None).expect("diagnostics").rank;
    let close = |x: f64, y: f64| (x - y).abs() < 1e-12;
    assert!(
        r.singular_values
            .iter()
            .zip([3.0, 2.0, 1.0])
            .all(|(a, b)| close(*a, b)),
        "{:?}",
        r.singular_values
    );
    // stable rank = (9 + 4 + 1)/9; normalised by min(5, 3) = 3.
    assert!(close(r.stable_rank, 14.0 / 9.0));
    assert!(close(r.normalised_stable_rank, 14.0 / 27.0));
    // effective rank = exp(H(p)), p = (3, 2, 1)/6.
    let h: f64 = [0.5f64, 1.0 / 3.0, 1.0 / 6.0]
        .iter()
        .map(|p| -p * p.ln())
        .sum();
    assert!(close(r.effective_rank, h.exp()));
}

#[test]
fn rank_r_product_with_equal_singular_values_has_rank_r() {
    tch::manual_seed(2);
    let (n, d, r) = (40, 12, 4);
    // Q₁ [n, r] and Q₂ [d, r] with orthonormal columns: A = 2·Q₁Q₂ᵀ has
    // exactly r singular values, all 2.
    let (q1, _) = Tensor::linalg_qr(&Tensor::randn([n, r], F64), "reduced");
    let (q2, _) = Tensor::linalg_qr(&Tensor::randn([d, r], F64), "reduced");
    let a = q1.mm(&q2.tr()) * 2.0;
    let res = collapse_diagnostics(&a, None).expect("diagnostics");
    assert_eq!((res.n, res.d), (n, d));
    let sv = &res.rank.singular_values;
    assert!(
        sv[..r as usize].iter().all(|s| (s - 2.0).abs() < 1e-10),
        "{sv:?}"
    );
    assert!(sv[r as usize..].iter().all(|s| s.abs() < 1e-10), "{sv:?}");
    // Tolerances: f64 SVD of an exact rank-4 product, errors ~1e-14.
    assert!((res.rank.stable_rank - 4.0).abs() < 1e-9);
    assert!((res.rank.effective_rank - 4.0).abs() < 1e-6);
    assert!((res.rank.normalised_stable_rank - 4.0 / 12.0).abs() < 1e-9);
    // A whitened matrix (orthogonal columns of equal norm) reaches 100%:
    // the paper's remark on Ẑ (docs/reference.md §7.5).
    let (w, _) = Tensor::linalg_qr(&Tensor::randn([n, d], F64), "reduced");
    let white = collapse_diagnostics(&(w * 5.0), None).expect("diagnostics");
    assert!((white.rank.normalised_stable_rank - 1.0).abs() < 1e-9);
}

#[test]
fn class_cosine_matches_all_pairs_brute_force() {
    tch::manual_seed(9);
    // Uneven classes, one with a single example (no intra-class pair) and
    // a label (3) that never occurs.
    let labels: Vec<i64> = vec![0, 0, 0, 1, 1, 2, 0, 1, 4, 4, 4, 4, 1];
    let n = labels.len() as i64;
    let x = Tensor::randn([n, 7], (Kind::Float, Device::Cpu)) + 0.5;
    let xv: Vec<Vec<f64>> = (0..n)
        .map(|i| Vec::<f64>::try_from(x.get(i).to_kind(Kind::Double)).expect("f64"))
        .collect();
    let cos = |a: &[f64], b: &[f64]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (na * nb)
    };
    let present = [0i64, 1, 2, 4];
    let labels_ref = &labels;
    let members = move |c: i64| (0..labels_ref.len()).filter(move |&i| labels_ref[i] == c);
    let mut intra = Vec::new();
    for &c in &present {
        let m: Vec<usize> = members(c).collect();
        if m.len() < 2 {
            continue;
        }
        let pairs: Vec<f64> = m
            .iter()
            .flat_map(|&i| m.iter().filter(move |&&j| j != i).map(move |&j| (i, j)))
            .map(|(i, j)| cos(&xv[i], &xv[j]))
            .collect();
        intra.push(pairs.iter().sum::<f64>() / pairs.len() as f64);
    }
    let mut inter = Vec::new();
    for (k, &a) in present.iter().enumerate() {
        for &b in &present[k + 1..] {
            let pairs: Vec<f64> = members(a)
                .flat_map(|i| members(b).map(move |j| (i, j)))
                .map(|(i, j)| cos(&xv[i], &xv[j]))
                .collect();
            inter.push(pairs.iter().sum::<f64>() / pairs.len() as f64);
        }
    }
    let want_intra = intra.iter().sum::<f64>() / intra.len() as f64;
    let want_inter = inter.iter().sum::<f64>() / inter.len() as f64;
    let got = class_cosine_similarity(&x, &Tensor::from_slice(&labels)).expect("cosines");
    // Both sides in f64 from the same f32 inputs: rounding only.
    assert!(
        (got.intra.expect("intra") - want_intra).abs() < 1e-12,
        "{got:?} vs {want_intra}"
    );
    assert!(
        (got.inter.expect("inter") - want_inter).abs() < 1e-12,
        "{got:?} vs {want_inter}"
    );
}

#[test]
fn identical_within_orthogonal_across_gives_one_and_zero() {
    // Class 0 = multiples of e₀, class 1 = multiples of e₁.
    let x = Tensor::from_slice(&[1.0f32, 0.0, 3.0, 0.0, 0.5, 0.0, 0.0, 2.0, 0.0, 7.0]).view([5, 2]);
    let y = Tensor::from_slice(&[0i64, 0, 0, 1, 1]);
    let d = collapse_diagnostics(&x, Some(&y)).expect("diagnostics");
    assert!((d.intra_class_cosine.expect("intra") - 1.0).abs() < 1e-12);
    assert!(d.inter_class_cosine.expect("inter").abs() < 1e-12);
    let single = class_cosine_similarity(&x.narrow(0, 0, 1), &y.narrow(0, 0, 1)).expect("cosines");
    assert_eq!(
        (single.intra, single.inter),
        (None, None),
        "one example: no pairs at all"
    );
}
