//! The KServe v2 / Open Inference Protocol (REST) as plain data, shared by the server and the load tester.
//!
//! - [`codec`]: the one v2 codec: request and response bodies in every framing <-> [`Tensor`]s,
//!   checked against a model's [`Signature`]; server and load tester both go through it.
//! - [`wire`]: the protocol's parameter and header names, spelled only there.
//! - [`tensor`]: [`Tensor`] (bytes, shape, datatype), [`TensorSpec`] and [`Signature`].
//! - [`types`]: request and response bodies exactly as they travel in JSON.
//! - [`datatype`]: the v2 datatype names, their element sizes, and which have a libtorch kind.
//! - [`data`]: conversion between JSON `data` arrays (flat or nested) and little-endian tensor bytes
//!   (BYTES as length-prefixed elements),
//!   with the element count checked so that nothing is allocated for a lying `shape`.
//! - [`exposition`]: the Prometheus text format of `/metrics`, read (the one parser the load tester,
//!   the server's tests and its benchmark share).
//! - [`units`]: the duration grammar of every torchship binary's flags and config files (the
//!   deployer depends on this crate for it alone).

pub mod codec;
pub mod data;
pub mod datatype;
pub mod exposition;
pub mod tensor;
pub mod types;
pub mod units;
pub mod wire;

pub use codec::CodecError;
pub use data::{element_count, json_to_bytes, DataError, RawData};
pub use datatype::Datatype;
pub use tensor::{Signature, Tensor, TensorSpec};
pub use types::*;
