//! Typed tensor contents (`InferTensorContents`: one repeated field per element type) to and from
//! the bytes of a `protocol::Tensor`, and config datatypes to and from v2 names.

use protocol::Datatype;

use crate::pb::{DataType, InferTensorContents};

/// Why typed contents cannot become the tensor's bytes; the text names the field and the element.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ContentsError(pub String);

fn narrow<T, const N: usize>(
    values: &[T],
    field: &str,
    datatype: Datatype,
    to_bytes: impl Fn(&T) -> Option<[u8; N]>,
) -> Result<Vec<u8>, ContentsError>
where
    T: std::fmt::Display,
{
    let mut out = Vec::with_capacity(values.len() * N);
    for (i, v) in values.iter().enumerate() {
        let bytes = to_bytes(v).ok_or_else(|| {
            ContentsError(format!("{field}[{i}] = {v} does not fit in {datatype}"))
        })?;
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// The element bytes of typed contents of `datatype`: the field for that type, each element
/// range-checked (INT8 and INT16 travel in `int_contents`, UINT8 and UINT16 in `uint_contents`).
/// FP16 and BF16 have no typed field: the protocol says they travel as raw contents.
pub fn to_bytes(datatype: Datatype, c: &InferTensorContents) -> Result<Vec<u8>, ContentsError> {
    use Datatype as D;
    fn le<T, const N: usize>(values: &[T], bytes: fn(&T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(bytes).collect()
    }
    Ok(match datatype {
        D::Bool => le(&c.bool_contents, |&b| [u8::from(b)]),
        D::Int8 => narrow(&c.int_contents, "int_contents", datatype, |&v| {
            i8::try_from(v).ok().map(i8::to_le_bytes)
        })?,
        D::Int16 => narrow(&c.int_contents, "int_contents", datatype, |&v| {
            i16::try_from(v).ok().map(i16::to_le_bytes)
        })?,
        D::Int32 => le(&c.int_contents, |v| v.to_le_bytes()),
        D::Int64 => le(&c.int64_contents, |v| v.to_le_bytes()),
        D::Uint8 => narrow(&c.uint_contents, "uint_contents", datatype, |&v| {
            u8::try_from(v).ok().map(u8::to_le_bytes)
        })?,
        D::Uint16 => narrow(&c.uint_contents, "uint_contents", datatype, |&v| {
            u16::try_from(v).ok().map(u16::to_le_bytes)
        })?,
        D::Uint32 => le(&c.uint_contents, |v| v.to_le_bytes()),
        D::Uint64 => le(&c.uint64_contents, |v| v.to_le_bytes()),
        D::Fp32 => le(&c.fp32_contents, |v| v.to_le_bytes()),
        D::Fp64 => le(&c.fp64_contents, |v| v.to_le_bytes()),
        D::Fp16 | D::Bf16 | D::Bytes => {
            return Err(ContentsError(format!(
                "{datatype} has no typed contents field here: send it in raw_input_contents"
            )))
        }
    })
}

/// The model-config enum for a v2 datatype (`FP32` -> `TYPE_FP32`; BYTES is `TYPE_STRING`).
pub fn config_type(datatype: Datatype) -> DataType {
    use Datatype as D;
    match datatype {
        D::Bool => DataType::TypeBool,
        D::Uint8 => DataType::TypeUint8,
        D::Uint16 => DataType::TypeUint16,
        D::Uint32 => DataType::TypeUint32,
        D::Uint64 => DataType::TypeUint64,
        D::Int8 => DataType::TypeInt8,
        D::Int16 => DataType::TypeInt16,
        D::Int32 => DataType::TypeInt32,
        D::Int64 => DataType::TypeInt64,
        D::Fp16 => DataType::TypeFp16,
        D::Bf16 => DataType::TypeBf16,
        D::Fp32 => DataType::TypeFp32,
        D::Fp64 => DataType::TypeFp64,
        D::Bytes => DataType::TypeString,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_contents_become_little_endian_bytes_with_ranges_checked() {
        let c = InferTensorContents {
            fp32_contents: vec![1.5, -2.0],
            int_contents: vec![1, -1, 300],
            uint_contents: vec![7],
            bool_contents: vec![true, false],
            ..Default::default()
        };
        let fp: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(to_bytes(Datatype::Fp32, &c), Ok(fp));
        assert_eq!(to_bytes(Datatype::Bool, &c), Ok(vec![1, 0]));
        assert_eq!(to_bytes(Datatype::Uint8, &c), Ok(vec![7]));
        assert_eq!(
            to_bytes(Datatype::Int8, &c),
            Err(ContentsError(
                "int_contents[2] = 300 does not fit in INT8".into()
            ))
        );
        assert_eq!(to_bytes(Datatype::Int16, &c).unwrap().len(), 6);
        assert!(to_bytes(Datatype::Fp16, &c)
            .unwrap_err()
            .0
            .contains("raw_input_contents"));
    }

    #[test]
    fn every_datatype_has_its_config_type() {
        for d in Datatype::ALL {
            let name = config_type(d).as_str_name();
            let expected = match d {
                Datatype::Bytes => "TYPE_STRING".to_string(),
                d => format!("TYPE_{}", d.as_str()),
            };
            assert_eq!(name, expected);
        }
    }
}
