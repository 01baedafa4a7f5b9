//! The input convention shared by every loss.
//!
//! Every loss takes the embeddings of all views as **one tensor
//! `[views, m, d]`**: view `v` of example `r` is row `[v, r, :]`, and row
//! `r` of every view comes from the same image. A trainer that ran its head
//! on the concatenation of the views (`[views·m, d]`, view-major, as the
//! reference does) gets this layout with `.view([views, m, d])`, without a
//! copy.

use tch::{Kind, Tensor};

use crate::LossError;

/// The shape `(views, m, d)` of a `[views, m, d]` floating-point tensor
/// with at least `min_views` views and at least `min_rows` rows.
pub fn view_dims(
    x: &Tensor,
    what: &'static str,
    min_views: i64,
    min_rows: i64,
) -> Result<(i64, i64, i64), LossError> {
    let shape = x.size();
    let [views, m, d] = shape[..] else {
        return Err(LossError::Shape {
            what,
            problem: format!("expected a [views, m, d] tensor, got shape {shape:?}"),
        });
    };
    if !matches!(
        x.kind(),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    ) {
        return Err(LossError::Shape {
            what,
            problem: format!("expected a floating-point tensor, got {:?}", x.kind()),
        });
    }
    if views < min_views || m < min_rows || d < 1 {
        return Err(LossError::Shape {
            what,
            problem: format!(
                "shape {shape:?} needs at least {min_views} views, {min_rows} examples and 1 channel"
            ),
        });
    }
    Ok((views, m, d))
}

/// Checks that a loss taking exactly two views got two.
pub fn two_view_dims(
    x: &Tensor,
    what: &'static str,
    min_rows: i64,
) -> Result<(i64, i64), LossError> {
    let (views, m, d) = view_dims(x, what, 2, min_rows)?;
    if views != 2 {
        return Err(LossError::Shape {
            what,
            problem: format!("this loss is defined for exactly 2 views, got {views}"),
        });
    }
    Ok((m, d))
}

/// Checks that two `[views, m, d]` tensors have the same shape.
pub fn same_shape(a: &Tensor, b: &Tensor, what: &'static str) -> Result<(), LossError> {
    if a.size() != b.size() {
        return Err(LossError::Shape {
            what,
            problem: format!(
                "shape {:?} differs from the embeddings' {:?}",
                b.size(),
                a.size()
            ),
        });
    }
    Ok(())
}

/// The pairs `(i, j)`, `i < j`, of `views` views: `views·(views − 1)/2` of them.
pub fn view_pairs(views: i64) -> impl Iterator<Item = (i64, i64)> {
    (0..views).flat_map(move |i| (i + 1..views).map(move |j| (i, j)))
}
