//! Rebuilds the binary when the shipped pipeline changes: `lakehouse demo`
//! embeds `layers/` and `sql/` (include_dir cannot track new files on stable).

fn main() {
    println!("cargo:rerun-if-changed=layers");
    println!("cargo:rerun-if-changed=sql");
}
