//! The affine-free batch standardisation several losses apply to the head
//! output (Barlow Twins, SimCLR): `BatchNorm1d(d, affine=False)` in
//! training mode.

use tch::Tensor;

/// `BatchNorm1d`'s default eps.
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// `(x − mean) / sqrt(var_biased + eps)` over the rows (axis −2) of
/// `x: [.., m, d]`, channel by channel.
pub fn batch_standardize(x: &Tensor, eps: f64) -> Tensor {
    let centred = x - x.mean_dim(-2, true, None);
    let var = centred.square().mean_dim(-2, true, None);
    centred / (var + eps).sqrt()
}
