//! The `ssl` binary's build script: libtorch's rpath (the script every
//! libtorch crate shares), and the presets of `configs/` embedded into the
//! binary, so an installed or copied `ssl` has them wherever it runs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[path = "../build-support/libtorch_link.rs"]
mod libtorch_link;

fn main() {
    libtorch_link::main();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    // A directory: cargo rescans every file below it.
    println!("cargo:rerun-if-changed={}", root.display());
    let mut presets: Vec<(String, PathBuf)> = Vec::new();
    for dataset in std::fs::read_dir(&root).expect("configs/ exists") {
        let dataset = dataset.expect("configs/ is readable");
        if !dataset.file_type().expect("file type").is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dataset.path()).expect("readable preset folder") {
            let path = file.expect("readable entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                let name = format!("{}/{stem}", dataset.file_name().to_string_lossy());
                presets.push((name, path.canonicalize().expect("canonical path")));
            }
        }
    }
    presets.sort();
    let mut code = String::from(
        "/// Every preset of `configs/`: (`dataset/row`, TOML text), sorted by name.\n\
         pub static PRESETS: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &presets {
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("presets.rs"), code).expect("writing presets.rs");
}
