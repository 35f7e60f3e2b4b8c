//! Generates the v1 API from `proto/` with protoc (installed by `scripts/setup`), plus the
//! file descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when it runs, not when it was compiled: a build script reused from a checkout
    // that has since moved would look for the protos where they were.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let mut files: Vec<_> =
        ["common", "admin", "channel", "agent", "supervisor", "events", "webhooks", "explain"]
            .iter()
            .map(|f| root.join(format!("switchboard/v1/{f}.proto")))
            .collect();
    files.push(root.join("switchboard/internal/v1/log.proto"));
    files.push(root.join("switchboard/internal/v1/mesh.proto"));
    files.push(root.join("switchboard/internal/v1/calls.proto"));
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Encoded in key order, so the same request always encodes to the same bytes (a
        // retry is told from another call by them, `tenant::call_digest`).
        .btree_map(".switchboard.v1.TenantSettings.customer_group_priorities")
        .file_descriptor_set_path(out.join("switchboard_v1_descriptor.bin"))
        .compile_protos(&files, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
