//! Switchboard's public gRPC API, generated from `proto/switchboard/v1` at build time.
//! Conversions to domain types live at the boundary, in the node crate.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation, missing_debug_implementations)]

pub mod v1 {
    tonic::include_proto!("switchboard.v1");

    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("switchboard_v1_descriptor");
}

/// Cluster-internal records (the durable command log) and the node-to-node actor mesh
/// service; not part of the public API.
pub mod internal {
    pub mod v1 {
        tonic::include_proto!("switchboard.internal.v1");
    }
}

/// The proto3 JSON mapping of API messages (field names as written in the `.proto` files,
/// enums by name, timestamps in RFC 3339, 64-bit integers as strings), read off the
/// descriptor set: what webhooks POST and what `switchboard ctl` prints.
pub mod json {
    use std::sync::LazyLock;

    use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

    static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
        DescriptorPool::decode(crate::v1::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    });

    fn dynamic(full_name: &str, message: &impl prost::Message) -> Result<DynamicMessage, String> {
        let pool = POOL.as_ref().map_err(|e| format!("descriptor set: {e}"))?;
        let descriptor = pool
            .get_message_by_name(full_name)
            .ok_or_else(|| format!("no message {full_name} in the descriptor set"))?;
        DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
            .map_err(|e| format!("{full_name}: {e}"))
    }

    fn options(defaults: bool) -> SerializeOptions {
        SerializeOptions::new().use_proto_field_name(true).skip_default_fields(!defaults)
    }

    /// `message` (of the type named `full_name`, e.g. `switchboard.v1.Event`) as one line of
    /// JSON. Fields at their default value are left out, as the mapping says.
    pub fn to_json(full_name: &str, message: &impl prost::Message) -> Result<String, String> {
        let dynamic = dynamic(full_name, message)?;
        let mut out = serde_json::Serializer::new(Vec::new());
        dynamic
            .serialize_with_options(&mut out, &options(false))
            .map_err(|e| format!("{full_name}: {e}"))?;
        String::from_utf8(out.into_inner()).map_err(|e| e.to_string())
    }

    /// `message` as a JSON value; with `defaults`, fields at their default value too.
    pub fn to_value(
        full_name: &str,
        message: &impl prost::Message,
        defaults: bool,
    ) -> Result<serde_json::Value, String> {
        let dynamic = dynamic(full_name, message)?;
        dynamic
            .serialize_with_options(serde_json::value::Serializer, &options(defaults))
            .map_err(|e| format!("{full_name}: {e}"))
    }

    /// The columns a table of a message type shows, in declaration order: each top-level
    /// field, except that the fields of a `oneof` share one column named after it. Each column
    /// is its name and the fields it shows.
    pub fn columns(full_name: &str) -> Result<Vec<(String, Vec<String>)>, String> {
        let pool = POOL.as_ref().map_err(|e| format!("descriptor set: {e}"))?;
        let descriptor = pool
            .get_message_by_name(full_name)
            .ok_or_else(|| format!("no message {full_name} in the descriptor set"))?;
        let mut columns: Vec<(String, Vec<String>)> = Vec::new();
        for field in descriptor.fields() {
            let name = field.name().to_owned();
            match field.containing_oneof().filter(|o| !o.is_synthetic()) {
                Some(oneof) => match columns.iter_mut().find(|(c, _)| c == oneof.name()) {
                    Some((_, fields)) => fields.push(name),
                    None => columns.push((oneof.name().to_owned(), vec![name])),
                },
                None => columns.push((name.clone(), vec![name])),
            }
        }
        Ok(columns)
    }

    #[cfg(test)]
    mod tests {
        use crate::v1 as pb;

        #[test]
        fn events_map_to_proto_json() {
            let event = pb::Event {
                cursor: 42,
                at: Some(prost_types::Timestamp { seconds: 1_764_466_800, nanos: 0 }),
                r#type: "assigned".into(),
                conversation: "tenants/acme/conversations/7".into(),
                ..Default::default()
            };
            let json = super::to_json("switchboard.v1.Event", &event).unwrap();
            assert_eq!(
                json,
                r#"{"cursor":"42","at":"2025-11-30T01:40:00Z","type":"assigned","conversation":"tenants/acme/conversations/7"}"#
            );
            assert!(super::to_json("switchboard.v1.Nothing", &event).is_err());
        }
    }
}
