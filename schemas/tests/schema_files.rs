//! The committed files in `schemas/json/` are exactly what the types generate.

use std::path::Path;

#[test]
fn committed_schema_files_match_what_the_types_generate() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("json");
    let bless = std::env::var_os("MOSS_BLESS").is_some_and(|value| value == "1");
    let generated = moss_schemas::schema::schema_files();
    let mut stale = Vec::new();
    for file in &generated {
        let path = directory.join(&file.name);
        if bless {
            std::fs::create_dir_all(&directory).unwrap();
            std::fs::write(&path, &file.contents).unwrap();
            continue;
        }
        // Compared as JSON values, so member order (which serde_json's features may change)
        // does not matter; the content does.
        let committed = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        let expected: serde_json::Value = serde_json::from_str(&file.contents).unwrap();
        if committed.as_ref() != Some(&expected) {
            stale.push(file.name.clone());
        }
    }
    let names: Vec<&str> = generated.iter().map(|file| file.name.as_str()).collect();
    let extra: Vec<String> = std::fs::read_dir(&directory)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".json") && !names.contains(&name.as_str()))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "schemas/json is out of date (stale: {stale:?}, not generated: {extra:?}); regenerate with \
         `cargo run -p moss-schemas --example generate-schemas` (or MOSS_BLESS=1 cargo test -p moss-schemas) \
         and commit the result; never edit these files by hand"
    );
}
