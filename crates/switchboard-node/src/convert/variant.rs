//! A unit enum value's serde name, read straight from `Serialize` (`serialize_unit_variant`)
//! instead of building a `serde_json::Value` and copying its string out: events, views and
//! metric labels name causes, states and reasons on every step.

use serde::ser::{self, Impossible, Serialize};

/// The name serde gives `v` if it serializes as a unit variant (after `rename_all`), through
/// newtype wrappers; `None` for anything else.
pub fn name<T: Serialize + ?Sized>(v: &T) -> Option<&'static str> {
    v.serialize(Name).ok()
}

/// Anything but a unit variant.
#[derive(Debug)]
pub struct NotUnit;

impl std::fmt::Display for NotUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a unit variant")
    }
}

impl std::error::Error for NotUnit {}

impl ser::Error for NotUnit {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotUnit
    }
}

struct Name;

type Nothing = Impossible<&'static str, NotUnit>;

/// Every method but the unit variant's (and the newtypes around one) refuses; the compound
/// ones (`Nothing: …`) would answer a serializer for their parts.
macro_rules! refuse {
    (Nothing: $($method:ident($($ty:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $ty),*) -> Result<Nothing, NotUnit> { Err(NotUnit) })*
    };
    ($($method:ident($($ty:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $ty),*) -> Result<&'static str, NotUnit> { Err(NotUnit) })*
    };
}

impl ser::Serializer for Name {
    type Ok = &'static str;
    type Error = NotUnit;
    type SerializeSeq = Nothing;
    type SerializeTuple = Nothing;
    type SerializeTupleStruct = Nothing;
    type SerializeTupleVariant = Nothing;
    type SerializeMap = Nothing;
    type SerializeStruct = Nothing;
    type SerializeStructVariant = Nothing;

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<&'static str, NotUnit> {
        Ok(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<&'static str, NotUnit> {
        value.serialize(self)
    }

    refuse!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
    );

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<&'static str, NotUnit> {
        Err(NotUnit)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<&'static str, NotUnit> {
        Err(NotUnit)
    }

    refuse!(Nothing:
        serialize_seq(Option<usize>),
        serialize_tuple(usize),
        serialize_tuple_struct(&'static str, usize),
        serialize_tuple_variant(&'static str, u32, &'static str, usize),
        serialize_map(Option<usize>),
        serialize_struct(&'static str, usize),
        serialize_struct_variant(&'static str, u32, &'static str, usize),
    );
}

#[cfg(test)]
mod tests {
    use switchboard_core::router::{Release, Via};
    use switchboard_core::{AgentStatus, Cause, State};

    use super::*;

    /// The name is the one serde_json writes, for the enums the node names this way; a value
    /// that is not a unit variant has none.
    #[test]
    fn a_unit_variants_name_is_serdes() {
        fn json<T: Serialize>(v: &T) -> Option<String> {
            serde_json::to_value(v).ok()?.as_str().map(str::to_owned)
        }
        fn same<T: Serialize>(v: T) {
            assert_eq!(name(&v).map(str::to_owned), json(&v));
        }
        for v in [Cause::ChannelClosed, Cause::IdleTimeout, Cause::Opened, Cause::EndedByAgent] {
            same(v);
        }
        for v in [Via::Auto, Via::Accepted] {
            same(v);
        }
        for v in [Release::Declined, Release::TimedOut, Release::AgentOffline] {
            same(v);
        }
        for v in [State::Queued, State::Assigned, State::Ended] {
            same(v);
        }
        same(AgentStatus::Online);
        assert_eq!(name(&3u32), None);
        assert_eq!(name("text"), None);
        assert_eq!(name(&Some(Via::Auto)), None);
    }
}
