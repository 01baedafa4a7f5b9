//! Seeds derived from `(seed, a, b)` so that every random draw of the
//! pipeline (an epoch's order, a sample's augmentations) has its own
//! independent stream, whatever thread runs it.

/// SplitMix64's output function (Steele, Lea & Flood, 2014): a bijective
/// mixer of 64-bit words.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 32-byte ChaCha seed from `(seed, a, b)`: four SplitMix64 words of the
/// chained mix `h = mix(mix(mix(seed) ⊕ a) ⊕ b)`.
pub fn derive_seed(seed: u64, a: u64, b: u64) -> [u8; 32] {
    let mut h = splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b);
    let mut out = [0u8; 32];
    for chunk in out.chunks_exact_mut(8) {
        h = splitmix64(h);
        chunk.copy_from_slice(&h.to_le_bytes());
    }
    out
}
