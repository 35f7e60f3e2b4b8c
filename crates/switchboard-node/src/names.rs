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
    let (t, id) = child_parts(field, name, kind)?;
    Ok((t.to_owned(), id.to_owned()))
}

/// `tenants/{t}/{kind}/{id}` → (t, id), borrowed from `name` (the calls on the hot path only
/// compare the tenant: no copy of it).
pub fn child_parts<'n>(
    field: &str,
    name: &'n str,
    kind: &str,
) -> Result<(&'n str, &'n str), Error> {
    let mut parts = name.split('/');
    let parts = [parts.next(), parts.next(), parts.next(), parts.next(), parts.next()];
    match parts {
        [Some("tenants"), Some(t), Some(k), Some(id), None] if k == kind => {
            check_id(field, t)?;
            if kind != "conversations" {
                check_id(field, id)?;
            }
            Ok((t, id))
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
    child_id_in(field, name, kind, tenant).map(str::to_owned)
}

/// [`child_in`], borrowed from `name`.
pub fn child_id_in<'n>(
    field: &str,
    name: &'n str,
    kind: &str,
    tenant: &str,
) -> Result<&'n str, Error> {
    let (t, id) = child_parts(field, name, kind)?;
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
    conversation_parts(field, name).map(|(t, n)| (t.to_owned(), n))
}

/// [`conversation`], the tenant borrowed from `name`.
pub fn conversation_parts<'n>(field: &str, name: &'n str) -> Result<(&'n str, u64), Error> {
    let (t, id) = child_parts(field, name, "conversations")?;
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

/// `tenants/{t}/{kind}/{id}`. Built by hand: every answer and event names several resources,
/// and `format!` was about 1% of a node's CPU under load (`perf`, 200 arrivals/s).
pub fn child_name(t: &str, kind: &str, id: &str) -> String {
    let mut name = String::with_capacity(10 + t.len() + kind.len() + id.len());
    name.push_str("tenants/");
    name.push_str(t);
    name.push('/');
    name.push_str(kind);
    name.push('/');
    name.push_str(id);
    name
}

/// `tenants/{t}/{kind}/{n}`, for resources named by a number (conversations).
pub fn numbered_name(t: &str, kind: &str, n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // ASCII digits only.
    child_name(t, kind, std::str::from_utf8(&digits[at..]).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_built_as_they_parse() {
        assert_eq!(child_name("acme", "agents", "alice"), "tenants/acme/agents/alice");
        for n in [0, 7, 42, 1_000, u64::MAX] {
            let name = numbered_name("acme", "conversations", n);
            assert_eq!(name, format!("tenants/acme/conversations/{n}"));
            assert_eq!(conversation("c", &name).unwrap(), ("acme".into(), n));
        }
        assert!(child("agent", "tenants/acme/agents/alice/more", "agents").is_err());
        assert!(child("agent", "tenants/acme/agents", "agents").is_err());
    }

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
