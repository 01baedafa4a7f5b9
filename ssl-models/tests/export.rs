//! Export: encoder safetensors with torchvision names, and the Detectron2
//! pickle checked by Python's `pickle` against MoCo's conversion script
//! applied to torchvision's own state_dict keys.

mod common;

use common::{bit_equal, variables};
use ssl_models::export::{detectron2_name, export_detectron2, export_encoder, load_encoder};
use ssl_models::{Depth, Mlp, ModelError, ProjectionHeadConfig, ResNet, ResNetConfig, Stem};
use tch::nn::VarStore;
use tch::Device;

/// Reads both exports without any library of ours: the safetensors file by
/// its format (8-byte length, JSON header, raw little-endian data), the
/// pickle with `pickle.load`; converts torchvision's resnet50 keys with
/// MoCo's `convert-pretrain-to-detectron2.py` loop; reports what matches.
const CHECK: &str = r#"
import sys, json, pickle, struct, numpy as np, torchvision
st_path, pkl_path = sys.argv[1], sys.argv[2]
raw = open(st_path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
header.pop("__metadata__", None)
np_dtype = {"F32": np.float32, "I64": np.int64}
st = {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]], dtype=np_dtype[v["dtype"]]).reshape(v["shape"])
      for k, v in header.items()}
tv_keys = list(torchvision.models.resnet50().state_dict().keys())
tv_keys = [k for k in tv_keys if not k.startswith("fc.")]
def moco(k):
    if "layer" not in k:
        k = "stem." + k
    for t in [1, 2, 3, 4]:
        k = k.replace("layer{}".format(t), "res{}".format(t + 1))
    for t in [1, 2, 3]:
        k = k.replace("bn{}".format(t), "conv{}.norm".format(t))
    k = k.replace("downsample.0", "shortcut")
    k = k.replace("downsample.1", "shortcut.norm")
    return k
with open(pkl_path, "rb") as f:
    obj = pickle.load(f, encoding="latin1")  # as Detectron2 reads it
model = obj["model"]
print(json.dumps({
    "top_keys": sorted(obj.keys()),
    "author": obj["__author__"],
    "heuristics": obj["matching_heuristics"] is True,
    "st_keys_equal_torchvision": sorted(st) == sorted(tv_keys),
    "d2_keys_equal_moco": sorted(model) == sorted(moco(k) for k in tv_keys),
    "all_ndarray": all(type(v) is np.ndarray for v in model.values()),
    "values_equal": all(model[moco(k)].dtype == st[k].dtype and model[moco(k)].shape == st[k].shape
                        and np.array_equal(model[moco(k)], st[k]) for k in tv_keys),
    "count": len(model),
    "stem_shape": list(model["stem.conv1.weight"].shape),
    "counter": [str(model["res2.0.conv1.norm.num_batches_tracked"].dtype), list(model["res2.0.conv1.norm.num_batches_tracked"].shape)],
}))
"#;

#[test]
fn encoder_and_detectron2_exports_load_in_python_with_torchvision_and_moco_names() {
    common::single_threaded();
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let config = ResNetConfig::new(Depth::ResNet50, Stem::ImageNet).with_width(0.125);
    ResNet::new(&(vs.root() / "encoder"), &config).expect("encoder");
    Mlp::projection_head(
        &(vs.root() / "head"),
        &ProjectionHeadConfig::small_dataset(256, 32),
    )
    .expect("head");
    let dir = test_support::scratch_dir();
    let st = dir.path().join("encoder.safetensors");
    let pkl = dir.path().join("backbone.pkl");
    let n = export_encoder(&vs, "encoder.", &st).expect("export");
    let n_d2 = export_detectron2(&vs, "encoder.", "whitening-ssl", &pkl).expect("d2");
    assert_eq!(n, n_d2);

    let report = test_support::run_python(
        CHECK,
        &[st.to_str().expect("utf-8"), pkl.to_str().expect("utf-8")],
    );
    let r: serde_json::Value = serde_json::from_str(report.trim()).expect("JSON");
    assert_eq!(
        r["top_keys"],
        serde_json::json!(["__author__", "matching_heuristics", "model"])
    );
    assert_eq!(r["author"], "whitening-ssl");
    assert_eq!(r["heuristics"], true);
    assert_eq!(
        r["st_keys_equal_torchvision"], true,
        "safetensors names are torchvision's resnet50 keys"
    );
    assert_eq!(
        r["d2_keys_equal_moco"], true,
        "pickle keys are MoCo's conversion of them"
    );
    assert_eq!(r["all_ndarray"], true);
    assert_eq!(
        r["values_equal"], true,
        "pickle arrays equal the encoder's tensors"
    );
    assert_eq!(r["count"].as_u64(), Some(n as u64));
    assert_eq!(r["stem_shape"], serde_json::json!([8, 3, 7, 7]));
    assert_eq!(r["counter"], serde_json::json!(["int64", []]));

    // Round trip into a fresh encoder built at the root.
    let fresh = VarStore::new(Device::Cpu);
    ResNet::new(&fresh.root(), &config).expect("fresh");
    load_encoder(&fresh, "", &st).expect("load");
    let original = variables(&vs);
    for (name, t) in variables(&fresh) {
        assert!(
            bit_equal(&t, &original[&format!("encoder.{name}")]),
            "{name}"
        );
    }
    // A thinner encoder does not fit: the error names the tensors.
    let other = VarStore::new(Device::Cpu);
    ResNet::new(&other.root(), &config.with_width(0.0625)).expect("thin");
    let err = load_encoder(&other, "", &st).expect_err("mismatch");
    assert!(
        matches!(err, ModelError::Mismatch { .. })
            && err.to_string().contains("`layer1.0.conv1.weight`"),
        "{err}"
    );
    assert!(
        export_encoder(&vs, "missing.", &st).is_err(),
        "an empty prefix match is an error"
    );
}

#[test]
fn detectron2_names_follow_moco_conversion() {
    common::single_threaded();
    for (tv, d2) in [
        ("conv1.weight", "stem.conv1.weight"),
        ("bn1.running_var", "stem.conv1.norm.running_var"),
        ("layer1.0.bn2.weight", "res2.0.conv2.norm.weight"),
        ("layer4.2.conv3.weight", "res5.2.conv3.weight"),
        ("layer2.0.downsample.0.weight", "res3.0.shortcut.weight"),
        (
            "layer2.0.downsample.1.running_mean",
            "res3.0.shortcut.norm.running_mean",
        ),
    ] {
        assert_eq!(detectron2_name(tv), d2);
    }
}
