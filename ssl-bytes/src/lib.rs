//! ssl-bytes: tensors as host bytes, for the crates that store or compare
//! raw tensor data (ssl-models' safetensors, `torch.save` and Detectron2
//! writers; ssl-dist's cross-rank checksum).
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
