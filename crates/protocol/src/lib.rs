//! The KServe v2 / Open Inference Protocol (REST) as plain data, shared by the server and the load tester.
//!
//! - [`types`]: request and response bodies exactly as they travel in JSON.
//! - [`datatype`]: the v2 datatype names, their element sizes, and which have a libtorch kind.
//! - [`data`]: conversion between JSON `data` arrays (flat or nested) and little-endian tensor bytes,
//!   with the element count checked so that nothing is allocated for a lying `shape`.
//! - [`units`]: the duration grammar of every torchship binary's flags and config files (the
//!   deployer depends on this crate for it alone).

pub mod data;
pub mod datatype;
pub mod types;
pub mod units;

pub use data::{element_count, json_to_bytes, DataError, RawData};
pub use datatype::Datatype;
pub use types::*;
