//! The committed C header must be exactly what cbindgen generates from the source.
//! `CYMEM_UPDATE_HEADER=1 cargo test --test all header::` (or `make header`) rewrites it.

use std::path::Path;

#[test]
fn committed_header_matches_cbindgen_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("header is UTF-8");

    let path = root.join("include/cymem_rs.h");
    if std::env::var_os("CYMEM_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write include/cymem_rs.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/cymem_rs.h is stale: run `make header` and commit the result"
    );
}
