//! Writes the JSON Schema files generated from the types into `schemas/json/`:
//! `cargo run -p moss-schemas --example generate-schemas`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("json");
    std::fs::create_dir_all(&directory)?;
    for file in moss_schemas::schema::schema_files() {
        std::fs::write(directory.join(&file.name), file.contents)?;
        println!("wrote {}", directory.join(&file.name).display());
    }
    Ok(())
}
