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
//! Only the opcodes and globals of torch's weights-only unpickler are used.
//! libtorch's own C++ `torch::save` writes a TorchScript archive instead,
//! which `torch.load` does not read as a state dict.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

/// The pickle opcodes used (protocol 2).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const GLOBAL: u8 = b'c';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const REDUCE: u8 = b'R';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const SETITEMS: u8 = b'u';
    pub const BINUNICODE: u8 = b'X';
    pub const BININT: u8 = b'J';
    pub const LONG1: u8 = 0x8a;
    pub const NEWFALSE: u8 = 0x89;
    pub const BINPERSID: u8 = b'Q';
    pub const STOP: u8 = b'.';
}

struct Pickle(Vec<u8>);

impl Pickle {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(op::GLOBAL);
        self.0
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn string(&mut self, s: &str) {
        self.0.push(op::BINUNICODE);
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: i64) {
        if let Ok(v) = i32::try_from(v) {
            self.0.push(op::BININT);
            self.0.extend_from_slice(&v.to_le_bytes());
        } else {
            self.0.extend_from_slice(&[op::LONG1, 8]);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn int_tuple(&mut self, values: &[i64]) {
        self.0.push(op::MARK);
        for &v in values {
            self.int(v);
        }
        self.0.push(op::TUPLE);
    }
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE]);
    }
}

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
pub fn encode(tensors: &BTreeMap<String, Tensor>) -> Result<Vec<u8>> {
    let mut p = Pickle(vec![op::PROTO, 2]);
    p.empty_ordered_dict();
    p.0.push(op::MARK);
    let mut storages = Vec::with_capacity(tensors.len());
    for (key, (name, t)) in tensors.iter().enumerate() {
        let (class, kind) = storage_of(t);
        let host = t.detach().to_device(Device::Cpu).to_kind(kind).contiguous();
        let numel = host.numel();
        let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
        host.f_copy_data_u8(&mut bytes, numel)
            .with_context(|| format!("copying `{name}`"))?;
        let size = host.size();
        let mut stride = vec![1i64; size.len()];
        for d in (0..size.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * size[d + 1];
        }
        p.string(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(op::MARK);
        // The storage, as a persistent id.
        p.0.push(op::MARK);
        p.string("storage");
        p.global("torch", class);
        p.string(&key.to_string());
        p.string("cpu");
        p.int(numel as i64);
        p.0.push(op::TUPLE);
        p.0.push(op::BINPERSID);
        p.int(0); // storage offset
        p.int_tuple(&size);
        p.int_tuple(&stride);
        p.0.push(op::NEWFALSE); // requires_grad
        p.empty_ordered_dict(); // backward hooks
        p.0.push(op::TUPLE);
        p.0.push(op::REDUCE);
        storages.push(bytes);
    }
    p.0.push(op::SETITEMS);
    p.0.push(op::STOP);

    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    // Stored (torch reads records in place) and 64-byte aligned, as torch writes them.
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64)
        .large_file(storages.iter().map(Vec::len).sum::<usize>() > u32::MAX as usize / 2);
    let mut entry = |name: &str, data: &[u8]| -> Result<()> {
        zip.start_file(format!("archive/{name}"), options)?;
        zip.write_all(data)?;
        Ok(())
    };
    entry("data.pkl", &p.0)?;
    entry("byteorder", b"little")?;
    for (key, bytes) in storages.iter().enumerate() {
        entry(&format!("data/{key}"), bytes)?;
    }
    entry("version", b"3\n")?;
    Ok(zip.finish()?.into_inner())
}

/// Writes `tensors` to `path` as `torch.save` would, atomically.
pub fn save(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    if tensors.is_empty() {
        bail!("{}: no tensors to save", path.display());
    }
    Ok(ssl_files::write_atomic(path, &encode(tensors)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
