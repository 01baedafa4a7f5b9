//! Writes named tensors as Python's `torch.save(state_dict)` does, so
//! `torch.load(path)` (with its default `weights_only=True`) returns an
//! `OrderedDict[str, Tensor]` that `model.load_state_dict` takes.
//!
//! The format (torch ≥ 1.6): an uncompressed zip holding, under one
//! top-level folder, `data.pkl` (a protocol-2 pickle of the dict in which
//! every tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size,
//! stride, requires_grad, OrderedDict())` and every storage a persistent id
//! `('storage', torch.FloatStorage, key, 'cpu', numel)`), one `data/<key>`
//! file of raw little-endian bytes per storage, `byteorder` and `version`.
//! Only the opcodes and globals of torch's weights-only unpickler are used
//! (written by the crate's one pickle encoder, `pickle.rs`).
//! libtorch's own C++ `torch::save` writes a TorchScript archive instead,
//! which `torch.load` does not read as a state dict.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::Path;

use tch::{Kind, Tensor};

use crate::pickle::Pickle;
use crate::ModelError;

/// The storage class and element type a tensor is saved as (floats as
/// f32, integers as i64, as a torchvision `state_dict()` holds them).
fn storage_of(t: &Tensor) -> (&'static str, Kind) {
    if t.is_floating_point() {
        ("FloatStorage", Kind::Float)
    } else {
        ("LongStorage", Kind::Int64)
    }
}

/// The bytes of a `torch.save(OrderedDict(tensors))` file.
pub fn encode(tensors: &BTreeMap<String, Tensor>) -> Result<Vec<u8>, ModelError> {
    let mut p = Pickle::new(2);
    p.empty_ordered_dict();
    p.mark();
    let mut storages = Vec::with_capacity(tensors.len());
    for (key, (name, t)) in tensors.iter().enumerate() {
        let (class, kind) = storage_of(t);
        let bytes = t
            .f_to_kind(kind)
            .and_then(|t| ssl_bytes::host_bytes(&t))
            .map_err(ModelError::tch(format!("copying `{name}`")))?;
        let numel = t.numel();
        let size = t.size();
        let mut stride = vec![1i64; size.len()];
        for d in (0..size.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * size[d + 1];
        }
        p.string(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.mark();
        // The storage, as a persistent id.
        p.mark();
        p.string("storage");
        p.global("torch", class);
        p.string(&key.to_string());
        p.string("cpu");
        p.int(numel as i64);
        p.tuple();
        p.persistent_id();
        p.int(0); // storage offset
        p.int_tuple(&size);
        p.int_tuple(&stride);
        p.bool(false); // requires_grad
        p.empty_ordered_dict(); // backward hooks
        p.tuple();
        p.reduce();
        storages.push(bytes);
    }
    p.set_items();
    let pickle = p.finish();

    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    // Stored (torch reads records in place) and 64-byte aligned, as torch writes them.
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64)
        .large_file(storages.iter().map(Vec::len).sum::<usize>() > u32::MAX as usize / 2);
    let mut entry = |name: &str, data: &[u8]| -> Result<(), ModelError> {
        zip.start_file(format!("archive/{name}"), options)
            .map_err(archive)?;
        zip.write_all(data).map_err(archive)
    };
    entry("data.pkl", &pickle)?;
    entry("byteorder", b"little")?;
    for (key, bytes) in storages.iter().enumerate() {
        entry(&format!("data/{key}"), bytes)?;
    }
    entry("version", b"3\n")?;
    Ok(zip.finish().map_err(archive)?.into_inner())
}

fn archive(e: impl std::fmt::Display) -> ModelError {
    ModelError::Config(format!("cannot build the torch.save archive: {e}"))
}

/// Writes `tensors` to `path` as `torch.save` would, atomically.
pub fn save(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<(), ModelError> {
    if tensors.is_empty() {
        return Err(ModelError::Config(format!(
            "{}: no tensors to save",
            path.display()
        )));
    }
    crate::tensor_file::write_atomic(path, &encode(tensors)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// `torch.load` (weights-only, the default) reads our file back exactly.
    #[test]
    fn torch_load_reads_the_state_dict() {
        let dir = test_support::scratch_dir();
        let path = dir.path().join("t.pt");
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "layer.weight".to_string(),
            Tensor::arange(24, (Kind::Float, Device::Cpu)).view([2, 3, 4]) / 7.0,
        );
        tensors.insert("bn.num_batches_tracked".to_string(), Tensor::from(5i64));
        // A non-contiguous view is saved as its values.
        tensors.insert(
            "t".to_string(),
            Tensor::arange(6, (Kind::Float, Device::Cpu))
                .view([2, 3])
                .tr(),
        );
        save(&tensors, &path).unwrap();
        let out = test_support::run_python(
            r#"
import sys, json, torch
sd = torch.load(sys.argv[1])
print(json.dumps({
    "type": type(sd).__name__,
    "keys": list(sd),
    "w": sd["layer.weight"].flatten().tolist(),
    "w_shape": list(sd["layer.weight"].shape),
    "n": [sd["bn.num_batches_tracked"].item(), str(sd["bn.num_batches_tracked"].dtype), list(sd["bn.num_batches_tracked"].shape)],
    "t": sd["t"].tolist(),
}))
"#,
            &[path.to_str().unwrap()],
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["type"], "OrderedDict");
        assert_eq!(
            v["keys"],
            serde_json::json!(["bn.num_batches_tracked", "layer.weight", "t"])
        );
        assert_eq!(v["w_shape"], serde_json::json!([2, 3, 4]));
        let w: Vec<f64> = serde_json::from_value(v["w"].clone()).unwrap();
        for (i, x) in w.iter().enumerate() {
            assert_eq!(*x as f32, i as f32 / 7.0, "element {i}");
        }
        assert_eq!(v["n"], serde_json::json!([5, "torch.int64", []]));
        assert_eq!(
            v["t"],
            serde_json::json!([[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]])
        );
    }
}
