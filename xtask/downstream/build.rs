// The downstream project's build script: what README's "Using the
// libraries" tells a user to write. An rpath to libtorch's lib/ for the
// program, from torch-sys's DEP_TCH_LIBTORCH_LIB.
fn main() {
    libtorch_rpath::link();
}
