//! Collapse diagnostics over a set of features (`docs/reference.md` §7.5 and
//! the paper's analyses, §9.1–§9.3): the spectrum and ranks from
//! whitening-core, and the mean cosine similarity within and across classes.
//!
//! With `u_i = x_i / ‖x_i‖` and class sums `S_c = Σ_{i∈c} u_i` (`n_c` rows):
//! - intra-class: `1/|C'| Σ_{c∈C'} (‖S_c‖² − Σ_{i∈c}‖u_i‖²) / (n_c(n_c − 1))`
//!   over classes `C'` with `n_c ≥ 2` — the mean of `cos(x_i, x_j)` over
//!   pairs `i ≠ j` in a class, averaged over classes;
//! - inter-class: `1/|P| Σ_{{c,c'}∈P} S_c·S_c' / (n_c n_c')` over unordered
//!   pairs `P` of distinct present classes — the mean of `cos(x_i, x_j)`
//!   across two classes, averaged over class pairs.
//!
//! Both cost `O(n·d + C²·d)`, not the `O(n²·d)` of all pairs.

use tch::{Kind, Tensor};
use whitening_core::diagnostics::rank_diagnostics;

use crate::features::Features;
use crate::knn::normalize_rows;
use crate::results::DiagnosticsResult;
use crate::EvalError;

/// Mean intra-class and inter-class cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassCosine {
    /// Mean cosine of distinct same-class pairs, averaged over classes
    /// (`None` when no class has two examples).
    pub intra: Option<f64>,
    /// Mean cosine of cross-class pairs, averaged over class pairs
    /// (`None` with fewer than two classes).
    pub inter: Option<f64>,
}

/// The class cosine similarities of the rows of `x: [n, d]` with integer
/// labels `labels: [n]` (see the module docs), computed in f64.
pub fn class_cosine_similarity(x: &Tensor, labels: &Tensor) -> Result<ClassCosine, EvalError> {
    let features = Features::new(x.shallow_clone(), labels.shallow_clone(), "diagnostics")?;
    let (_, max) = features.label_range();
    features.check_labels(max + 1, "diagnostics labels")?;
    tch::no_grad(|| {
        let u = normalize_rows(&x.to_kind(Kind::Double));
        let classes = max + 1;
        let onehot = features.y.one_hot(classes).to_kind(Kind::Double); // [n, C]
        let sums = onehot.tr().mm(&u); // [C, d]
        let counts = Vec::<f64>::try_from(onehot.sum_dim_intlist(0, false, Kind::Double))?;
        let self_sq = Vec::<f64>::try_from(
            onehot
                .tr()
                .mm(&u.square().sum_dim_intlist(1, true, Kind::Double))
                .flatten(0, -1),
        )?;
        let gram = sums.mm(&sums.tr()); // [C, C]: S_c · S_c'
        let c = classes as usize;
        let gram = Vec::<f64>::try_from(gram.flatten(0, -1))?;
        let (mut intra_sum, mut intra_n) = (0.0, 0usize);
        let (mut inter_sum, mut inter_n) = (0.0, 0usize);
        for a in 0..c {
            if counts[a] >= 2.0 {
                intra_sum += (gram[a * c + a] - self_sq[a]) / (counts[a] * (counts[a] - 1.0));
                intra_n += 1;
            }
            for b in a + 1..c {
                if counts[a] >= 1.0 && counts[b] >= 1.0 {
                    inter_sum += gram[a * c + b] / (counts[a] * counts[b]);
                    inter_n += 1;
                }
            }
        }
        Ok(ClassCosine {
            intra: (intra_n > 0).then(|| intra_sum / intra_n as f64),
            inter: (inter_n > 0).then(|| inter_sum / inter_n as f64),
        })
    })
}

/// Collapse diagnostics of a feature matrix `x: [n, d]`: singular values,
/// stable rank `‖X‖²_F/‖X‖²_2`, normalised stable rank (÷ `min(n, d)`),
/// effective rank (whitening-core's [`rank_diagnostics`], of `x` as given,
/// uncentred), and, with labels, the class cosine similarities.
pub fn collapse_diagnostics(
    x: &Tensor,
    labels: Option<&Tensor>,
) -> Result<DiagnosticsResult, EvalError> {
    if x.dim() != 2 || x.size()[0] == 0 {
        return Err(EvalError::Shape {
            what: "diagnostics features".into(),
            expected: "a non-empty [n, d] matrix".into(),
            got: x.size(),
        });
    }
    let rank = rank_diagnostics(x)?;
    let cosine = match labels {
        Some(y) => Some(class_cosine_similarity(x, y)?),
        None => None,
    };
    Ok(DiagnosticsResult {
        n: x.size()[0],
        d: x.size()[1],
        rank: rank.into(),
        intra_class_cosine: cosine.and_then(|c| c.intra),
        inter_class_cosine: cosine.and_then(|c| c.inter),
    })
}
