//! Tensors as the server passes them around: datatype, shape and little-endian bytes, converted to and
//! from libtorch with one copy each way.

use protocol::Datatype;
use tch::{Device, Kind, Tensor};

use super::RuntimeError;

/// A dense, row-major tensor held as bytes: the codec's [`protocol::Tensor`], named apart from
/// `tch::Tensor`. `Bytes` so that binary request bodies and batched outputs are sliced, not copied.
pub use protocol::Tensor as TensorData;

/// The libtorch kind of a v2 datatype, if it has one.
pub fn kind_of(datatype: Datatype) -> Option<Kind> {
    Some(match datatype {
        Datatype::Bool => Kind::Bool,
        Datatype::Uint8 => Kind::Uint8,
        Datatype::Int8 => Kind::Int8,
        Datatype::Int16 => Kind::Int16,
        Datatype::Int32 => Kind::Int,
        Datatype::Int64 => Kind::Int64,
        Datatype::Fp16 => Kind::Half,
        Datatype::Bf16 => Kind::BFloat16,
        Datatype::Fp32 => Kind::Float,
        Datatype::Fp64 => Kind::Double,
        Datatype::Uint16 | Datatype::Uint32 | Datatype::Uint64 | Datatype::Bytes => return None,
    })
}

/// The v2 datatype of a libtorch kind, if the protocol can carry it.
pub fn datatype_of(kind: Kind) -> Option<Datatype> {
    Some(match kind {
        Kind::Bool => Datatype::Bool,
        Kind::Uint8 => Datatype::Uint8,
        Kind::Int8 => Datatype::Int8,
        Kind::Int16 => Datatype::Int16,
        Kind::Int => Datatype::Int32,
        Kind::Int64 => Datatype::Int64,
        Kind::Half => Datatype::Fp16,
        Kind::BFloat16 => Datatype::Bf16,
        Kind::Float => Datatype::Fp32,
        Kind::Double => Datatype::Fp64,
        _ => return None,
    })
}

/// Builds a libtorch tensor on `device`. libtorch copies `shape x size` bytes from our buffer
/// without knowing its length, so the byte count is checked here, always.
pub fn to_torch(data: &TensorData, device: Device) -> Result<Tensor, RuntimeError> {
    let kind = kind_of(data.datatype).ok_or_else(|| {
        RuntimeError::Tensor(format!("datatype {} has no libtorch kind", data.datatype))
    })?;
    let want =
        protocol::element_count(&data.shape).and_then(|n| n.checked_mul(data.datatype.size()?));
    if want != Some(data.bytes.len()) {
        return Err(RuntimeError::Tensor(format!(
            "{} bytes do not fill a {} tensor of shape {:?}",
            data.bytes.len(),
            data.datatype,
            data.shape
        )));
    }
    let shape: Vec<i64> = data.shape.iter().map(|&d| d as i64).collect();
    let t = Tensor::f_from_data_size(&data.bytes, &shape, kind)?;
    if device == Device::Cpu {
        Ok(t)
    } else {
        Ok(t.f_to_device(device)?)
    }
}

/// Copies a libtorch tensor (any device, any layout) back to host bytes.
pub fn from_torch(t: &Tensor) -> Result<TensorData, RuntimeError> {
    let kind = t.f_kind()?;
    let datatype = datatype_of(kind).ok_or_else(|| {
        RuntimeError::Tensor(format!("model output of kind {kind:?} has no v2 datatype"))
    })?;
    let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
    let shape: Vec<u64> = t.size().iter().map(|&d| d as u64).collect();
    let numel = t.numel();
    let mut bytes = vec![0u8; numel * datatype.size().unwrap_or(0)];
    t.f_copy_data_u8(&mut bytes, numel)?;
    Ok(TensorData {
        datatype,
        shape,
        bytes: bytes.into(),
    })
}

/// Builds one batch tensor from several requests' inputs (same datatype and trailing dims), writing
/// each request's bytes straight into the tensor's storage: one copy on CPU; on CUDA the host buffer
/// is pinned so the upload can run asynchronously.
pub fn batch_tensor(parts: &[&TensorData], device: Device) -> Result<Tensor, RuntimeError> {
    let first = parts
        .first()
        .ok_or_else(|| RuntimeError::Tensor("empty batch".into()))?;
    if parts.len() == 1 {
        return to_torch(first, device);
    }
    let kind = kind_of(first.datatype).ok_or_else(|| {
        RuntimeError::Tensor(format!("datatype {} has no libtorch kind", first.datatype))
    })?;
    let rows: u64 = parts
        .iter()
        .map(|p| p.shape.first().copied().unwrap_or(1))
        .sum();
    let mut shape: Vec<i64> = first.shape.iter().map(|&d| d as i64).collect();
    shape[0] = rows as i64;
    let total: usize = parts.iter().map(|p| p.bytes.len()).sum();
    let want = protocol::element_count(&shape.iter().map(|&d| d as u64).collect::<Vec<_>>())
        .and_then(|n| n.checked_mul(first.datatype.size()?));
    let same = parts
        .iter()
        .all(|p| p.datatype == first.datatype && p.shape.get(1..) == first.shape.get(1..));
    if !same || want != Some(total) {
        return Err(RuntimeError::Tensor(format!(
            "batch parts do not stack: {} bytes for shape {shape:?}",
            total
        )));
    }
    let host = Tensor::f_empty(shape.as_slice(), (kind, Device::Cpu))?;
    let host = if device.is_cuda() {
        host.f_pin_memory(device)?
    } else {
        host
    };
    // SAFETY: `host` is a fresh contiguous CPU tensor of exactly `total` bytes (checked above), and
    // the parts are plain byte buffers that do not overlap it.
    unsafe {
        let mut dst = host.data_ptr() as *mut u8;
        for p in parts {
            std::ptr::copy_nonoverlapping(p.bytes.as_ptr(), dst, p.bytes.len());
            dst = dst.add(p.bytes.len());
        }
    }
    if device.is_cuda() {
        Ok(host.f_to_device_(device, kind, true, false)?)
    } else {
        Ok(host)
    }
}

/// Splits batched outputs back into each request's rows: zero-copy slices of the output bytes.
pub fn split_rows(
    outputs: Vec<TensorData>,
    rows: &[u64],
) -> Result<Vec<Vec<TensorData>>, RuntimeError> {
    let total: u64 = rows.iter().sum();
    let mut per_request: Vec<Vec<TensorData>> = rows.iter().map(|_| Vec::new()).collect();
    for out in outputs {
        if out.shape.first() != Some(&total) {
            return Err(RuntimeError::OutputMismatch(format!(
                "a batch of {total} rows returned an output of shape {:?}",
                out.shape
            )));
        }
        let row_bytes = out.bytes.len() / total.max(1) as usize;
        let mut offset = 0;
        for (i, &r) in rows.iter().enumerate() {
            let len = r as usize * row_bytes;
            let mut shape = out.shape.clone();
            shape[0] = r;
            per_request[i].push(TensorData {
                datatype: out.datatype,
                shape,
                bytes: out.bytes.slice(offset..offset + len),
            });
            offset += len;
        }
    }
    Ok(per_request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_torch_datatype_round_trips_through_libtorch() {
        for dt in Datatype::ALL.into_iter().filter(|d| d.has_torch_kind()) {
            let size = dt.size().unwrap();
            // Bytes 0..n are valid patterns for every kind except BOOL, which needs 0 or 1.
            let bytes: Vec<u8> = (0..6 * size)
                .map(|i| {
                    if dt == Datatype::Bool {
                        (i % 2) as u8
                    } else {
                        i as u8
                    }
                })
                .collect();
            let data = TensorData {
                datatype: dt,
                shape: vec![2, 3],
                bytes: bytes.into(),
            };
            let t = to_torch(&data, Device::Cpu).unwrap();
            assert_eq!(t.size(), vec![2, 3]);
            assert_eq!(from_torch(&t).unwrap(), data, "{dt}");
        }
    }

    #[test]
    fn non_contiguous_outputs_are_copied_row_major() {
        let t = Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6.])
            .reshape([2, 3])
            .tr();
        let d = from_torch(&t).unwrap();
        assert_eq!(d.shape, vec![3, 2]);
        let back: Vec<f32> = d
            .bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(back, vec![1., 4., 2., 5., 3., 6.]);
    }

    fn f32s(shape: Vec<u64>, xs: &[f32]) -> TensorData {
        TensorData {
            datatype: Datatype::Fp32,
            shape,
            bytes: xs
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        }
    }

    #[test]
    fn parts_stack_into_one_tensor_and_split_back_per_request() {
        let a = f32s(vec![1, 2], &[1., 2.]);
        let b = f32s(vec![2, 2], &[3., 4., 5., 6.]);
        let t = batch_tensor(&[&a, &b], Device::Cpu).unwrap();
        assert_eq!(t.size(), vec![3, 2]);
        let whole = from_torch(&t).unwrap();
        assert_eq!(whole, f32s(vec![3, 2], &[1., 2., 3., 4., 5., 6.]));
        let split = split_rows(vec![whole.clone(), whole], &[1, 2]).unwrap();
        assert_eq!(split[0], vec![a.clone(), a.clone()]);
        assert_eq!(split[1], vec![b.clone(), b]);
        let c = f32s(vec![1, 3], &[1., 2., 3.]);
        assert!(
            batch_tensor(&[&a, &c], Device::Cpu).is_err(),
            "trailing dims differ"
        );
        let bad = split_rows(vec![f32s(vec![2, 1], &[1., 2.])], &[1, 2]).unwrap_err();
        assert!(bad.to_string().contains("a batch of 3 rows"), "{bad}");
    }

    #[test]
    fn a_wrong_byte_count_is_an_error_not_a_crash() {
        let d = TensorData {
            datatype: Datatype::Fp32,
            shape: vec![2, 3],
            bytes: vec![0; 5].into(),
        };
        assert!(to_torch(&d, Device::Cpu).is_err());
    }
}
