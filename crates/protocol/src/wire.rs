//! The v2 wire keys: every parameter name and header the protocol's extensions define, spelled
//! here and nowhere else in the workspace (`tests/wire_keys.rs` checks the tree), so the
//! server, the load tester and the tests cannot drift apart.

/// Binary tensor data extension: the length of the JSON header that starts the body; `0` means
/// the whole body is the raw bytes of a single-input model's one input.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Input or output parameter: this tensor's bytes follow the JSON header, and this is their count.
pub const BINARY_DATA_SIZE: &str = "binary_data_size";

/// Request parameter: return every output as binary data unless the output says otherwise.
pub const BINARY_DATA_OUTPUT: &str = "binary_data_output";

/// Requested-output parameter: return this output as binary data (or, `false`, as JSON).
pub const BINARY_DATA: &str = "binary_data";

/// Request parameter: the client's own timeout in microseconds (it shortens the server's).
pub const TIMEOUT: &str = "timeout";

/// Request parameter: the priority level, 1 served first; 0 or absent is the model's default.
pub const PRIORITY: &str = "priority";

/// Requested-output parameter of the classification extension: return this output's top N
/// classes per row (BYTES `"value:index[:label]"`) instead of the tensor.
pub const CLASSIFICATION: &str = "classification";

/// The keys of the binary extension: as quoted literals they may appear in this file only.
/// (`timeout`, `priority` and `classification` are ordinary words elsewhere, so the check leaves them out.)
pub const EXTENSION_KEYS: [&str; 4] = [
    HEADER_LENGTH,
    BINARY_DATA_SIZE,
    BINARY_DATA_OUTPUT,
    BINARY_DATA,
];

/// Content type of a body that carries binary tensor data after its JSON header.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Content type of a JSON-only body.
pub const JSON: &str = "application/json";
