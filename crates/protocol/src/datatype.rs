//! v2 datatype names (`FP32`, `INT64`, ...) and their sizes.

use std::fmt;

/// Every datatype the v2 protocol names. Only some map to a libtorch kind; see [`Datatype::has_torch_kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    Bytes,
}

impl Datatype {
    pub const ALL: [Datatype; 14] = [
        Datatype::Bool,
        Datatype::Uint8,
        Datatype::Uint16,
        Datatype::Uint32,
        Datatype::Uint64,
        Datatype::Int8,
        Datatype::Int16,
        Datatype::Int32,
        Datatype::Int64,
        Datatype::Fp16,
        Datatype::Bf16,
        Datatype::Fp32,
        Datatype::Fp64,
        Datatype::Bytes,
    ];

    /// The protocol's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Bool => "BOOL",
            Datatype::Uint8 => "UINT8",
            Datatype::Uint16 => "UINT16",
            Datatype::Uint32 => "UINT32",
            Datatype::Uint64 => "UINT64",
            Datatype::Int8 => "INT8",
            Datatype::Int16 => "INT16",
            Datatype::Int32 => "INT32",
            Datatype::Int64 => "INT64",
            Datatype::Fp16 => "FP16",
            Datatype::Bf16 => "BF16",
            Datatype::Fp32 => "FP32",
            Datatype::Fp64 => "FP64",
            Datatype::Bytes => "BYTES",
        }
    }

    /// Parses the protocol's spelling (case-sensitive, as clients send it).
    pub fn parse(s: &str) -> Option<Datatype> {
        Datatype::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Bytes per element; `None` for variable-length `BYTES`.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => 1,
            Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 | Datatype::Bf16 => 2,
            Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => 4,
            Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => 8,
            Datatype::Bytes => return None,
        })
    }

    /// Whether libtorch has a tensor kind for it (UINT16/32/64 and BYTES have none).
    pub fn has_torch_kind(self) -> bool {
        !matches!(
            self,
            Datatype::Uint16 | Datatype::Uint32 | Datatype::Uint64 | Datatype::Bytes
        )
    }
}

impl serde::Serialize for Datatype {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Datatype {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Datatype::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown datatype '{s}' (expected one of BOOL, UINT8, INT8, INT16, INT32, INT64, FP16, BF16, FP32, FP64, UINT16, UINT32, UINT64, BYTES)"
            ))
        })
    }
}

impl fmt::Display for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Datatype::ALL {
            assert_eq!(Datatype::parse(d.as_str()), Some(d));
        }
        assert_eq!(Datatype::parse("fp32"), None);
        assert_eq!(Datatype::parse("FLOAT"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(Datatype::Fp32.size(), Some(4));
        assert_eq!(Datatype::Bf16.size(), Some(2));
        assert_eq!(Datatype::Bool.size(), Some(1));
        assert_eq!(Datatype::Bytes.size(), None);
        assert!(!Datatype::Uint32.has_torch_kind());
        assert!(Datatype::Int16.has_torch_kind());
    }
}
