//! The classification extension: instead of an output tensor, its `k` greatest elements per row
//! as BYTES elements `"<value>:<index>"`, or `"<value>:<index>:<label>"` when the output has a
//! label for that index, greatest first; shape `[rows, min(k, n)]` (`[min(k, n)]` for a model
//! without a batch dimension), where `n` is the element count of one row. Formatted as Triton
//! formats them: floating-point values as C's `%f` (six decimals), integers as they are.

use half::{bf16, f16};

use super::CodecError;
use crate::data::push_bytes_element;
use crate::{Datatype, Tensor, TensorSpec};

/// Whether an output of this datatype can be classified (numbers only, as in Triton, which also
/// refuses BOOL and BYTES; FP16 and BF16 are compared as their f32 values).
pub fn classifiable(datatype: Datatype) -> bool {
    !matches!(datatype, Datatype::Bool | Datatype::Bytes)
}

/// An element that classification can order and print.
trait Class: Copy + PartialOrd {
    const SIZE: usize;
    fn read(le: &[u8]) -> Self;
    fn text(self) -> String;
}

/// C's `printf("%f")`, which Triton's `std::to_string` is: six decimals, `nan`, `inf`.
fn c_fixed(v: f64) -> String {
    match v {
        v if v.is_nan() && v.is_sign_negative() => "-nan".into(),
        v if v.is_nan() => "nan".into(),
        v => format!("{v:.6}"),
    }
}

/// Each element type with how Triton prints it: integers as they are, floats as `%f`.
macro_rules! class {
    ($($t:ty => $text:expr),* $(,)?) => {$(
        impl Class for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read(le: &[u8]) -> Self {
                <$t>::from_le_bytes(le.try_into().expect("chunk of SIZE bytes"))
            }
            fn text(self) -> String {
                $text(self)
            }
        }
    )*};
}
class!(
    u8 => |x: u8| x.to_string(),
    i8 => |x: i8| x.to_string(),
    u16 => |x: u16| x.to_string(),
    i16 => |x: i16| x.to_string(),
    u32 => |x: u32| x.to_string(),
    i32 => |x: i32| x.to_string(),
    u64 => |x: u64| x.to_string(),
    i64 => |x: i64| x.to_string(),
    f32 => |x: f32| c_fixed(f64::from(x)),
    f64 => c_fixed,
    f16 => |x: f16| c_fixed(f64::from(x.to_f32())),
    bf16 => |x: bf16| c_fixed(f64::from(x.to_f32())),
);

/// `out` classified: its `k` greatest elements per row (see the module's doc).
pub fn classify(
    spec: &TensorSpec,
    batched: bool,
    k: usize,
    out: &Tensor,
) -> Result<Tensor, CodecError> {
    match out.datatype {
        Datatype::Uint8 => rows::<u8>(spec, batched, k, out),
        Datatype::Int8 => rows::<i8>(spec, batched, k, out),
        Datatype::Uint16 => rows::<u16>(spec, batched, k, out),
        Datatype::Int16 => rows::<i16>(spec, batched, k, out),
        Datatype::Uint32 => rows::<u32>(spec, batched, k, out),
        Datatype::Int32 => rows::<i32>(spec, batched, k, out),
        Datatype::Uint64 => rows::<u64>(spec, batched, k, out),
        Datatype::Int64 => rows::<i64>(spec, batched, k, out),
        Datatype::Fp16 => rows::<f16>(spec, batched, k, out),
        Datatype::Bf16 => rows::<bf16>(spec, batched, k, out),
        Datatype::Fp32 => rows::<f32>(spec, batched, k, out),
        Datatype::Fp64 => rows::<f64>(spec, batched, k, out),
        other => Err(refused(&spec.name, other)),
    }
}

/// Why output `name` of this datatype cannot be classified (at decode and at encode alike).
pub(super) fn refused(name: &str, datatype: Datatype) -> CodecError {
    CodecError::Invalid(format!(
        "output '{name}': classification needs a numeric output, this one is {datatype}"
    ))
}

fn rows<T: Class>(
    spec: &TensorSpec,
    batched: bool,
    k: usize,
    out: &Tensor,
) -> Result<Tensor, CodecError> {
    let values: Vec<T> = out.bytes.chunks_exact(T::SIZE).map(T::read).collect();
    let rows = match out.shape.first() {
        Some(&r) if batched => usize::try_from(r).unwrap_or(usize::MAX),
        _ => 1,
    };
    let per_row = values.len().checked_div(rows).unwrap_or(0);
    if rows * per_row != values.len() {
        return Err(CodecError::Encode(format!(
            "output '{}': {} elements do not split into {rows} rows",
            spec.name,
            values.len()
        )));
    }
    let kept = k.min(per_row);
    let mut bytes = Vec::new();
    for row in values.chunks(per_row.max(1)).take(rows) {
        for index in top(row, kept) {
            let mut text = format!("{}:{index}", row[index].text());
            if let Some(label) = spec.labels.get(index).filter(|l| !l.is_empty()) {
                text.push(':');
                text.push_str(label);
            }
            push_bytes_element(&mut bytes, text.as_bytes());
        }
    }
    let mut shape = Vec::with_capacity(2);
    if batched {
        shape.push(rows as u64);
    }
    shape.push(kept as u64);
    Ok(Tensor {
        datatype: Datatype::Bytes,
        shape,
        bytes: bytes.into(),
    })
}

/// The indices of the `k` greatest values, greatest first; equal values in index order; NaN
/// (unordered) after every number.
fn top<T: Class>(row: &[T], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    #[allow(clippy::eq_op)] // x != x is the one NaN test every element type has
    order.sort_by(|&a, &b| {
        let (x, y) = (row[a], row[b]);
        y.partial_cmp(&x).unwrap_or_else(|| (x != x).cmp(&(y != y)))
    });
    order.truncate(k);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::bytes_elements;

    fn tensor<T: Copy>(
        datatype: Datatype,
        shape: &[u64],
        values: &[T],
        le: fn(T) -> Vec<u8>,
    ) -> Tensor {
        Tensor {
            datatype,
            shape: shape.to_vec(),
            bytes: values
                .iter()
                .flat_map(|&v| le(v))
                .collect::<Vec<u8>>()
                .into(),
        }
    }

    fn texts(t: &Tensor) -> Vec<String> {
        bytes_elements(&t.bytes)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn top_classes_per_row_formatted_as_triton_does() {
        let mut spec = TensorSpec::new("logits", Datatype::Fp32, &[-1, 4]);
        let x = [0.5f32, -1.25, 3.0, 0.5, 1.0, 2.0, f32::NAN, -0.1234567];
        let t = tensor(Datatype::Fp32, &[2, 4], &x, |v| v.to_le_bytes().to_vec());
        let c = classify(&spec, true, 3, &t).unwrap();
        assert_eq!((c.datatype, c.shape.clone()), (Datatype::Bytes, vec![2, 3]));
        assert_eq!(
            texts(&c),
            [
                "3.000000:2",
                "0.500000:0",
                "0.500000:3",
                "2.000000:1",
                "1.000000:0",
                "-0.123457:3"
            ]
        );
        spec.labels = vec!["a".into(), "".into(), "c".into()];
        let c = classify(&spec, true, 10, &t).unwrap();
        assert_eq!(c.shape, vec![2, 4], "k is capped at the row's length");
        let all = texts(&c);
        assert_eq!(&all[..2], ["3.000000:2:c", "0.500000:0:a"]);
        assert_eq!(
            all[4..],
            ["2.000000:1", "1.000000:0:a", "-0.123457:3", "nan:2:c"]
        );
    }

    #[test]
    fn unbatched_integer_and_refused_outputs() {
        let spec = TensorSpec::new("y", Datatype::Int64, &[3]);
        let t = tensor(Datatype::Int64, &[3], &[7i64, -9, 1 << 60], |v| {
            v.to_le_bytes().to_vec()
        });
        let c = classify(&spec, false, 2, &t).unwrap();
        assert_eq!(c.shape, vec![2]);
        assert_eq!(texts(&c), ["1152921504606846976:2", "7:0"]);
        let b = Tensor {
            datatype: Datatype::Bool,
            shape: vec![1],
            bytes: vec![1u8].into(),
        };
        let e = classify(&spec, false, 1, &b).unwrap_err();
        assert!(e.to_string().contains("needs a numeric output"), "{e}");
        assert!(!classifiable(Datatype::Bool) && classifiable(Datatype::Fp16));
    }
}
