//! The workspace's one pickle encoder: the few opcodes its two pickle
//! writers need, [`torch_save`](crate::torch_save) (protocol 2, the
//! opcodes and globals of torch's weights-only unpickler) and the
//! Detectron2 export in [`export`](crate::export) (protocol 3, numpy
//! arrays). No memo: every value is written where it is used.
//!
//! Values are pushed in pickle's postfix order: `mark`, the items, then
//! `tuple` / `set_items`; a callable (`global`), its argument tuple, then
//! `reduce`.

use crate::ModelError;

/// The opcodes used (names as in CPython's `pickletools`).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const GLOBAL: u8 = b'c';
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
    pub const BINPERSID: u8 = b'Q';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const LONG1: u8 = 0x8a;
    pub const BINUNICODE: u8 = b'X';
    pub const BINBYTES: u8 = b'B';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE3: u8 = 0x87;
    pub const EMPTY_DICT: u8 = b'}';
    pub const SETITEMS: u8 = b'u';
}

/// A pickle being written.
#[derive(Debug)]
pub(crate) struct Pickle {
    out: Vec<u8>,
    protocol: u8,
}

impl Pickle {
    /// A pickle of `protocol` (2 or 3).
    pub(crate) fn new(protocol: u8) -> Pickle {
        debug_assert!((2..=3).contains(&protocol), "protocol {protocol}");
        Pickle {
            out: vec![op::PROTO, protocol],
            protocol,
        }
    }

    /// The finished pickle (STOP appended).
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.push(op::STOP);
        self.out
    }

    /// Opens a tuple or the items of `set_items`.
    pub(crate) fn mark(&mut self) {
        self.out.push(op::MARK);
    }

    /// The tuple of everything since the last [`mark`](Self::mark).
    pub(crate) fn tuple(&mut self) {
        self.out.push(op::TUPLE);
    }

    /// The tuple of the last value.
    pub(crate) fn tuple1(&mut self) {
        self.out.push(op::TUPLE1);
    }

    /// The tuple of the last three values.
    pub(crate) fn tuple3(&mut self) {
        self.out.push(op::TUPLE3);
    }

    /// `()`.
    pub(crate) fn empty_tuple(&mut self) {
        self.out.push(op::EMPTY_TUPLE);
    }

    /// `{}`; fill it with `mark`, key/value pairs, `set_items`.
    pub(crate) fn empty_dict(&mut self) {
        self.out.push(op::EMPTY_DICT);
    }

    /// Adds the key/value pairs since the last mark to the dict below them.
    pub(crate) fn set_items(&mut self) {
        self.out.push(op::SETITEMS);
    }

    /// The object `module.name` (a class or function).
    pub(crate) fn global(&mut self, module: &str, name: &str) {
        self.out.push(op::GLOBAL);
        self.out
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    /// Calls the callable below the argument tuple on top.
    pub(crate) fn reduce(&mut self) {
        self.out.push(op::REDUCE);
    }

    /// `obj.__setstate__(state)` with the state on top.
    pub(crate) fn build(&mut self) {
        self.out.push(op::BUILD);
    }

    /// The value on top is a persistent id, resolved by the unpickler's
    /// `persistent_load` (torch: a storage).
    pub(crate) fn persistent_id(&mut self) {
        self.out.push(op::BINPERSID);
    }

    /// `None`.
    pub(crate) fn none(&mut self) {
        self.out.push(op::NONE);
    }

    /// `True` / `False`.
    pub(crate) fn bool(&mut self, b: bool) {
        self.out.push(if b { op::NEWTRUE } else { op::NEWFALSE });
    }

    /// An int: 4 bytes when it fits, else 8.
    pub(crate) fn int(&mut self, v: i64) {
        if let Ok(v) = i32::try_from(v) {
            self.out.push(op::BININT);
            self.out.extend_from_slice(&v.to_le_bytes());
        } else {
            self.out.extend_from_slice(&[op::LONG1, 8]);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// `(v0, v1, …)` of ints.
    pub(crate) fn int_tuple(&mut self, values: &[i64]) {
        self.mark();
        for &v in values {
            self.int(v);
        }
        self.tuple();
    }

    /// A `str` (names and labels: far below 4 GiB).
    pub(crate) fn string(&mut self, s: &str) {
        self.out.push(op::BINUNICODE);
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A `bytes` object (protocol 3) of at most 4 GiB; `what` names the
    /// value in the error for a larger one.
    pub(crate) fn bytes(&mut self, what: &str, data: &[u8]) -> Result<(), ModelError> {
        debug_assert!(self.protocol >= 3, "BINBYTES needs protocol 3");
        let len = u32::try_from(data.len()).map_err(|_| {
            ModelError::Config(format!(
                "`{what}` is over 4 GiB, too large for pickle BINBYTES"
            ))
        })?;
        self.out.push(op::BINBYTES);
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(data);
        Ok(())
    }

    /// `collections.OrderedDict()`.
    pub(crate) fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.empty_tuple();
        self.reduce();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's own pickle reads every value back (protocols 2 and 3).
    #[test]
    fn python_reads_every_opcode() {
        for protocol in [2u8, 3] {
            let mut p = Pickle::new(protocol);
            p.empty_dict();
            p.mark();
            p.string("ints");
            p.int_tuple(&[0, -1, i64::from(i32::MAX), 1 << 40, -(1 << 40)]);
            p.string("flags");
            p.none();
            p.bool(true);
            p.bool(false);
            p.tuple3();
            p.string("one");
            p.string("é");
            p.tuple1();
            p.string("empty");
            p.empty_tuple();
            p.string("od");
            p.empty_ordered_dict();
            p.string("built");
            p.global("types", "SimpleNamespace");
            p.empty_tuple();
            p.reduce();
            p.empty_dict();
            p.mark();
            p.string("k");
            p.int(7);
            p.set_items();
            p.build();
            if protocol >= 3 {
                p.string("bytes");
                p.bytes("b", b"\x00\xffab").unwrap();
            }
            p.set_items();
            let dir = test_support::scratch_dir();
            let path = dir.path().join("p.pkl");
            std::fs::write(&path, p.finish()).unwrap();
            let out = test_support::run_python(
                r#"
import sys, json, pickle, collections
data = open(sys.argv[1], "rb").read()
assert data[:2] == bytes([0x80, int(sys.argv[2])])
d = pickle.loads(data)
assert type(d["od"]) is collections.OrderedDict and len(d["od"]) == 0
print(json.dumps({
    "ints": list(d["ints"]), "flags": list(d["flags"]), "one": list(d["one"]),
    "empty": list(d["empty"]), "built": vars(d["built"]),
    "bytes": list(d["bytes"]) if "bytes" in d else None,
}))
"#,
                &[path.to_str().unwrap(), &protocol.to_string()],
            );
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(
                v["ints"],
                serde_json::json!([0, -1, 2147483647, 1i64 << 40, -(1i64 << 40)])
            );
            assert_eq!(v["flags"], serde_json::json!([null, true, false]));
            assert_eq!(v["one"], serde_json::json!(["é"]));
            assert_eq!(v["empty"], serde_json::json!([]));
            assert_eq!(v["built"], serde_json::json!({"k": 7}));
            if protocol >= 3 {
                assert_eq!(v["bytes"], serde_json::json!([0, 255, 97, 98]));
            }
        }
    }
}
