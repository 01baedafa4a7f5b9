//! Random group partition (RGP) and random sub-batches
//! (`docs/reference.md` §2.3–§2.4).
//!
//! Randomness comes from an RNG the caller passes in, drawn on the host, so
//! a seed fixes every partition whatever the device.

use rand::seq::SliceRandom;
use rand::Rng;
use tch::Tensor;

use crate::WhiteningError;

/// A fresh channel permutation for each of `n` whitened matrices: an
/// `[n, d]` int64 tensor (on the CPU) whose row `i` lists the channels in
/// the order they are grouped for matrix `i` (group `k` takes positions
/// `k·d/g .. (k+1)·d/g`).
pub fn random_group_partition<R: Rng + ?Sized>(n: i64, d: i64, rng: &mut R) -> Tensor {
    let mut all = Vec::with_capacity((n * d) as usize);
    let mut row: Vec<i64> = (0..d).collect();
    for _ in 0..n {
        row.shuffle(rng);
        all.extend_from_slice(&row);
    }
    Tensor::from_slice(&all).view([n, d])
}

/// A random split of `m` examples into `m / w_size` disjoint sub-batches:
/// a permutation of `0..m` whose consecutive runs of `w_size` are the
/// sub-batches.
pub fn random_sub_batches<R: Rng + ?Sized>(
    m: i64,
    w_size: i64,
    rng: &mut R,
) -> Result<Vec<i64>, WhiteningError> {
    if w_size < 1 || m % w_size != 0 {
        return Err(WhiteningError::SubBatchDoesNotDivide { m, w_size });
    }
    let mut order: Vec<i64> = (0..m).collect();
    order.shuffle(rng);
    Ok(order)
}

/// The inverse of a permutation given as a slice: `inv[p[i]] = i`.
pub fn inverse_permutation(p: &[i64]) -> Vec<i64> {
    let mut inv = vec![0i64; p.len()];
    for (i, &pi) in p.iter().enumerate() {
        inv[pi as usize] = i as i64;
    }
    inv
}
