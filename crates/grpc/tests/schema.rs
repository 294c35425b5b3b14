//! Every message and field of proto/inference.proto against the descriptors compiled into
//! tritonclient's own wheel (`tritonclient.grpc.service_pb2`, `model_config_pb2`): same numbers,
//! types and labels, so the real client and this server agree on the wire. Needs the project's
//! Python environment (scripts/setup.sh installs tritonclient[grpc]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet};

type Fields = BTreeMap<String, BTreeMap<String, (i32, i32, i32)>>;

fn collect(prefix: &str, messages: &[DescriptorProto], out: &mut Fields) {
    for m in messages {
        let name = format!("{prefix}{}", m.name());
        let fields = m
            .field
            .iter()
            .map(|f| {
                (
                    f.name().to_string(),
                    (f.number(), f.r#type() as i32, f.label() as i32),
                )
            })
            .collect();
        collect(&format!("{name}."), &m.nested_type, out);
        // protobuf's map entries are generated messages; the map field itself is compared.
        if !m.options.as_ref().is_some_and(|o| o.map_entry()) {
            out.insert(name, fields);
        }
    }
}

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup.sh (it installs tritonclient[grpc])",
        venv.display()
    );
    venv
}

/// What tritonclient's compiled descriptors say about these messages, as the same map.
fn published(names: &[&String]) -> Fields {
    let script = r#"
import json, sys
from tritonclient.grpc import service_pb2, model_config_pb2
out = {}
for full in json.loads(sys.argv[1]):
    parts = full.split(".")
    obj = getattr(service_pb2, parts[0], None) or getattr(model_config_pb2, parts[0], None)
    for p in parts[1:]:
        obj = getattr(obj, p, None) if obj is not None else None
    if obj is None:
        continue
    d = obj.DESCRIPTOR
    out[full] = {f.name: [f.number, f.type, f.label] for f in d.fields}
print(json.dumps(out))
"#;
    let arg = serde_json::to_string(names).unwrap();
    let run = std::process::Command::new(python())
        .args(["-c", script, &arg])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let raw: BTreeMap<String, BTreeMap<String, (i32, i32, i32)>> =
        serde_json::from_slice(&run.stdout).unwrap();
    raw
}

#[test]
fn every_field_matches_tritonclients_own_descriptors() {
    let set = FileDescriptorSet::decode(torchship_grpc::FILE_DESCRIPTOR_SET).unwrap();
    let mut ours = Fields::new();
    for file in &set.file {
        collect("", &file.message_type, &mut ours);
    }
    let names: Vec<&String> = ours.keys().collect();
    let theirs = published(&names);
    for (message, fields) in &ours {
        let Some(published) = theirs.get(message) else {
            panic!("{message} is not a message of tritonclient's protocol");
        };
        for (field, ours) in fields {
            assert_eq!(
                published.get(field),
                Some(ours),
                "{message}.{field}: (number, type, label) here {ours:?}, published {:?}",
                published.get(field)
            );
        }
    }
    assert!(ours.len() >= 20, "only {} messages compared", ours.len());
}
