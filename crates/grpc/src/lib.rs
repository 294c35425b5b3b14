//! The KServe v2 / Triton gRPC protocol for torchship's server and load tester.
//!
//! - [`pb`]: the `inference` package generated from `proto/inference.proto` (messages, the tonic
//!   server trait `GrpcInferenceService` and its client), compiled in Rust by protox at build time.
//! - [`contents`]: typed `InferTensorContents` <-> the little-endian element bytes the protocol
//!   crate's codec checks, and the `DataType` enum of model configs <-> v2 datatype names.
//! - [`wire`]: gRPC's message framing and the infer request from tensors, for clients that drive
//!   HTTP/2 themselves (the load tester).
//!
//! Every check on an inference request (names, datatypes, shapes, byte counts) is the codec's
//! (`protocol::codec::decode_binary`), so gRPC and HTTP requests are refused with the same words.

pub mod contents;
pub mod wire;

/// The generated `inference` package.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}

/// The full gRPC name of the inference service (`package.Service`).
pub const SERVICE: &str = "inference.GRPCInferenceService";

/// `proto/inference.proto` compiled: an encoded `google.protobuf.FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/inference.bin"));
