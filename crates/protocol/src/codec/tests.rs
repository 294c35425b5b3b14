//! The codec both ways: every mistake a request can make is named, and what one side encodes the
//! other decodes to the same tensors.

use bytes::Bytes;
use serde_json::json;

use super::*;
use crate::{Datatype, InferRequest, RequestInput, RequestOutput, Signature, Tensor, TensorSpec};

fn spec(name: &str, datatype: Datatype, shape: &[i64]) -> TensorSpec {
    TensorSpec::new(name, datatype, shape)
}

struct Model {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    max_batch_size: usize,
}

impl Model {
    fn sig(&self) -> Signature<'_> {
        Signature {
            inputs: &self.inputs,
            outputs: &self.outputs,
            max_batch_size: self.max_batch_size,
        }
    }
}

fn model() -> Model {
    Model {
        inputs: vec![
            spec("a", Datatype::Fp32, &[-1, 2]),
            spec("b", Datatype::Int64, &[-1]),
        ],
        outputs: vec![
            spec("y", Datatype::Fp32, &[-1, 3]),
            spec("z", Datatype::Fp32, &[-1]),
        ],
        max_batch_size: 4,
    }
}

fn input(name: &str, dt: &str, shape: Vec<u64>, data: serde_json::Value) -> RequestInput {
    RequestInput {
        name: name.into(),
        shape,
        datatype: dt.into(),
        parameters: None,
        data: Some(data),
    }
}

fn request(inputs: Vec<RequestInput>) -> InferRequest {
    InferRequest {
        inputs,
        ..Default::default()
    }
}

fn decode_with(m: &Model, r: &InferRequest, binary: &[u8]) -> Result<Decoded, CodecError> {
    let mut body = serde_json::to_vec(r).unwrap();
    let n = body.len();
    body.extend_from_slice(binary);
    let framing = if binary.is_empty() { None } else { Some(n) };
    decode_request(&m.sig(), framing, Bytes::from(body))
}

fn err(r: InferRequest) -> String {
    decode_with(&model(), &r, &[]).unwrap_err().to_string()
}

fn choices(list: &[(usize, bool)]) -> Vec<OutputChoice> {
    list.iter()
        .map(|&(index, binary)| OutputChoice {
            index,
            binary,
            classes: 0,
        })
        .collect()
}

#[test]
fn a_good_request_is_ordered_as_the_model_declares() {
    let mut r = request(vec![
        input("b", "INT64", vec![2], json!([7, 8])),
        input("a", "FP32", vec![2, 2], json!([[1, 2], [3, 4]])),
    ]);
    r.id = Some("req-1".into());
    r.parameters = json!({"timeout": 1500, "priority": 2}).as_object().cloned();
    let d = decode_with(&model(), &r, &[]).unwrap();
    assert_eq!(d.inputs[0].shape, vec![2, 2]);
    assert_eq!(d.inputs[0].bytes.len(), 16);
    assert_eq!(
        d.inputs[1].bytes,
        [7i64.to_le_bytes(), 8i64.to_le_bytes()].concat()
    );
    assert_eq!(d.outputs, choices(&[(0, false), (1, false)]));
    assert_eq!(d.id.as_deref(), Some("req-1"));
    assert_eq!(d.timeout, Some(std::time::Duration::from_micros(1500)));
    assert_eq!(d.priority, Some(2));
}

#[test]
fn every_mistake_is_named() {
    let a = || input("a", "FP32", vec![1, 2], json!([1, 2]));
    let b = || input("b", "INT64", vec![1], json!([1]));
    let mut bad_priority = request(vec![a(), b()]);
    bad_priority.parameters = json!({"priority": -1}).as_object().cloned();
    let cases = [
        (request(vec![a()]), "missing input 'b'"),
        (
            request(vec![a(), b(), input("c", "FP32", vec![1], json!([1]))]),
            "unknown input 'c'; the model's inputs are: a, b",
        ),
        (request(vec![a(), a(), b()]), "given twice"),
        (
            request(vec![input("a", "FP64", vec![1, 2], json!([1, 2])), b()]),
            "datatype FP64 does not match the model's FP32",
        ),
        (
            request(vec![input("a", "FLOAT", vec![1, 2], json!([1, 2])), b()]),
            "unknown datatype 'FLOAT'",
        ),
        (
            request(vec![input("a", "FP32", vec![1, 3], json!([1, 2, 3])), b()]),
            "dimension 1 is 3, the model expects 2",
        ),
        (
            request(vec![input("a", "FP32", vec![2], json!([1, 2])), b()]),
            "has 1 dimensions, the model expects 2",
        ),
        (
            request(vec![
                input(
                    "a",
                    "FP32",
                    vec![5, 2],
                    json!([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                ),
                b(),
            ]),
            "batch of 5 rows; this model takes 1 to 4",
        ),
        (
            request(vec![input("a", "FP32", vec![0, 2], json!([])), b()]),
            "batch of 0 rows",
        ),
        (
            request(vec![input("a", "FP32", vec![1, 2], json!([1])), b()]),
            "expected 2 elements (from shape), got 1",
        ),
        (
            request(vec![a(), input("b", "INT64", vec![1], json!([1.5]))]),
            "element 0 (1.5) is not a valid INT64",
        ),
        (
            request(vec![
                input("a", "FP32", vec![2, 2], json!([[1, 2, 3], [4]])),
                input("b", "INT64", vec![2], json!([1, 2])),
            ]),
            "input 'a': data[0] holds 3 elements, but shape [2, 2] says 2 elements there",
        ),
        (
            request(vec![
                input("a", "FP32", vec![2, 2], json!([0, 0, 0, 0])),
                b(),
            ]),
            "disagree on the batch size",
        ),
        (
            bad_priority,
            "parameter 'priority' must be a non-negative integer, got -1",
        ),
    ];
    for (r, want) in cases {
        let e = err(r);
        assert!(e.contains(want), "want {want:?} in {e:?}");
    }
    let e = decode_request(&model().sig(), None, Bytes::from_static(b"{")).unwrap_err();
    assert_eq!(e.kind(), "malformed_json");
}

#[test]
fn huge_shapes_are_refused_before_any_allocation() {
    let m = Model {
        inputs: vec![spec("a", Datatype::Fp32, &[-1, -1])],
        outputs: vec![spec("y", Datatype::Fp32, &[-1])],
        max_batch_size: 0,
    };
    let r = request(vec![input(
        "a",
        "FP32",
        vec![4294967296, 4294967296],
        json!([1]),
    )]);
    let e = decode_with(&m, &r, &[]).unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    let r = request(vec![input("a", "FP32", vec![1 << 20, 1 << 20], json!([1]))]);
    let e = decode_with(&m, &r, &[]).unwrap_err();
    assert!(
        e.to_string().contains("expected 1099511627776 elements"),
        "{e}"
    );
}

#[test]
fn binary_inputs_take_their_bytes_in_order_and_must_add_up() {
    let bin = |name: &str, dt: &str, shape: Vec<u64>, size: u64| RequestInput {
        name: name.into(),
        shape,
        datatype: dt.into(),
        parameters: Some(params(crate::wire::BINARY_DATA_SIZE, size)),
        data: None,
    };
    let a: Vec<u8> = [1f32, 2.].iter().flat_map(|x| x.to_le_bytes()).collect();
    let b = 9i64.to_le_bytes().to_vec();
    let body = [a.clone(), b.clone()].concat();
    let r = request(vec![
        bin("a", "FP32", vec![1, 2], 8),
        bin("b", "INT64", vec![1], 8),
    ]);
    let d = decode_with(&model(), &r, &body).unwrap();
    assert_eq!(
        (d.inputs[0].bytes.to_vec(), d.inputs[1].bytes.to_vec()),
        (a, b)
    );

    let short = decode_with(&model(), &r, &body[..12])
        .unwrap_err()
        .to_string();
    assert!(short.contains("fewer than the inputs declare"), "{short}");
    let long = decode_with(&model(), &r, &[&body[..], &[0]].concat())
        .unwrap_err()
        .to_string();
    assert!(long.contains("17 bytes of binary data"), "{long}");
    let r = request(vec![
        bin("a", "FP32", vec![1, 2], 7),
        bin("b", "INT64", vec![1], 8),
    ]);
    let wrong = decode_with(&model(), &r, &body).unwrap_err().to_string();
    assert!(wrong.contains("binary_data_size is 7 bytes"), "{wrong}");
    let past = decode_request(&model().sig(), Some(999), Bytes::from(body)).unwrap_err();
    assert!(
        past.to_string()
            .contains("is 999 but the body has only 16 bytes"),
        "{past}"
    );
}

#[test]
fn raw_bodies_feed_a_single_input_model() {
    let m = Model {
        inputs: vec![spec("x", Datatype::Fp32, &[-1, 2])],
        outputs: vec![spec("y", Datatype::Fp32, &[-1])],
        max_batch_size: 8,
    };
    let d = decode_request(&m.sig(), Some(0), Bytes::from(vec![0u8; 8])).unwrap();
    assert_eq!(d.inputs[0].shape, vec![1, 2]);
    assert_eq!(d.outputs, choices(&[(0, true)]));
    let e = decode_request(&m.sig(), Some(0), Bytes::from(vec![0u8; 7])).unwrap_err();
    assert!(
        e.to_string()
            .contains("is 7 bytes, shape [1, 2] of FP32 needs 8"),
        "{e}"
    );
    let e = decode_request(&model().sig(), Some(0), Bytes::new()).unwrap_err();
    assert!(
        e.to_string()
            .contains("needs a single-input model; this one has 2"),
        "{e}"
    );
}

#[test]
fn the_header_length_must_be_a_number() {
    assert_eq!(header_length(None), Ok(None));
    assert_eq!(header_length(Some(b" 12 ")), Ok(Some(12)));
    let e = header_length(Some(b"twelve")).unwrap_err();
    assert!(
        e.to_string()
            .contains("must be a byte count, got \"twelve\""),
        "{e}"
    );
}

#[test]
fn requested_outputs_are_filtered_and_checked() {
    let out = |name: &str, p: Option<serde_json::Value>| RequestOutput {
        name: name.into(),
        parameters: p.and_then(|p| p.as_object().cloned()),
    };
    let mut r = request(vec![
        input("a", "FP32", vec![1, 2], json!([1, 2])),
        input("b", "INT64", vec![1], json!([1])),
    ]);
    let outputs = |r: &InferRequest| decode_with(&model(), r, &[]).unwrap().outputs;
    r.outputs = Some(vec![out("z", None)]);
    assert_eq!(outputs(&r), choices(&[(1, false)]));
    r.parameters = json!({crate::wire::BINARY_DATA_OUTPUT: true})
        .as_object()
        .cloned();
    assert_eq!(outputs(&r), choices(&[(1, true)]));
    r.outputs = Some(vec![out(
        "y",
        Some(json!({crate::wire::BINARY_DATA: false})),
    )]);
    assert_eq!(outputs(&r), choices(&[(0, false)]));
    r.outputs = Some(vec![out("nope", None)]);
    assert!(err(r).contains("unknown output 'nope'; the model's outputs are: y, z"));
}

fn tensor(datatype: Datatype, shape: &[u64], values: &[f32]) -> Tensor {
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    Tensor {
        datatype,
        shape: shape.to_vec(),
        bytes: bytes.into(),
    }
}

#[test]
fn what_a_client_encodes_the_server_decodes() {
    let a = tensor(Datatype::Fp32, &[1, 2], &[0.5, -2.0]);
    let b = Tensor {
        datatype: Datatype::Int64,
        shape: vec![1],
        bytes: 3i64.to_le_bytes().to_vec().into(),
    };
    for binary in [false, true] {
        let e = encode_request(&[("b", &b), ("a", &a)], binary).unwrap();
        assert_eq!(e.header_length.is_some(), binary);
        let d = decode_request(&model().sig(), e.header_length, Bytes::from(e.body)).unwrap();
        assert_eq!(d.inputs, vec![a.clone(), b.clone()], "binary: {binary}");
        assert!(d.outputs.iter().all(|o| o.binary == binary));
    }
}

#[test]
fn what_the_server_encodes_a_client_decodes() {
    let m = model();
    let y = tensor(Datatype::Fp32, &[1, 3], &[1.0, 2.5, -3.0]);
    let z = tensor(Datatype::Fp32, &[1], &[7.0]);
    let outputs = [y.clone(), z.clone()];
    for (selected, header) in [
        (choices(&[(1, false), (0, true)]), true),
        (choices(&[(0, false)]), false),
    ] {
        let e =
            encode_response(&m.sig(), "m", 3, Some("id-9".into()), &selected, &outputs).unwrap();
        assert_eq!(e.header_length.is_some(), header);
        let d = decode_response(e.header_length, &e.body).unwrap();
        assert_eq!(
            (
                d.model_name.as_str(),
                d.model_version.as_deref(),
                d.id.as_deref()
            ),
            ("m", Some("3"), Some("id-9"))
        );
        let want: Vec<(String, Tensor)> = selected
            .iter()
            .map(|c| (m.outputs[c.index].name.clone(), outputs[c.index].clone()))
            .collect();
        assert_eq!(d.outputs, want);
    }
    let missing = encode_response(&m.sig(), "m", 1, None, &choices(&[(5, false)]), &outputs);
    assert_eq!(missing.unwrap_err().kind(), "encode_failed");
    let e = decode_response(
        None,
        br#"{"model_name":"m","outputs":[{"name":"y","shape":[2],"datatype":"FP32","data":[1]}]}"#,
    );
    assert!(e
        .unwrap_err()
        .to_string()
        .contains("output 'y': expected 2 elements"));
}

#[test]
fn predict_bodies_round_trip() {
    let m = Model {
        inputs: vec![spec("x", Datatype::Fp32, &[-1, 2])],
        outputs: vec![spec("y", Datatype::Fp32, &[-1, 3])],
        max_batch_size: 8,
    };
    let x = tensor(Datatype::Fp32, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let body = predict::encode_predict_request("m", &x, true).unwrap();
    let parsed = predict::parse_predict(&body).unwrap();
    assert_eq!(parsed.model, "m");
    assert_eq!(parsed.decode(&m.sig()).unwrap(), x);
    let flat = Model {
        inputs: vec![spec("v", Datatype::Fp32, &[3])],
        outputs: vec![spec("y", Datatype::Fp32, &[3])],
        max_batch_size: 0,
    };
    let v = tensor(Datatype::Fp32, &[3], &[1.0, 2.0, 3.0]);
    let body = predict::encode_predict_request("f", &v, false).unwrap();
    assert_eq!(
        predict::parse_predict(&body)
            .unwrap()
            .decode(&flat.sig())
            .unwrap(),
        v
    );
    let one_row = predict::parse_predict(br#"{"model":"m","inputs":[1,2]}"#).unwrap();
    assert_eq!(one_row.decode(&m.sig()).unwrap().shape, vec![1, 2]);
    let ragged = predict::parse_predict(br#"{"model":"m","inputs":[[1,2],[3,[4]]]}"#).unwrap();
    let e = ragged.decode(&m.sig()).unwrap_err().to_string();
    assert!(e.contains("inputs: data[1][1] holds an array"), "{e}");
    let y = tensor(Datatype::Fp32, &[2, 3], &[0.0, 9.0, 1.0, 5.0, 0.0, 0.0]);
    let out: serde_json::Value =
        serde_json::from_slice(&predict::encode_predict(&m.sig(), "m", 2, &y).unwrap()).unwrap();
    assert_eq!(
        out,
        json!({"model": "m", "model_version": "2", "outputs": [[0.0, 9.0, 1.0], [5.0, 0.0, 0.0]], "classes": [1, 0]})
    );
    let e = predict::parse_predict(br#"{"model":"m","inputs":[1],"extra":1}"#).unwrap_err();
    assert_eq!(e.kind(), "malformed_json");
}

#[test]
fn classification_answers_top_classes_in_json_and_binary() {
    let mut m = model();
    m.outputs[0].labels = vec!["zero".into(), "one".into()];
    let mut r = request(vec![
        input("a", "FP32", vec![2, 2], json!([1, 2, 3, 4])),
        input("b", "INT64", vec![2], json!([1, 2])),
    ]);
    let asked = |classes: i64, binary: bool| RequestOutput {
        name: "y".into(),
        parameters: json!({"classification": classes, crate::wire::BINARY_DATA: binary})
            .as_object()
            .cloned(),
    };
    r.outputs = Some(vec![asked(2, false), asked(1, true)]);
    let d = decode_with(&m, &r, &[]).unwrap();
    assert_eq!((d.outputs[0].classes, d.outputs[1].classes), (2, 1));
    let y = tensor(Datatype::Fp32, &[2, 3], &[0.1, 0.9, 0.5, 2.0, -1.0, 3.0]);
    let z = tensor(Datatype::Fp32, &[2], &[0.0, 0.0]);
    let e = encode_response(&m.sig(), "m", 1, None, &d.outputs, &[y, z]).unwrap();
    let n = e.header_length.unwrap();
    let header: serde_json::Value = serde_json::from_slice(&e.body[..n]).unwrap();
    let json_out = &header["outputs"][0];
    assert_eq!(
        (&json_out["datatype"], &json_out["shape"]),
        (&json!("BYTES"), &json!([2, 2]))
    );
    assert_eq!(
        json_out["data"],
        json!([
            "0.900000:1:one",
            "0.500000:2",
            "3.000000:2",
            "2.000000:0:zero"
        ])
    );
    assert_eq!(header["outputs"][1]["shape"], json!([2, 1]));
    let binary = crate::data::bytes_elements(&e.body[n..]).unwrap();
    assert_eq!(binary, [&b"0.900000:1:one"[..], &b"3.000000:2"[..]]);

    for (bad, why) in [
        (
            json!({"classification": -1}),
            "parameter 'classification' must be a non-negative integer",
        ),
        (
            json!({"classification": "3"}),
            "parameter 'classification' must be a non-negative integer",
        ),
    ] {
        r.outputs = Some(vec![RequestOutput {
            name: "y".into(),
            parameters: bad.as_object().cloned(),
        }]);
        let e = decode_with(&m, &r, &[]).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
    m.outputs[0].datatype = Datatype::Bool;
    r.outputs = Some(vec![asked(1, false)]);
    let e = decode_with(&m, &r, &[]).unwrap_err().to_string();
    assert!(
        e.contains("output 'y': classification needs a numeric output, this one is BOOL"),
        "{e}"
    );
}
