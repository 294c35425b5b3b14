//! Compiles proto/inference.proto with protox (a protobuf compiler in Rust), so a fresh machine
//! needs no `protoc`, and generates the tonic server and client from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/inference.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    // Kept for the schema test (and gRPC reflection): the compiled descriptors themselves.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("inference.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Tensor bytes as `bytes::Bytes`: raw contents are slices of the received message, no copy.
        .bytes(".")
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
