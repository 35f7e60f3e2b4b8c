//! List filters: the subset of AIP-160 the search calls take (terms `field op value` joined
//! by `AND`), parsed at the edge into plain bounds. Every refusal names the offending term.

use switchboard_core::State;

use crate::error::Error;
use crate::names;

/// A comparison of one term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One `field op value` term, with its text for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub field: String,
    pub op: Op,
    pub value: String,
    pub text: String,
}

fn refuse(message: String) -> Error {
    Error::field("filter", message)
}

/// Splits a filter into its terms. Empty (or blank): no terms.
pub fn terms(filter: &str) -> Result<Vec<Term>, Error> {
    let mut out = Vec::new();
    let mut rest = filter.trim_start();
    while !rest.is_empty() {
        let start = rest;
        let field_len =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let field = &rest[..field_len];
        if field.is_empty() {
            return Err(refuse(format!(
                "expected a field name at {:?}; terms are `field op value` joined by AND",
                clip(rest)
            )));
        }
        rest = rest[field_len..].trim_start();
        let (op, len) = match rest.as_bytes() {
            [b'>', b'=', ..] => (Op::Ge, 2),
            [b'<', b'=', ..] => (Op::Le, 2),
            [b'!', b'=', ..] => {
                return Err(refuse(format!("term `{field} !=`: != is not supported; use =")));
            }
            [b'=', ..] => (Op::Eq, 1),
            [b'<', ..] => (Op::Lt, 1),
            [b'>', ..] => (Op::Gt, 1),
            _ => {
                return Err(refuse(format!(
                    "term `{field}`: expected an operator (=, <, <=, >, >=) after the field, found {:?}",
                    clip(rest)
                )));
            }
        };
        rest = rest[len..].trim_start();
        let (value, after) = value(field, rest)?;
        let text = start[..start.len() - after.len()].trim_end().to_owned();
        out.push(Term { field: field.to_owned(), op, value, text });
        rest = after.trim_start();
        if rest.is_empty() {
            break;
        }
        match rest.strip_prefix("AND") {
            Some(r) if r.is_empty() || r.starts_with(char::is_whitespace) => {
                rest = r.trim_start();
                if rest.is_empty() {
                    return Err(refuse("the filter ends with AND; add a term after it".into()));
                }
            }
            _ => {
                return Err(refuse(format!(
                    "after term `{}`: expected AND, found {:?} (only AND joins terms; OR, NOT and parentheses are not supported)",
                    out.last().map(|t| t.text.as_str()).unwrap_or_default(),
                    clip(rest)
                )));
            }
        }
    }
    Ok(out)
}

/// A quoted string or a bare word, and the text after it.
fn value<'a>(field: &str, rest: &'a str) -> Result<(String, &'a str), Error> {
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((out, &quoted[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err(refuse(format!("term `{field}`: the quoted value is not closed with \"")));
    }
    let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if len == 0 {
        return Err(refuse(format!("term `{field}`: expected a value after the operator")));
    }
    Ok((rest[..len].to_owned(), &rest[len..]))
}

fn clip(s: &str) -> String {
    s.chars().take(24).collect()
}

/// What a conversation listing asks for (ids are caller-chosen ids of the tenant).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversations {
    pub conversation: Option<u64>,
    pub state: Option<State>,
    pub agent: Option<String>,
    pub group: Option<String>,
    pub customer: Option<String>,
    pub opened: Range,
    pub ended: Range,
}

/// A time range in ms: `from` inclusive, `before` exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub from: Option<u64>,
    pub before: Option<u64>,
}

impl Range {
    pub fn is_set(&self) -> bool {
        self.from.is_some() || self.before.is_some()
    }

    pub fn contains(&self, at: u64) -> bool {
        self.from.is_none_or(|f| at >= f) && self.before.is_none_or(|b| at < b)
    }
}

/// Parses a conversation filter of tenant `tenant`.
pub fn conversations(tenant: &str, filter: &str) -> Result<Conversations, Error> {
    let mut f = Conversations::default();
    for t in terms(filter)? {
        let time = matches!(t.field.as_str(), "opened_at" | "ended_at");
        if !time && t.op != Op::Eq {
            return Err(refuse(format!("term `{}`: {} takes = only", t.text, t.field)));
        }
        match t.field.as_str() {
            "name" => {
                let (owner, n) = names::conversation("filter", &t.value)?;
                same_tenant(tenant, &owner, &t)?;
                set(&mut f.conversation, n, &t)?;
            }
            "state" => set(&mut f.state, state(&t)?, &t)?,
            "agent" => set(&mut f.agent, child(tenant, &t, "agents")?, &t)?,
            "group" => set(&mut f.group, child(tenant, &t, "groups")?, &t)?,
            "customer" => set(&mut f.customer, child(tenant, &t, "customers")?, &t)?,
            "opened_at" => bound(&mut f.opened, &t)?,
            "ended_at" => bound(&mut f.ended, &t)?,
            other => {
                return Err(refuse(format!(
                    "term `{}`: unknown field {other:?}; a conversation filter takes name, state, agent, group, customer, opened_at, ended_at",
                    t.text
                )));
            }
        }
    }
    Ok(f)
}

/// What a customer listing asks for; `phone_prefix` when the phone ends in `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customers {
    pub remark_name: Option<String>,
    pub phone: Option<String>,
    pub phone_prefix: bool,
    pub email: Option<String>,
}

impl Customers {
    pub fn matches(&self, p: &crate::state::Profile) -> bool {
        let phone = match &self.phone {
            None => true,
            Some(want) if self.phone_prefix => p.phone.starts_with(want.as_str()),
            Some(want) => p.phone == *want,
        };
        phone
            && self.remark_name.as_ref().is_none_or(|r| p.remark_name == *r)
            && self.email.as_ref().is_none_or(|e| p.email == *e)
    }

    /// Whether any term is set: a customer without a profile matches only an empty filter.
    pub fn is_empty(&self) -> bool {
        self.remark_name.is_none() && self.phone.is_none() && self.email.is_none()
    }
}

/// Parses a customer filter.
pub fn customers(filter: &str) -> Result<Customers, Error> {
    let mut f = Customers::default();
    for t in terms(filter)? {
        if t.op != Op::Eq {
            return Err(refuse(format!("term `{}`: {} takes = only", t.text, t.field)));
        }
        match t.field.as_str() {
            "remark_name" => set(&mut f.remark_name, t.value.clone(), &t)?,
            "email" => set(&mut f.email, t.value.clone(), &t)?,
            "phone" => {
                let (phone, prefix) = match t.value.strip_suffix('*') {
                    Some(p) => (p.to_owned(), true),
                    None => (t.value.clone(), false),
                };
                if phone.contains('*') || (prefix && phone.is_empty()) {
                    return Err(refuse(format!(
                        "term `{}`: `*` may only end a phone prefix, after at least one character",
                        t.text
                    )));
                }
                set(&mut f.phone, phone, &t)?;
                f.phone_prefix = prefix;
            }
            other => {
                return Err(refuse(format!(
                    "term `{}`: unknown field {other:?}; a customer filter takes remark_name, phone, email",
                    t.text
                )));
            }
        }
    }
    Ok(f)
}

fn set<T>(slot: &mut Option<T>, value: T, t: &Term) -> Result<(), Error> {
    if slot.is_some() {
        return Err(refuse(format!("term `{}`: {} is given twice", t.text, t.field)));
    }
    *slot = Some(value);
    Ok(())
}

fn same_tenant(tenant: &str, owner: &str, t: &Term) -> Result<(), Error> {
    if owner != tenant {
        return Err(refuse(format!(
            "term `{}`: names tenant {owner:?}, but this listing is of tenant {tenant:?}",
            t.text
        )));
    }
    Ok(())
}

fn child(tenant: &str, t: &Term, kind: &str) -> Result<String, Error> {
    let (owner, id) = names::child("filter", &t.value, kind)?;
    same_tenant(tenant, &owner, t)?;
    Ok(id)
}

fn state(t: &Term) -> Result<State, Error> {
    let v = t.value.strip_prefix("CONVERSATION_STATE_").unwrap_or(&t.value);
    Ok(match v {
        "BOT" => State::Bot,
        "QUEUED" => State::Queued,
        "OFFERED" => State::Offered,
        "ASSIGNED" => State::Assigned,
        "ENDED" => State::Ended,
        _ => {
            return Err(refuse(format!(
                "term `{}`: unknown state; use BOT, QUEUED, OFFERED, ASSIGNED or ENDED",
                t.text
            )));
        }
    })
}

fn bound(range: &mut Range, t: &Term) -> Result<(), Error> {
    let at: jiff::Timestamp = t.value.parse().map_err(|e| {
        refuse(format!(
            "term `{}`: {:?} is not an RFC 3339 time such as \"2026-01-31T09:00:00+08:00\" ({e})",
            t.text, t.value
        ))
    })?;
    let ms = u64::try_from(at.as_millisecond()).unwrap_or(0);
    let (slot, value) = match t.op {
        Op::Ge => (&mut range.from, ms),
        Op::Gt => (&mut range.from, ms.saturating_add(1)),
        Op::Lt => (&mut range.before, ms),
        Op::Le => (&mut range.before, ms.saturating_add(1)),
        Op::Eq => {
            return Err(refuse(format!(
                "term `{}`: {} takes a range (>=, >, <, <=), not =",
                t.text, t.field
            )));
        }
    };
    if slot.is_some() {
        return Err(refuse(format!(
            "term `{}`: {} already has a bound on that side",
            t.text, t.field
        )));
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_subset() {
        let f = conversations(
            "acme",
            r#"state = "QUEUED" AND agent = "tenants/acme/agents/a1" AND opened_at >= "2026-01-01T00:00:00Z" AND opened_at < 2026-01-02T00:00:00Z AND name = tenants/acme/conversations/7"#,
        )
        .unwrap();
        assert_eq!(f.state, Some(State::Queued));
        assert_eq!(f.agent.as_deref(), Some("a1"));
        assert_eq!(f.conversation, Some(7));
        assert_eq!(f.opened.from, Some(1_767_225_600_000));
        assert_eq!(f.opened.before, Some(1_767_225_600_000 + 86_400_000));
        assert_eq!(conversations("acme", "  ").unwrap(), Conversations::default());
        let c = customers(r#"phone = "138*" AND remark_name = "VIP \"Zhang\"""#).unwrap();
        assert!(c.phone_prefix);
        assert_eq!(c.remark_name.as_deref(), Some("VIP \"Zhang\""));
    }

    #[test]
    fn refusals_name_the_term() {
        let cases = [
            ("state = \"SLEEPING\"", "state = \"SLEEPING\""),
            ("colour = red", "colour"),
            ("state = QUEUED OR state = BOT", "expected AND"),
            ("state = QUEUED AND", "ends with AND"),
            ("opened_at >= yesterday", "opened_at >= yesterday"),
            ("opened_at = 2026-01-01T00:00:00Z", "range"),
            ("agent = tenants/other/agents/a", "tenant \"other\""),
            ("agent = bob", "not an agent name"),
            ("agent > tenants/acme/agents/a", "= only"),
            ("state = QUEUED AND state = BOT", "twice"),
            ("name = \"tenants/acme/conversations/7", "not closed"),
            ("= 3", "field name"),
            ("state", "operator"),
        ];
        for (filter, says) in cases {
            let e = conversations("acme", filter).unwrap_err().to_string();
            assert!(e.contains(says), "{filter}: {e}");
            assert!(e.starts_with("filter"), "{filter}: {e}");
        }
        assert!(customers("phone = *").is_err());
        assert!(customers("nickname = x").unwrap_err().to_string().contains("nickname"));
    }
}
