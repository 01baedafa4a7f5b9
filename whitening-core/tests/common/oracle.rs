//! The f64 oracle: the same transforms as `whitening_core::whitening`,
//! written independently of libtorch with ndarray and LAPACK
//! (ndarray-linalg), one matrix and one group at a time, following
//! `docs/reference.md` §2 literally, and the rank diagnostics from LAPACK's
//! singular values. The tests hold the batched tch path to it. It lives
//! here, not in the library, so ndarray-linalg and OpenBLAS are
//! dev-dependencies only.

use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use ndarray_linalg::{Cholesky, Eigh, Inverse, SVD, UPLO};

use whitening_core::diagnostics::RankDiagnostics;
use whitening_core::{WhiteningAxis, WhiteningConfig, WhiteningError, WhiteningKind};

fn lapack(e: ndarray_linalg::error::LinalgError) -> WhiteningError {
    WhiteningError::BadInput(format!("LAPACK: {e}"))
}

/// Whitens one `w × d` matrix (rows are examples). `perm[k]` is the input
/// channel placed at position `k` before grouping (`None`: identity).
pub fn whiten(
    x: ArrayView2<'_, f64>,
    cfg: &WhiteningConfig,
    perm: Option<&[usize]>,
) -> Result<Array2<f64>, WhiteningError> {
    let (w, d) = x.dim();
    cfg.validate(w as i64, d as i64)?;
    let g = cfg.groups as usize;
    let c = d / g;
    let identity: Vec<usize> = (0..d).collect();
    let perm = perm.unwrap_or(&identity);

    let mut centred = x.to_owned();
    match cfg.axis {
        WhiteningAxis::Batch => {
            let mean = x.mean_axis(Axis(0)).expect("w > 0");
            centred -= &mean;
        }
        WhiteningAxis::Channel => {
            for mut row in centred.rows_mut() {
                let mean = row.mean().expect("d > 0");
                row -= mean;
            }
        }
    }

    let mut out = Array2::<f64>::zeros((w, d));
    for group in 0..g {
        let channels = &perm[group * c..(group + 1) * c];
        // Z_group: w × c, columns = this group's channels.
        let mut zg = Array2::<f64>::zeros((w, c));
        for (k, &ch) in channels.iter().enumerate() {
            zg.column_mut(k).assign(&centred.column(ch));
        }
        let whitened = match cfg.axis {
            // BW: samples are rows; Σ = Z_Bᵀ Z_B / (w − minus) (c × c); Ẑ = Z_B Φᵀ.
            WhiteningAxis::Batch => {
                let cov = shrink(zg.t().dot(&zg) / (w as f64 - cfg.minus), cfg.eps);
                zg.dot(&whitening_matrix(cov.view(), cfg.kind)?.t())
            }
            // CW: Σ = Z_C Z_Cᵀ / (c − minus) (w × w) in row-major; Ẑ = Φ Z_C.
            WhiteningAxis::Channel => {
                let cov = shrink(zg.dot(&zg.t()) / (c as f64 - cfg.minus), cfg.eps);
                whitening_matrix(cov.view(), cfg.kind)?.dot(&zg)
            }
        };
        for (k, &ch) in channels.iter().enumerate() {
            out.column_mut(ch).assign(&whitened.column(k));
        }
    }
    Ok(out)
}

fn shrink(cov: Array2<f64>, eps: f64) -> Array2<f64> {
    let n = cov.nrows();
    cov * (1.0 - eps) + Array2::<f64>::eye(n) * eps
}

/// The whitening matrix `Φ` of a symmetric positive-definite `Σ` with
/// `Φ Σ Φᵀ = I`.
pub fn whitening_matrix(
    cov: ArrayView2<'_, f64>,
    kind: WhiteningKind,
) -> Result<Array2<f64>, WhiteningError> {
    let n = cov.nrows();
    Ok(match kind {
        WhiteningKind::Zca => {
            let (eig, u) = cov.eigh(UPLO::Lower).map_err(lapack)?;
            let scaled = &u * &eig.mapv(|l| l.powf(-0.5));
            scaled.dot(&u.t())
        }
        WhiteningKind::Pca => {
            // The reference's route: SVD of Σ, Φ = Λ^{-1/2} Uᵀ (descending order).
            let (u, s, _) = cov.to_owned().svd(true, false).map_err(lapack)?;
            let u = u.expect("U requested");
            let inv_sqrt: Array1<f64> = s.mapv(|l| l.powf(-0.5));
            let mut phi = u.t().to_owned();
            for (mut row, f) in phi.rows_mut().into_iter().zip(inv_sqrt.iter()) {
                row *= *f;
            }
            phi
        }
        WhiteningKind::Cholesky => {
            let l = cov.cholesky(UPLO::Lower).map_err(lapack)?;
            l.inv().map_err(lapack)?
        }
        WhiteningKind::NewtonSchulz { iterations } => {
            let trace: f64 = cov.diag().sum();
            let normalised = cov.to_owned() / trace;
            let mut p = Array2::<f64>::eye(n);
            for _ in 0..iterations {
                let p3 = p.dot(&p).dot(&p);
                p = (&p * 3.0 - p3.dot(&normalised)) * 0.5;
            }
            p / trace.sqrt()
        }
    })
}

/// Columns `group·c .. (group+1)·c` of `x`.
pub fn group_columns(x: ArrayView2<'_, f64>, group: usize, c: usize) -> ArrayView2<'_, f64> {
    x.slice_move(s![.., group * c..(group + 1) * c])
}

/// Singular values of an f64 matrix (LAPACK), descending.
pub fn singular_values(a: ArrayView2<'_, f64>) -> Result<Vec<f64>, WhiteningError> {
    let (_, s, _) = a.to_owned().svd(false, false).map_err(lapack)?;
    Ok(s.to_vec())
}

/// Rank diagnostics of an f64 matrix, from LAPACK's singular values.
pub fn rank_diagnostics(a: ArrayView2<'_, f64>) -> Result<RankDiagnostics, WhiteningError> {
    let sv = singular_values(a)?;
    Ok(RankDiagnostics::from_singular_values(
        sv,
        a.nrows(),
        a.ncols(),
    ))
}
