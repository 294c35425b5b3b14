//! A scripted stand-in for the Kubernetes API server, for tests of the deployer and the load tester.
//!
//! A test lists the requests it expects, in order, each with what must be true of it (method, path,
//! exact query parameters, content type, a check of the JSON body) and the answer to give. The
//! server listens on 127.0.0.1:0 and writes a kubeconfig pointing at itself (bearer token
//! [`TOKEN`], checked on every request). Any request that does not match the next expectation is
//! answered 500 and recorded; [`StandIn::finish`] fails the test with every mismatch and every
//! expectation left unmet. Nothing here pretends to be a cluster beyond what a test scripts.
//!
//! Watches: [`Expect::stream`] answers with a real watch stream (newline-delimited `WatchEvent`s,
//! paced by a gap, then held open until the client goes away), and [`StandIn::start_unordered`]
//! lets concurrent watchers' requests match their expectations in any order.

//!
//! Map: [`expect`](Expect) (one expected request and its answer), `script` (matching requests to
//! expectations, in order or not), `server` ([`StandIn`]: the listener and the handler).

mod expect;
mod script;
mod server;

use serde_json::{json, Value};

pub use expect::Expect;
pub use server::StandIn;

/// The bearer token the kubeconfig carries and every request must present.
pub const TOKEN: &str = "stand-in-token";

/// A Kubernetes `Status` body, as the API server sends with errors.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}
