//! JSON `data` arrays <-> little-endian tensor bytes.
//!
//! Counting comes before converting: the element count implied by `shape` is checked against the JSON
//! before a single byte is reserved, so a request that declares a huge shape costs nothing.

use half::{bf16, f16};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::Value;

use crate::Datatype;

/// Deepest nesting accepted in `data` (a tensor of rank 64 is already absurd).
pub const MAX_DATA_DEPTH: usize = 64;

/// Why a `data` array does not fit its declared shape and datatype.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DataError {
    /// The JSON holds a different number of elements than the shape implies.
    #[error("expected {expected} elements (from shape), got {actual}")]
    CountMismatch { expected: usize, actual: usize },
    /// One element has the wrong JSON type or is out of range for the datatype.
    #[error("element {index} ({found}) is not a valid {datatype} value")]
    BadElement {
        index: usize,
        datatype: Datatype,
        found: String,
    },
    /// The datatype cannot travel as JSON numbers here.
    #[error("datatype {0} is not supported in JSON data")]
    Unsupported(Datatype),
    /// `data` is nested deeper than [`MAX_DATA_DEPTH`].
    #[error("data is nested deeper than {MAX_DATA_DEPTH} levels")]
    TooDeep,
    /// Nested `data` whose arrays disagree with the shape (flat data is always read row-major).
    #[error("data{at} holds {actual}, but shape {shape:?} says {expected} there")]
    Structure {
        /// Where, as `[i][j]` indices from the top.
        at: String,
        shape: Vec<u64>,
        expected: String,
        actual: String,
    },
}

/// Product of `shape` as a `usize`, or `None` if it overflows.
pub fn element_count(shape: &[u64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

fn count_leaves(v: &Value, depth: usize) -> Result<usize, DataError> {
    if depth > MAX_DATA_DEPTH {
        return Err(DataError::TooDeep);
    }
    match v {
        Value::Array(items) => items
            .iter()
            .try_fold(0usize, |acc, x| Ok(acc + count_leaves(x, depth + 1)?)),
        _ => Ok(1),
    }
}

fn for_each_leaf<F>(v: &Value, f: &mut F) -> Result<(), DataError>
where
    F: FnMut(&Value) -> Result<(), DataError>,
{
    match v {
        Value::Array(items) => items.iter().try_for_each(|x| for_each_leaf(x, f)),
        leaf => f(leaf),
    }
}

/// Nested data must be nested exactly as `shape` says: every array as long as its dimension, numbers
/// only at the last level. (Counting alone would flatten `[[1, 2, 3], [4]]` into a `[2, 2]`.)
fn check_nesting(v: &Value, shape: &[u64], full: &[u64], at: &mut String) -> Result<(), DataError> {
    let wrong = |at: &str, expected: String, actual: String| DataError::Structure {
        at: at.to_string(),
        shape: full.to_vec(),
        expected,
        actual,
    };
    match (v, shape.split_first()) {
        (Value::Array(items), Some((&dim, rest))) => {
            if items.len() as u64 != dim {
                let actual = format!("{} elements", items.len());
                return Err(wrong(at, format!("{dim} elements"), actual));
            }
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                check_nesting(item, rest, full, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        (Value::Array(_), None) => Err(wrong(at, "a number".into(), "an array".into())),
        (_, Some((&dim, _))) => Err(wrong(at, format!("{dim} elements"), "a number".into())),
        (_, None) => Ok(()),
    }
}

/// Appends `data` to `out` as little-endian `datatype` elements, after checking it against
/// `shape`: flat data (a list of numbers, read row-major) must hold exactly the shape's element
/// count; nested data must also be nested as the shape says. The caller has checked that the
/// shape's element count does not overflow.
pub fn json_to_bytes(
    data: &Value,
    datatype: Datatype,
    shape: &[u64],
    out: &mut Vec<u8>,
) -> Result<(), DataError> {
    let size = datatype.size().ok_or(DataError::Unsupported(datatype))?;
    let expected = element_count(shape).unwrap_or(usize::MAX);
    let actual = count_leaves(data, 0)?;
    if actual != expected {
        return Err(DataError::CountMismatch { expected, actual });
    }
    let nested = matches!(data, Value::Array(items) if items.iter().any(Value::is_array));
    if nested {
        check_nesting(data, shape, shape, &mut String::new())?;
    }
    out.reserve(actual * size);
    let mut index = 0usize;
    for_each_leaf(data, &mut |leaf| {
        push_element(leaf, datatype, out).ok_or_else(|| DataError::BadElement {
            index,
            datatype,
            found: short(leaf),
        })?;
        index += 1;
        Ok(())
    })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 32 {
        format!("{}...", s.chars().take(32).collect::<String>())
    } else {
        s
    }
}

fn int_in<T: TryFrom<i64> + TryFrom<u64>>(v: &Value) -> Option<T> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(|i| T::try_from(i).ok())
            .or_else(|| n.as_u64().and_then(|u| T::try_from(u).ok())),
        _ => None,
    }
}

fn push_element(v: &Value, datatype: Datatype, out: &mut Vec<u8>) -> Option<()> {
    match datatype {
        Datatype::Bool => out.push(match v {
            Value::Bool(b) => *b as u8,
            Value::Number(n) if n.as_u64() == Some(0) => 0,
            Value::Number(n) if n.as_u64() == Some(1) => 1,
            _ => return None,
        }),
        Datatype::Uint8 => out.push(int_in::<u8>(v)?),
        Datatype::Int8 => out.extend_from_slice(&int_in::<i8>(v)?.to_le_bytes()),
        Datatype::Uint16 => out.extend_from_slice(&int_in::<u16>(v)?.to_le_bytes()),
        Datatype::Int16 => out.extend_from_slice(&int_in::<i16>(v)?.to_le_bytes()),
        Datatype::Uint32 => out.extend_from_slice(&int_in::<u32>(v)?.to_le_bytes()),
        Datatype::Int32 => out.extend_from_slice(&int_in::<i32>(v)?.to_le_bytes()),
        Datatype::Uint64 => out.extend_from_slice(&int_in::<u64>(v)?.to_le_bytes()),
        Datatype::Int64 => out.extend_from_slice(&int_in::<i64>(v)?.to_le_bytes()),
        Datatype::Fp16 => out.extend_from_slice(&f16::from_f64(v.as_f64()?).to_le_bytes()),
        Datatype::Bf16 => out.extend_from_slice(&bf16::from_f64(v.as_f64()?).to_le_bytes()),
        Datatype::Fp32 => out.extend_from_slice(&(v.as_f64()? as f32).to_le_bytes()),
        Datatype::Fp64 => out.extend_from_slice(&v.as_f64()?.to_le_bytes()),
        Datatype::Bytes => return None,
    }
    Some(())
}

/// A BYTES tensor's bytes: each element as its length (u32, little-endian), then its bytes, as in
/// the binary tensor data extension and gRPC's raw contents.
pub fn push_bytes_element(out: &mut Vec<u8>, element: &[u8]) {
    out.extend_from_slice(&(element.len() as u32).to_le_bytes());
    out.extend_from_slice(element);
}

/// The elements of a BYTES tensor's bytes, or `None` when they are not length-prefixed elements.
pub fn bytes_elements(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut elements = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if len > rest.len() {
            return None;
        }
        let (element, rest) = rest.split_at(len);
        elements.push(element);
        bytes = rest;
    }
    Some(elements)
}

/// Tensor bytes that serialise as a flat JSON array without building a `Value` per element.
#[derive(Clone, Copy, Debug)]
pub struct RawData<'a> {
    pub datatype: Datatype,
    pub bytes: &'a [u8],
}

macro_rules! seq_of {
    ($ser:expr, $bytes:expr, $ty:ty, $conv:expr) => {{
        const N: usize = std::mem::size_of::<$ty>();
        let chunks = $bytes.chunks_exact(N);
        let mut seq = $ser.serialize_seq(Some(chunks.len()))?;
        for c in chunks {
            let x = <$ty>::from_le_bytes(c.try_into().expect("chunk of N bytes"));
            seq.serialize_element(&$conv(x))?;
        }
        seq.end()
    }};
}

impl Serialize for RawData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.bytes;
        match self.datatype {
            Datatype::Bool => seq_of!(s, b, u8, |x: u8| x != 0),
            Datatype::Uint8 => seq_of!(s, b, u8, |x| x),
            Datatype::Int8 => seq_of!(s, b, i8, |x| x),
            Datatype::Uint16 => seq_of!(s, b, u16, |x| x),
            Datatype::Int16 => seq_of!(s, b, i16, |x| x),
            Datatype::Uint32 => seq_of!(s, b, u32, |x| x),
            Datatype::Int32 => seq_of!(s, b, i32, |x| x),
            Datatype::Uint64 => seq_of!(s, b, u64, |x| x),
            Datatype::Int64 => seq_of!(s, b, i64, |x| x),
            Datatype::Fp16 => seq_of!(s, b, f16, |x: f16| x.to_f32()),
            Datatype::Bf16 => seq_of!(s, b, bf16, |x: bf16| x.to_f32()),
            Datatype::Fp32 => seq_of!(s, b, f32, |x| x),
            Datatype::Fp64 => seq_of!(s, b, f64, |x| x),
            Datatype::Bytes => {
                // Length-prefixed elements, as the codec builds them; JSON carries them as strings.
                let elements = bytes_elements(b).ok_or_else(|| {
                    serde::ser::Error::custom("BYTES data is not length-prefixed elements")
                })?;
                let mut seq = s.serialize_seq(Some(elements.len()))?;
                for e in elements {
                    seq.serialize_element(&String::from_utf8_lossy(e))?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bytes_elements_round_trip_and_reject_truncation() {
        let mut b = Vec::new();
        push_bytes_element(&mut b, b"ab");
        push_bytes_element(&mut b, b"");
        assert_eq!(bytes_elements(&b).unwrap(), [&b"ab"[..], &b""[..]]);
        assert!(bytes_elements(&b[..5]).is_none());
        assert!(bytes_elements(&[9, 0, 0, 0, 1]).is_none());
    }

    fn enc(v: Value, dt: Datatype, n: usize) -> Result<Vec<u8>, DataError> {
        enc_shaped(v, dt, &[n as u64])
    }

    fn enc_shaped(v: Value, dt: Datatype, shape: &[u64]) -> Result<Vec<u8>, DataError> {
        let mut out = Vec::new();
        json_to_bytes(&v, dt, shape, &mut out).map(|_| out)
    }

    #[test]
    fn flat_and_nested_give_the_same_bytes() {
        let flat = enc_shaped(json!([1.0, 2.0, 3.0, 4.0]), Datatype::Fp32, &[2, 2]).unwrap();
        let nested = enc_shaped(json!([[1.0, 2.0], [3.0, 4.0]]), Datatype::Fp32, &[2, 2]).unwrap();
        assert_eq!(flat, nested);
        assert_eq!(&flat[4..8], &2.0f32.to_le_bytes());
        assert!(enc_shaped(json!(7), Datatype::Int64, &[]).is_ok());
    }

    #[test]
    fn nesting_that_disagrees_with_the_shape_is_refused() {
        let e = |v: Value, shape: &[u64]| enc_shaped(v, Datatype::Fp32, shape).unwrap_err();
        let ragged = e(json!([[1, 2, 3], [4]]), &[2, 2]);
        assert_eq!(
            ragged.to_string(),
            "data[0] holds 3 elements, but shape [2, 2] says 2 elements there"
        );
        let transposed = e(json!([[1, 2], [3, 4], [5, 6]]), &[2, 3]);
        assert!(
            transposed.to_string().contains("data holds 3 elements"),
            "{transposed}"
        );
        let half_flat = e(json!([[1, 2], 3, 4]), &[2, 2]);
        assert!(
            half_flat.to_string().contains("data holds 3 elements"),
            "{half_flat}"
        );
        let too_deep = e(json!([[[1], [2]], [[3], [4]]]), &[2, 2]);
        assert!(
            too_deep.to_string().contains("data[0][0] holds an array"),
            "{too_deep}"
        );
        let number = e(json!([[1, 2], [3, [4]]]), &[2, 2]);
        assert!(
            number.to_string().contains("data[1][1] holds an array"),
            "{number}"
        );
    }

    #[test]
    fn count_is_checked_before_conversion() {
        assert_eq!(
            enc(json!([1, 2, 3]), Datatype::Int64, 4),
            Err(DataError::CountMismatch {
                expected: 4,
                actual: 3
            })
        );
    }

    #[test]
    fn range_and_type_errors_name_the_element() {
        let e = enc(json!([1, 300]), Datatype::Uint8, 2).unwrap_err();
        assert!(matches!(e, DataError::BadElement { index: 1, .. }), "{e}");
        let e = enc(json!([1, "x"]), Datatype::Fp32, 2).unwrap_err();
        assert!(e.to_string().contains("\"x\""), "{e}");
        assert!(enc(json!([true, 1, 0]), Datatype::Bool, 3).is_ok());
        assert!(enc(json!([2]), Datatype::Bool, 1).is_err());
        assert!(enc(json!([-1]), Datatype::Uint32, 1).is_err());
        assert_eq!(
            enc(json!(["a"]), Datatype::Bytes, 1),
            Err(DataError::Unsupported(Datatype::Bytes))
        );
    }

    #[test]
    fn overflowing_shapes_have_no_count() {
        assert_eq!(element_count(&[4294967296, 4294967296]), None);
        assert_eq!(element_count(&[2, 3, 4]), Some(24));
        assert_eq!(element_count(&[]), Some(1));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = json!(1);
        for _ in 0..(MAX_DATA_DEPTH + 2) {
            v = Value::Array(vec![v]);
        }
        assert_eq!(enc(v, Datatype::Fp32, 1), Err(DataError::TooDeep));
    }

    #[test]
    fn raw_data_round_trips_every_numeric_type() {
        let cases = [
            (Datatype::Bool, json!([true, false])),
            (Datatype::Uint8, json!([0, 255])),
            (Datatype::Int8, json!([-128, 127])),
            (Datatype::Uint16, json!([0, 65535])),
            (Datatype::Int16, json!([-32768, 32767])),
            (Datatype::Int32, json!([-5, 7])),
            (Datatype::Int64, json!([i64::MIN, i64::MAX])),
            (Datatype::Uint64, json!([0u64, u64::MAX])),
            (Datatype::Fp16, json!([0.5, -2.0])),
            (Datatype::Bf16, json!([0.5, -2.0])),
            (Datatype::Fp32, json!([0.25, -1.5])),
            (Datatype::Fp64, json!([0.1, -1e300])),
        ];
        for (dt, v) in cases {
            let bytes = enc(v.clone(), dt, 2).unwrap();
            assert_eq!(bytes.len(), 2 * dt.size().unwrap());
            let back = serde_json::to_value(RawData {
                datatype: dt,
                bytes: &bytes,
            })
            .unwrap();
            assert_eq!(back, v, "{dt}");
        }
    }
}
