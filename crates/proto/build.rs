//! Generates the Rust code of the etcd v3 API and the peer protocol with tonic-build, using the
//! protoc shipped in the `protoc-bin-vendored` crate (no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto");
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(["."])
        .compile_protos(
            &[
                "proto/etcd/kv.proto",
                "proto/etcd/auth.proto",
                "proto/etcd/rpc.proto",
                "proto/chorus/peer.proto",
                "proto/chorus/session.proto",
            ],
            &["proto/etcd", "proto/chorus"],
        )?;
    Ok(())
}
