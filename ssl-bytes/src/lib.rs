//! ssl-bytes: tensors as host bytes, and the checksum of bytes, for the
//! crates that store or compare raw tensor data (ssl-models' safetensors,
//! `torch.save` and Detectron2 writers and its checkpoint checksum;
//! ssl-dist's cross-rank checksum).
//!
//! - [`host_bytes`]: a tensor's elements copied into fresh host bytes.
//! - [`Checksum`]: 64-bit FNV-1a, eight bytes per round.
//!
//! A crate of its own because its two users cannot depend on each other
//! (ssl-dist knows nothing of models, ssl-models nothing of distribution)
//! and the dependency-free `ssl-files` must not link libtorch (xtask uses
//! it).
//!
//! ```
//! use tch::{Device, Kind, Tensor};
//! let t = Tensor::arange(6, (Kind::Int16, Device::Cpu)).view([2, 3]).tr();
//! // Row-major values of the transposed view: 0 3 1 4 2 5.
//! let bytes = ssl_bytes::host_bytes(&t)?;
//! assert_eq!(bytes.len(), 12);
//! assert_eq!(bytes[..4], [0u16.to_ne_bytes(), 3u16.to_ne_bytes()].concat());
//! # Ok::<(), tch::TchError>(())
//! ```
//!
//! Architecture Invariant: depends on tch only; knows nothing of models,
//! files, datasets or communicators.

use tch::{Device, TchError, Tensor};

/// A fresh copy of `tensor`'s elements as bytes in the host's byte order,
/// row-major: detached, copied to the CPU and made contiguous first, so any
/// device, layout or dtype is taken as it is (convert the dtype before
/// calling to store another one).
pub fn host_bytes(tensor: &Tensor) -> Result<Vec<u8>, TchError> {
    let host = tensor
        .f_detach()?
        .f_to_device(Device::Cpu)?
        .f_contiguous()?;
    let numel = host.numel();
    let mut bytes = vec![0u8; numel * host.f_kind()?.elt_size_in_bytes()];
    host.f_copy_data_u8(&mut bytes, numel)?;
    Ok(bytes)
}

/// 64-bit FNV-1a over messages, eight bytes (a little-endian word) per
/// round, the bytes after the last whole word one per round, then the
/// message's length (so `["ab", "c"]` and `["a", "bc"]` differ). Order
/// sensitive: equal only for the same messages, in the same order,
/// bit for bit (short of a collision).
///
/// Stored in checkpoint and export files (ssl-models), so the algorithm is
/// fixed: a change would make every existing file fail its check.
///
/// ```
/// let mut sum = ssl_bytes::Checksum::new();
/// sum.update(b"layer.weight");
/// sum.update(&[0u8; 16]);
/// let mut other = ssl_bytes::Checksum::new();
/// other.update(b"layer.weight");
/// other.update(&[0u8; 17]);
/// assert_ne!(sum.finish(), other.finish());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum(u64);

impl Checksum {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// The checksum of no message.
    pub fn new() -> Checksum {
        Checksum(Self::OFFSET)
    }

    /// Mixes in one message.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(Self::PRIME);
        }
        for &b in words.remainder() {
            h = (h ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
        self.0 = (h ^ bytes.len() as u64).wrapping_mul(Self::PRIME);
    }

    /// The checksum of the messages so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Checksum {
    fn default() -> Checksum {
        Checksum::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn values_in_row_major_order_for_every_layout_and_dtype() {
        let t = Tensor::arange(24, (Kind::Float, Device::Cpu)).view([2, 3, 4]) / 7.0;
        let want: Vec<u8> = (0..24)
            .flat_map(|i| (i as f32 / 7.0).to_ne_bytes())
            .collect();
        assert_eq!(host_bytes(&t).unwrap(), want);
        // A non-contiguous view: its values, not its storage.
        let tr = Tensor::arange(6, (Kind::Int64, Device::Cpu))
            .view([2, 3])
            .tr();
        let want: Vec<u8> = [0i64, 3, 1, 4, 2, 5]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        assert_eq!(host_bytes(&tr).unwrap(), want);
        // A tensor that requires grad, a scalar, an empty one, bools.
        let g = Tensor::from_slice(&[1.5f64, -2.0]).set_requires_grad(true);
        assert_eq!(
            host_bytes(&g).unwrap(),
            [1.5f64.to_ne_bytes(), (-2.0f64).to_ne_bytes()].concat()
        );
        assert_eq!(host_bytes(&Tensor::from(5i64)).unwrap(), 5i64.to_ne_bytes());
        let empty = Tensor::zeros([0, 3], (Kind::Float, Device::Cpu));
        assert!(host_bytes(&empty).unwrap().is_empty());
        let b = Tensor::from_slice(&[true, false, true]);
        assert_eq!(host_bytes(&b).unwrap(), [1, 0, 1]);
    }

    /// The value stored in every checkpoint written so far: fixed.
    #[test]
    fn checksum_is_the_stored_algorithm() {
        let mut sum = Checksum::new();
        assert_eq!(sum.finish(), 0xcbf2_9ce4_8422_2325);
        sum.update(b"layer.weight");
        sum.update(&(0..21).collect::<Vec<u8>>()); // two words and five bytes
        sum.update(b"");
        assert_eq!(sum.finish(), 0xfed6_3cdb_bed6_0d16);
        // Message boundaries count.
        let (mut a, mut b) = (Checksum::new(), Checksum::new());
        a.update(b"ab");
        a.update(b"c");
        b.update(b"a");
        b.update(b"bc");
        assert_ne!(a, b);
        // A one-bit change anywhere, in a word or in the tail.
        let data = vec![7u8; 27];
        let mut base = Checksum::new();
        base.update(&data);
        for i in [0, 8, 23, 26] {
            let mut flipped = data.clone();
            flipped[i] ^= 1;
            let mut c = Checksum::new();
            c.update(&flipped);
            assert_ne!(c, base, "byte {i}");
        }
    }

    #[test]
    fn cuda_tensors_are_copied_to_the_host() {
        if !tch::Cuda::is_available() {
            return;
        }
        let t = Tensor::arange(10, (Kind::Float, Device::Cuda(0)));
        assert_eq!(
            host_bytes(&t).unwrap(),
            host_bytes(&t.to_device(Device::Cpu)).unwrap()
        );
    }
}
