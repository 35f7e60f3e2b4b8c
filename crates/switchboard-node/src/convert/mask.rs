//! Field masks (AIP-134) on updates of resources: which fields of a request to write onto the
//! resource's current value. Merging happens on the proto values, in the apply layer, so the
//! logged request replays to the same result.
//!
//! The rule (documented in `proto/switchboard/v1/common.proto`): with a mask, exactly the
//! named paths are written (an empty value clears); `*` writes everything; without a mask,
//! the top-level fields the request populates are written. Unknown paths are refused.

use crate::error::{Error, Result};

/// The paths to write, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    paths: Vec<String>,
}

impl Mask {
    /// The request's mask, its paths checked against `known` (top-level fields, and nested
    /// paths such as `replies.queue`); without one, the mask `populated` implies: the
    /// top-level fields the request set.
    pub fn parse(
        mask: Option<&prost_types::FieldMask>,
        known: &[String],
        populated: &[(&str, bool)],
    ) -> Result<Mask> {
        let Some(mask) = mask else {
            let paths = populated.iter().filter(|(_, set)| *set).map(|(p, _)| (*p).to_owned());
            return Ok(Mask { paths: paths.collect() });
        };
        for (i, path) in mask.paths.iter().enumerate() {
            let star_alone = path == "*" && mask.paths.len() == 1;
            if !star_alone && !known.contains(path) {
                let why = if path == "*" {
                    "`*` must be the only path".to_owned()
                } else {
                    format!(
                        "unknown path {path:?}; the paths of this update are {}",
                        known.join(", ")
                    )
                };
                return Err(Error::field(&format!("update_mask.paths[{i}]"), why));
            }
        }
        Ok(Mask { paths: mask.paths.clone() })
    }

    /// Whether `path` is written: named itself, or under a named path, or `*`.
    pub fn covers(&self, path: &str) -> bool {
        self.paths.iter().any(|p| {
            p == "*"
                || p == path
                || path.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('.'))
        })
    }

    /// Whether anything under `prefix` (or `prefix` itself) is written.
    pub fn touches(&self, prefix: &str) -> bool {
        self.covers(prefix)
            || self
                .paths
                .iter()
                .any(|p| p.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')))
    }
}

/// Copies the fields `mask` covers from `$new` onto `$old`: each field `f` is the path
/// `$prefix` followed by `f`.
macro_rules! merge_fields {
    ($mask:expr, $prefix:literal, $old:expr, $new:expr, [$($field:ident),* $(,)?]) => {
        $(
            if $mask.covers(concat!($prefix, stringify!($field))) {
                $old.$field = $new.$field.clone();
            }
        )*
    };
}
pub(crate) use merge_fields;

/// The kinds of `ReplySettings`, as paths.
pub const REPLY_KINDS: &[&str] = &[
    "auto_accept",
    "queue",
    "agent_no_response",
    "customer_no_response",
    "idle_end",
    "customer_no_response_end",
    "manual_end",
    "batch_end",
    "offline",
    "queue_full",
    "closed",
];

/// Merges reply settings kind by kind; `prefix` is the path of the settings (`replies.`, or
/// empty when they are the whole request).
pub fn merge_replies(
    mask: &Mask,
    prefix: &str,
    old: &mut Option<switchboard_proto::v1::ReplySettings>,
    new: Option<&switchboard_proto::v1::ReplySettings>,
) {
    let whole = prefix.strip_suffix('.').unwrap_or(prefix);
    if !whole.is_empty() && mask.covers(whole) {
        *old = new.cloned();
        return;
    }
    let new = new.cloned().unwrap_or_default();
    let o = old.get_or_insert_with(Default::default);
    let m = Prefixed { mask, prefix };
    merge_fields!(
        m,
        "",
        o,
        new,
        [
            auto_accept,
            queue,
            agent_no_response,
            customer_no_response,
            idle_end,
            customer_no_response_end,
            manual_end,
            batch_end,
            offline,
            queue_full,
            closed,
        ]
    );
}

/// Reply settings after an update of the field at `path` (`replies`, or empty when the
/// replies are the whole request): kept as they are when the mask leaves them alone (no
/// round trip through the proto form), otherwise merged kind by kind and checked.
pub fn updated_replies(
    mask: &Mask,
    path: &str,
    current: Option<&switchboard_core::config::ReplySettings>,
    new: Option<&switchboard_proto::v1::ReplySettings>,
) -> Result<switchboard_core::config::ReplySettings> {
    let field = if path.is_empty() { "replies" } else { path };
    let touched = if path.is_empty() {
        REPLY_KINDS.iter().any(|k| mask.covers(k))
    } else {
        mask.touches(path)
    };
    if !touched {
        return match current {
            Some(c) => Ok(c.clone()),
            None => super::settings::reply_settings(field, None),
        };
    }
    let mut merged = current.map(super::settings::reply_settings_to_pb);
    let prefix = if path.is_empty() { String::new() } else { format!("{path}.") };
    merge_replies(mask, &prefix, &mut merged, new);
    super::settings::reply_settings(field, merged.as_ref())
}

/// A mask seen from under a prefix known only at run time.
struct Prefixed<'a> {
    mask: &'a Mask,
    prefix: &'a str,
}

impl Prefixed<'_> {
    fn covers(&self, path: &str) -> bool {
        self.mask.covers(&format!("{}{path}", self.prefix))
    }
}

/// The paths an update knows: its top-level fields, and for each `(field, subfields)` of
/// `nested` the paths `field.subfield`.
pub fn known_paths(top: &[&str], nested: &[(&str, &[&str])]) -> Vec<String> {
    let under = nested.iter().flat_map(|(f, subs)| subs.iter().map(move |s| format!("{f}.{s}")));
    top.iter().map(|p| (*p).to_owned()).chain(under).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
        Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() })
    }

    #[test]
    fn an_absent_mask_writes_what_is_populated() {
        let m = Mask::parse(None, &known_paths(&["a", "b"], &[]), &[("a", true), ("b", false)])
            .unwrap();
        assert!(m.covers("a") && !m.covers("b"));
    }

    #[test]
    fn paths_cover_what_is_under_them_and_star_covers_all() {
        let known = known_paths(&["settings", "name"], &[("settings", &["replies"])]);
        let m = Mask::parse(mask(&["settings"]).as_ref(), &known, &[]).unwrap();
        assert!(m.covers("settings.replies") && !m.covers("name") && !m.covers("settingsx"));
        let m = Mask::parse(mask(&["settings.replies"]).as_ref(), &known, &[]).unwrap();
        assert!(m.touches("settings") && !m.covers("settings"));
        let all = Mask::parse(mask(&["*"]).as_ref(), &known, &[]).unwrap();
        assert!(all.covers("name") && all.covers("settings.replies"));
    }

    #[test]
    fn unknown_paths_are_refused_by_name() {
        let known = known_paths(&["name"], &[]);
        let e = Mask::parse(mask(&["name", "nickname"]).as_ref(), &known, &[]).unwrap_err();
        assert!(
            e.to_string().starts_with("update_mask.paths[1]: unknown path \"nickname\""),
            "{e}"
        );
        let e = Mask::parse(mask(&["*", "name"]).as_ref(), &known, &[]).unwrap_err();
        assert!(e.to_string().contains("only path"), "{e}");
    }

    #[test]
    fn replies_merge_kind_by_kind() {
        use switchboard_proto::v1 as pb;
        let texts = |t: &str| Some(pb::Texts { texts: vec![t.into()] });
        let mut old = Some(pb::ReplySettings {
            manual_end: texts("bye"),
            batch_end: texts("closing"),
            ..Default::default()
        });
        let new = pb::ReplySettings { manual_end: texts("goodbye"), ..Default::default() };
        let known = known_paths(&["replies"], &[("replies", REPLY_KINDS)]);
        let m = Mask::parse(mask(&["replies.manual_end"]).as_ref(), &known, &[]).unwrap();
        merge_replies(&m, "replies.", &mut old, Some(&new));
        assert_eq!(old.as_ref().unwrap().manual_end, texts("goodbye"));
        assert_eq!(old.as_ref().unwrap().batch_end, texts("closing"));
    }
}
