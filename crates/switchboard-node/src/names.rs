//! Resource names (`tenants/{t}/agents/{a}` …) and caller-chosen ids, parsed once at the edge.

use crate::error::Error;

/// Longest caller-chosen id.
pub const MAX_ID: usize = 63;

/// Checks a caller-chosen id: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn check_id(field: &str, id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::field(
            field,
            format!(
                "{id:?} is not a valid id: use 1 to {MAX_ID} of a-z, 0-9, '_' and '-', starting with a letter or digit"
            ),
        ))
    }
}

/// `tenants/{t}` → t.
pub fn tenant(field: &str, name: &str) -> Result<String, Error> {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["tenants", t] => {
            check_id(field, t)?;
            Ok((*t).to_owned())
        }
        _ => Err(Error::field(
            field,
            format!("{name:?} is not a tenant name; expected tenants/{{tenant}}"),
        )),
    }
}

/// `tenants/{t}/{kind}/{id}` → (t, id).
pub fn child(field: &str, name: &str, kind: &str) -> Result<(String, String), Error> {
    match name.split('/').collect::<Vec<_>>().as_slice() {
        ["tenants", t, k, id] if *k == kind => {
            check_id(field, t)?;
            if kind != "conversations" {
                check_id(field, id)?;
            }
            Ok(((*t).to_owned(), (*id).to_owned()))
        }
        _ => Err(Error::field(
            field,
            format!(
                "{name:?} is not a{} {} name; expected tenants/{{tenant}}/{kind}/{{id}}",
                if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "n" } else { "" },
                kind.trim_end_matches('s'),
            ),
        )),
    }
}

/// A reference to a resource of tenant `tenant`: `tenants/{tenant}/{kind}/{id}` → id. Every
/// field that names another resource takes its full name (AIP-122), never a bare id.
pub fn child_in(field: &str, name: &str, kind: &str, tenant: &str) -> Result<String, Error> {
    let (t, id) = child(field, name, kind)?;
    if t != tenant {
        return Err(Error::field(
            field,
            format!("{name:?} is in tenant {t:?}; this request is for tenant {tenant:?}"),
        ));
    }
    Ok(id)
}

/// `tenants/{t}/conversations/{n}` → (t, n).
pub fn conversation(field: &str, name: &str) -> Result<(String, u64), Error> {
    let (t, id) = child(field, name, "conversations")?;
    let n = id.parse::<u64>().map_err(|_| {
        Error::field(
            field,
            format!("{name:?}: a conversation id is the number Switchboard assigned"),
        )
    })?;
    Ok((t, n))
}

pub fn tenant_name(t: &str) -> String {
    format!("tenants/{t}")
}

pub fn child_name(t: &str, kind: &str, id: &str) -> String {
    format!("tenants/{t}/{kind}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_refuse_with_reasons() {
        assert_eq!(tenant("name", "tenants/acme").unwrap(), "acme");
        assert_eq!(
            child("agent", "tenants/acme/agents/alice", "agents").unwrap(),
            ("acme".into(), "alice".into())
        );
        assert_eq!(
            conversation("c", "tenants/acme/conversations/42").unwrap(),
            ("acme".into(), 42)
        );
        assert!(tenant("name", "acme").is_err());
        assert!(child("agent", "tenants/acme/groups/alice", "agents").is_err());
        assert!(
            conversation("c", "tenants/acme/conversations/x")
                .unwrap_err()
                .to_string()
                .contains("number")
        );
        assert!(check_id("id", "Alice").is_err());
        assert!(check_id("id", "").is_err());
        assert!(check_id("id", &"a".repeat(64)).is_err());
        check_id("id", "a-1_b").unwrap();
    }
}
