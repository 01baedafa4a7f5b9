//! The distributed sampler (the contract of PyTorch's `DistributedSampler`):
//! every rank draws the same permutation of the dataset for an epoch (same
//! seed, same epoch), pads it by repeating its head (or, with `drop_last`,
//! truncates it) to a multiple of the world size, and keeps every
//! `world_size`-th index starting at its rank. The shards are disjoint, of
//! equal length, and together cover the epoch.
//!
//! With per-rank batches of `B / P`, batch `b` of the `P` ranks together
//! holds exactly the samples of batch `b` of one process with batch `B`
//! (positions `bB .. (b+1)B` of the permutation, interleaved), so a
//! data-parallel step sees the same images as a single-process step.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{DistError, Result};

/// Samples per rank for `len` samples over `world` ranks.
pub fn shard_len(len: usize, world: usize, drop_last: bool) -> usize {
    if drop_last {
        len / world
    } else {
        len.div_ceil(world)
    }
}

/// Rank `rank`'s shard of an epoch order (see the module documentation).
pub fn shard(order: &[usize], rank: usize, world: usize, drop_last: bool) -> Vec<usize> {
    let per = shard_len(order.len(), world, drop_last);
    if order.is_empty() {
        return Vec::new();
    }
    (0..per)
        .map(|i| order[(i * world + rank) % order.len()])
        .collect()
}

/// Per-epoch shards of `0..len` for one rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DistributedSampler {
    /// Dataset length.
    pub len: usize,
    /// This rank.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Seed of the permutations (the same on every rank).
    pub seed: u64,
    /// Permute each epoch (else the dataset order).
    pub shuffle: bool,
    /// Truncate to a multiple of the world size instead of padding.
    pub drop_last: bool,
}

impl DistributedSampler {
    /// Shuffled, padded shards; fails when `rank >= world_size`.
    pub fn new(len: usize, rank: usize, world_size: usize, seed: u64) -> Result<Self> {
        if world_size == 0 || rank >= world_size {
            return Err(DistError::Invalid(format!(
                "sampler: rank {rank} is outside a world of {world_size}"
            )));
        }
        Ok(Self {
            len,
            rank,
            world_size,
            seed,
            shuffle: true,
            drop_last: false,
        })
    }

    /// Indices per rank and epoch.
    pub fn num_samples(&self) -> usize {
        shard_len(self.len, self.world_size, self.drop_last)
    }

    /// The permutation every rank draws for `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            let seed = self
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(epoch);
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        }
        order
    }

    /// This rank's indices for `epoch`.
    pub fn indices(&self, epoch: u64) -> Vec<usize> {
        shard(
            &self.epoch_order(epoch),
            self.rank,
            self.world_size,
            self.drop_last,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_equal_and_cover_the_epoch() {
        for (len, world) in [(10, 2), (10, 3), (7, 4), (100, 8), (3, 5)] {
            for drop_last in [false, true] {
                let shards: Vec<Vec<usize>> = (0..world)
                    .map(|r| {
                        let mut s = DistributedSampler::new(len, r, world, 42).unwrap();
                        s.drop_last = drop_last;
                        s.indices(3)
                    })
                    .collect();
                let per = shards[0].len();
                assert!(shards.iter().all(|s| s.len() == per), "equal lengths");
                let mut all: Vec<usize> = shards.concat();
                all.sort_unstable();
                let distinct = {
                    let mut d = all.clone();
                    d.dedup();
                    d
                };
                if drop_last {
                    assert_eq!(per, len / world);
                    assert_eq!(distinct.len(), all.len(), "disjoint");
                } else {
                    assert_eq!(per, len.div_ceil(world));
                    assert_eq!(distinct, (0..len).collect::<Vec<_>>(), "covering");
                    // Only the padding repeats: at most world - 1 duplicates.
                    assert!(all.len() - distinct.len() < world.max(len));
                    if len >= world {
                        assert!(all.len() - len < world);
                    }
                }
            }
        }
    }

    #[test]
    fn same_seed_same_shards_and_epochs_differ() {
        let a = DistributedSampler::new(50, 1, 2, 7).unwrap();
        let b = DistributedSampler::new(50, 1, 2, 7).unwrap();
        assert_eq!(a.indices(0), b.indices(0));
        assert_ne!(a.indices(0), a.indices(1));
        let c = DistributedSampler::new(50, 1, 2, 8).unwrap();
        assert_ne!(a.indices(0), c.indices(0));
        // Rank r's batch b of size B/P = global batch b of size B, interleaved.
        let order = a.epoch_order(0);
        let (big, world) = (10, 2);
        let r0 = shard(&order, 0, world, true);
        let r1 = shard(&order, 1, world, true);
        let mut step0: Vec<usize> = r0[..big / world]
            .iter()
            .chain(&r1[..big / world])
            .copied()
            .collect();
        step0.sort_unstable();
        let mut global: Vec<usize> = order[..big].to_vec();
        global.sort_unstable();
        assert_eq!(step0, global);
        assert!(DistributedSampler::new(5, 2, 2, 0).is_err());
    }
}
