//! Tensors as the server passes them around: datatype, shape and little-endian bytes, converted to and
//! from libtorch with one copy each way.

use protocol::Datatype;
use tch::{Device, Kind, Tensor};

use super::RuntimeError;

/// A dense, row-major tensor held as bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    pub datatype: Datatype,
    pub shape: Vec<u64>,
    pub bytes: Vec<u8>,
}

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

impl TensorData {
    /// Builds a libtorch tensor on `device`. libtorch copies `shape x size` bytes from our buffer
    /// without knowing its length, so the byte count is checked here, always.
    pub fn to_tensor(&self, device: Device) -> Result<Tensor, RuntimeError> {
        let kind = kind_of(self.datatype).ok_or_else(|| {
            RuntimeError::Tensor(format!("datatype {} has no libtorch kind", self.datatype))
        })?;
        let want =
            protocol::element_count(&self.shape).and_then(|n| n.checked_mul(self.datatype.size()?));
        if want != Some(self.bytes.len()) {
            return Err(RuntimeError::Tensor(format!(
                "{} bytes do not fill a {} tensor of shape {:?}",
                self.bytes.len(),
                self.datatype,
                self.shape
            )));
        }
        let shape: Vec<i64> = self.shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(&self.bytes, &shape, kind)?;
        if device == Device::Cpu {
            Ok(t)
        } else {
            Ok(t.f_to_device(device)?)
        }
    }

    /// Copies a libtorch tensor (any device, any layout) back to host bytes.
    pub fn from_tensor(t: &Tensor) -> Result<TensorData, RuntimeError> {
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
            bytes,
        })
    }
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
                bytes,
            };
            let t = data.to_tensor(Device::Cpu).unwrap();
            assert_eq!(t.size(), vec![2, 3]);
            assert_eq!(TensorData::from_tensor(&t).unwrap(), data, "{dt}");
        }
    }

    #[test]
    fn non_contiguous_outputs_are_copied_row_major() {
        let t = Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6.])
            .reshape([2, 3])
            .tr();
        let d = TensorData::from_tensor(&t).unwrap();
        assert_eq!(d.shape, vec![3, 2]);
        let back: Vec<f32> = d
            .bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(back, vec![1., 4., 2., 5., 3., 6.]);
    }

    #[test]
    fn a_wrong_byte_count_is_an_error_not_a_crash() {
        let d = TensorData {
            datatype: Datatype::Fp32,
            shape: vec![2, 3],
            bytes: vec![0; 5],
        };
        assert!(d.to_tensor(Device::Cpu).is_err());
    }
}
