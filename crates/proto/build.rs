//! Generates the prost types and their proto3 JSON (serde) impls from `proto/`
//! with `protox`, so no system `protoc` is needed.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "switchboard/v1/envelope.proto",
        "switchboard/v1/common.proto",
        "switchboard/v1/agent_presence.proto",
        "switchboard/v1/wrap_up.proto",
        "switchboard/v1/conversation.proto",
        "switchboard/v1/routing.proto",
    ];
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile(files.iter().map(|f| root.join(f)), [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out.join("switchboard_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&descriptors))?;

    prost_build::Config::new()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_protos(&files.map(|f| root.join(f)), std::slice::from_ref(&root))?;

    let descriptor_set = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new().register_descriptors(&descriptor_set)?.build(&[".switchboard"])?;
    Ok(())
}
