//! Finding conversations and customers (seeds 003, 004): the listings behind
//! `SupervisorService.ListConversations`, `AgentService.SearchConversations`,
//! `AdminService.ListCustomers` and `AgentService.SearchCustomers`.
//!
//! Conversations come newest first (descending id, which grows with the opening time) from
//! two places: open ones from the tenant's memory, ended ones from the store's archive
//! (`Store::scan_archived`, a bounded walk of one index). A page is every match in an id
//! interval `[low, before)`: the archive reports down to where its walk is complete, the
//! memory down to where its share of the page is complete, and the page stops at the higher
//! of the two, so the next page (`before = low`) neither repeats nor skips anything, however
//! conversations move from memory to the archive meanwhile (an id never changes, and memory
//! is read before the archive, so one that ends in between is found in the archive).
//! Customers come the same way in ascending id order, from memory and the `customers` table:
//! by the index of an exact remark name, phone or e-mail term (`Store::find_customers`), else
//! a window of the table in id order (`Store::scan_customers`).

use std::sync::Arc;

use switchboard_core::engine::Actor;
use switchboard_core::{AgentId, Conversation, GroupId, State};
use switchboard_proto::v1 as pb;
use switchboard_store::{ArchiveScan, ContactField, CustomerRecord};
use tonic::Status;

use super::filter::{self, Range};
use super::{bad_token, parse_page_token};
use crate::archive;
use crate::convert::{resources, views};
use crate::error::Error;
use crate::registry::Registry;
use crate::state::TenantState;

/// Page size when none is asked for, and the largest one served.
pub const DEFAULT_SIZE: usize = 50;
pub const MAX_SIZE: usize = 500;
/// Archive index entries one page reads at most.
pub const ARCHIVE_WINDOW: usize = 1000;
/// Stored customers one page reads at most (matches of an exact term, or rows of a scan).
pub const CUSTOMER_WINDOW: usize = 2000;

pub(super) fn size(page_size: u32) -> usize {
    match page_size as usize {
        0 => DEFAULT_SIZE,
        n => n.min(MAX_SIZE),
    }
}

/// Tokens carry a digest of the filter they were issued for (FNV-1a), so a token cannot
/// continue a different search.
fn filter_key(filter: &str) -> String {
    let hash = filter
        .trim()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// The position a token of `kind` holds for `filter` (`None`: the first page).
pub(super) fn position(kind: &str, token: &str, filter: &str) -> Result<Option<String>, Error> {
    let position = parse_page_token(kind, token)?;
    if position.is_empty() {
        return Ok(None);
    }
    match position.split_once('.') {
        Some((key, at)) if key == filter_key(filter) => Ok(Some(at.to_owned())),
        Some(_) => Err(Error::field(
            "page_token",
            "this token continues a search with another filter; send the same filter, or no token for the first page",
        )),
        None => Err(bad_token()),
    }
}

pub(super) fn token(kind: &str, filter: &str, at: &str) -> String {
    super::page_token(kind, &format!("{}.{at}", filter_key(filter)))
}

/// The acting agent whose scope limits a search: `None` for the whole tenant (no acting
/// agent, or one with the supervisor flag).
fn limited(s: &TenantState, viewer: Option<&str>) -> Result<Option<AgentId>, Error> {
    let Some(id) = viewer else { return Ok(None) };
    let a = s.agent("agent", id)?;
    Ok((!s.is_supervisor(a)).then_some(a))
}

/// A conversation filter with the tenant's numbers, and the viewer's scope.
#[derive(Debug, Clone, Default)]
pub(super) struct Resolved {
    /// A name in the filter is unknown to the tenant: nothing matches.
    pub nothing: bool,
    state: Option<State>,
    agent: Option<AgentId>,
    group: Option<GroupId>,
    customer: Option<String>,
    opened: Range,
    ended: Range,
    /// An agent without the supervisor flag sees only what it serves or served.
    viewer: Option<AgentId>,
}

impl Resolved {
    fn new(
        s: &TenantState,
        f: &filter::Conversations,
        viewer: Option<&str>,
    ) -> Result<Self, Error> {
        let viewer = limited(s, viewer)?;
        let agent = f.agent.as_deref().map(|a| s.agents.get(a).map(AgentId));
        let group = f.group.as_deref().map(|g| s.groups.get(g).map(GroupId));
        Ok(Self::of(f, agent, group, viewer))
    }

    /// `f` with its agent and group looked up (`Some(None)`: named, and unknown).
    pub(super) fn of(
        f: &filter::Conversations,
        agent: Option<Option<AgentId>>,
        group: Option<Option<GroupId>>,
        viewer: Option<AgentId>,
    ) -> Self {
        Resolved {
            nothing: agent == Some(None) || group == Some(None),
            state: f.state,
            agent: agent.flatten(),
            group: group.flatten(),
            customer: f.customer.clone(),
            opened: f.opened,
            ended: f.ended,
            viewer,
        }
    }

    pub(super) fn matches(&self, c: &Conversation, customer: &str) -> bool {
        !self.nothing
            && self.state.is_none_or(|s| c.state == s)
            && self.agent.is_none_or(|a| c.agent == Some(a) || c.served_by.contains(&a))
            && self.group.is_none_or(|g| c.group == g)
            && self.customer.as_deref().is_none_or(|u| u == customer)
            && self.opened.contains(c.opened_at.0)
            && (!self.ended.is_set() || c.ended_at.is_some_and(|e| self.ended.contains(e.0)))
            && self.viewer.is_none_or(|a| c.visible_until(Actor::Agent(a)).is_some())
    }

    /// Whether the archive's own filters (customer, times) leave checks to the node.
    fn checks_bodies(&self) -> bool {
        self.agent.is_some() || self.group.is_some() || self.viewer.is_some()
    }
}

/// One page of conversations of `tenant` matching `filter`, as `viewer` (an agent id; `None`
/// for the whole tenant) may see them.
pub async fn conversations(
    registry: &Registry,
    tenant: &str,
    viewer: Option<String>,
    filter_text: &str,
    page_size: u32,
    page_token: &str,
) -> Result<pb::ListConversationsResponse, Status> {
    let f = filter::conversations(tenant, filter_text)?;
    let size = size(page_size);
    let before = match position("conversations", page_token, filter_text)? {
        None => u64::MAX,
        Some(at) => at.parse::<u64>().map_err(|_| bad_token())?,
    };
    if let Some(n) = f.conversation {
        return by_id(registry, tenant, viewer, f, n, before).await;
    }

    // Open (and just ended, not yet durable) conversations, from memory first.
    let wanted = f.clone();
    let (resolved, live, live_complete) = registry
        .read(tenant, move |s| -> Result<_, Error> {
            let r = Resolved::new(s, &wanted, viewer.as_deref())?;
            let mut ids: Vec<(u64, Option<&[u8]>)> = Vec::new();
            for c in s.engine.conversations() {
                if c.id.0 < before && r.matches(c, s.customers.name(c.customer.0)) {
                    ids.push((c.id.0, None));
                }
            }
            let archiving = s.archiving.iter().filter(|(n, _)| **n < before);
            for (n, (_, body)) in archiving {
                if let Ok(a) = archive::decode(body)
                    && r.matches(&a.conversation, &a.customer)
                {
                    ids.push((*n, Some(body.as_slice())));
                }
            }
            ids.sort_unstable_by_key(|(n, _)| std::cmp::Reverse(*n));
            ids.dedup_by_key(|(n, _)| *n);
            // Only the newest `size` can be on this page.
            let complete = ids.len() <= size;
            ids.truncate(size);
            let live: Vec<(u64, pb::Conversation)> = ids
                .into_iter()
                .map(|(n, body)| {
                    let view = match body.map(archive::decode) {
                        Some(Ok(a)) => {
                            views::render(s, &a.conversation, Some(&a.extra), &a.customer)
                        }
                        _ => views::conversation(s, switchboard_core::ConversationId(n)),
                    };
                    (n, view)
                })
                .collect();
            Ok((r, live, complete))
        })
        .await??;
    let (archived, archive_low) =
        archive_matches(Arc::clone(registry.store()), tenant, &f, &resolved, before, size).await?;
    let (page, next) = merge(live, live_complete, archived, archive_low, size);
    let conversations = registry
        .read(tenant, move |s| {
            page.into_iter()
                .map(|(_, v)| {
                    v.unwrap_or_else(|a| {
                        views::render(s, &a.conversation, Some(&a.extra), &a.customer)
                    })
                })
                .collect()
        })
        .await?;
    let next_page_token = if next == 0 {
        String::new()
    } else {
        token("conversations", filter_text, &next.to_string())
    };
    Ok(pb::ListConversationsResponse { conversations, next_page_token })
}

/// The ended matches of `f` in `[low, before)` from the archive (`r`: `f` resolved), and
/// `low`: the archive's walk is complete down to it.
pub(super) async fn archive_matches(
    store: Arc<dyn switchboard_store::Store>,
    tenant: &str,
    f: &filter::Conversations,
    r: &Resolved,
    before: u64,
    size: usize,
) -> Result<(Vec<(u64, archive::Archived)>, u64), Status> {
    if r.nothing || f.state.is_some_and(|s| s != State::Ended) {
        return Ok((Vec::new(), 0));
    }
    let scan = ArchiveScan {
        customer: f.customer.clone(),
        before_conversation: before,
        opened_from_ms: f.opened.from,
        opened_before_ms: f.opened.before,
        ended_from_ms: f.ended.from,
        ended_before_ms: f.ended.before,
        window: ARCHIVE_WINDOW,
        limit: if r.checks_bodies() { ARCHIVE_WINDOW } else { size },
    };
    let (name, r) = (tenant.to_owned(), r.clone());
    tokio::task::spawn_blocking(move || -> Result<_, Error> {
        let window = store.scan_archived(&name, &scan)?;
        let mut found = Vec::new();
        for row in window.rows {
            let a = archive::decode(&row.body)?;
            if r.matches(&a.conversation, &a.customer) {
                found.push((row.conversation, a));
            }
        }
        Ok((found, window.resume_before.unwrap_or(0)))
    })
    .await
    .map_err(|e| Status::unavailable(format!("archive read interrupted: {e}")))?
    .map_err(Status::from)
}

/// A page of conversations by number: open (`Ok`, as the caller read it) or archived.
pub(super) type Page<L> = Vec<(u64, Result<L, archive::Archived>)>;

/// One page, newest first: every match in `[low, before)`, at most `size`, from the open
/// matches (`live`: the newest `size` of them, every one if `live_complete`) and the
/// archive's (complete down to `archive_low`); and where the next page starts (0: none).
pub(super) fn merge<L>(
    live: Vec<(u64, L)>,
    live_complete: bool,
    archived: Vec<(u64, archive::Archived)>,
    archive_low: u64,
    size: usize,
) -> (Page<L>, u64) {
    // Every open match in [live_low, before) is in `live`.
    let live_low = match (live_complete, live.last()) {
        (false, Some((n, _))) => *n,
        _ => 0,
    };
    let low = live_low.max(archive_low);
    let mut page: Page<L> = Vec::new();
    page.extend(live.into_iter().filter(|(n, _)| *n >= low).map(|(n, v)| (n, Ok(v))));
    for (n, a) in archived {
        if n >= low && !page.iter().any(|(m, _)| *m == n) {
            page.push((n, Err(a)));
        }
    }
    page.sort_unstable_by_key(|(n, _)| std::cmp::Reverse(*n));
    let next = if page.len() > size {
        page.truncate(size);
        page.last().map_or(0, |(n, _)| *n)
    } else {
        low
    };
    (page, next)
}

/// The `name = …` lookup: that conversation, live or archived, if it matches and is in scope.
async fn by_id(
    registry: &Registry,
    tenant: &str,
    viewer: Option<String>,
    f: filter::Conversations,
    n: u64,
    before: u64,
) -> Result<pb::ListConversationsResponse, Status> {
    let found = registry
        .with_conversation(tenant, n, move |s, c, extra, customer| -> Result<_, Error> {
            let r = Resolved::new(s, &f, viewer.as_deref())?;
            Ok(r.matches(c, customer).then(|| views::render(s, c, extra, customer)))
        })
        .await;
    let conversations = match found {
        Ok(view) => view?.into_iter().filter(|_| n < before).collect(),
        Err(status) if status.code() == tonic::Code::NotFound => Vec::new(),
        Err(status) => return Err(status),
    };
    Ok(pb::ListConversationsResponse { conversations, next_page_token: String::new() })
}

/// The open conversations of `stored` customers (by their records), as their conversation
/// actors hold them, wherever they live.
async fn open_conversations(
    mesh: &crate::actors::Mesh,
    stored: &[archive::CustomerRecord],
) -> Result<rustc_hash::FxHashMap<switchboard_core::ConversationId, Conversation>, Status> {
    let wanted: Vec<_> = stored
        .iter()
        .filter_map(|r| Some((r.customer.open?, switchboard_core::CustomerId(r.num))))
        .collect();
    let held = super::calls::held_many(mesh, &wanted).await?;
    Ok(held.into_iter().flatten().map(|h| (h.conversation.id, h.conversation)).collect())
}

/// One page of customers of `tenant` matching `filter`, within `viewer`'s scope (an agent
/// id; `None` for the whole tenant), ascending by id.
pub async fn customers(
    registry: &Registry,
    mesh: Option<&crate::actors::Mesh>,
    tenant: &str,
    viewer: Option<String>,
    filter_text: &str,
    page_size: u32,
    page_token: &str,
) -> Result<pb::ListCustomersResponse, Status> {
    let f = filter::customers(filter_text)?;
    let size = size(page_size);
    let after = position("customers", page_token, filter_text)?.unwrap_or_default();
    if !after.is_empty() {
        crate::names::check_id("page_token", &after).map_err(|_| bad_token())?;
    }

    // An exact term walks its field's index; otherwise (no term, or only a phone prefix)
    // the stored customers are read in id order, a window at a time.
    let exact = match (&f.phone, &f.email, &f.remark_name) {
        (Some(phone), _, _) if !f.phone_prefix => Some((ContactField::Phone, phone.clone())),
        (_, Some(email), _) => Some((ContactField::Email, email.clone())),
        (_, _, Some(remark)) => Some((ContactField::RemarkName, remark.clone())),
        _ => None,
    };
    let (store, name, from) = (Arc::clone(registry.store()), tenant.to_owned(), after.clone());
    let stored: Vec<CustomerRecord> = tokio::task::spawn_blocking(move || match exact {
        Some((field, value)) => store.find_customers(&name, field, &value, &from, CUSTOMER_WINDOW),
        None => store.scan_customers(&name, &from, CUSTOMER_WINDOW),
    })
    .await
    .map_err(|e| Status::unavailable(format!("store read interrupted: {e}")))?
    .map_err(Error::from)?;
    // Every stored customer up to `stored_high` was read (`None`: all of them).
    let stored_high =
        (stored.len() >= CUSTOMER_WINDOW).then(|| stored.last().map(|r| r.customer.clone()));
    let stored_high = stored_high.flatten();
    let stored: Vec<archive::CustomerRecord> =
        stored.iter().filter_map(|r| archive::decode_customer(&r.body).ok()).collect();
    // A tenant on actors: the stored customers' open conversations as their actors hold
    // them (the tenant actor's memory has none), for an agent's scope.
    let open = match (mesh, &viewer) {
        (Some(mesh), Some(_)) => Some(open_conversations(mesh, &stored).await?),
        _ => None,
    };

    let page = registry
        .read(tenant, move |s| -> Result<_, Error> {
            let viewer = limited(s, viewer.as_deref())?;
            let in_scope = |name: &str, c: Option<&switchboard_core::engine::Customer>| {
                viewer.is_none_or(|a| match &open {
                    None => crate::scope::customer(s, a, name, c).is_ok(),
                    Some(open) => {
                        crate::scope::customer_seeing(s, a, name, c, |id| open.get(&id)).is_ok()
                    }
                })
            };
            let below = |name: &str| stored_high.as_deref().is_none_or(|h| name <= h);
            let profile_matches = |p: Option<&crate::state::Profile>| match p {
                Some(p) => f.matches(p),
                None => f.is_empty(),
            };
            let mut found: Vec<(String, pb::Customer)> = Vec::new();
            // In memory: the routing record and profile are current there.
            let mut live_complete = true;
            for (name, n) in s.customers.names_after(&after) {
                if !below(name) {
                    break;
                }
                let u = switchboard_core::CustomerId(n);
                if profile_matches(s.profiles.get(&u)) && in_scope(name, s.engine.customer(u)) {
                    if found.len() == size {
                        live_complete = false;
                        break;
                    }
                    found.push((name.clone(), resources::customer(s, u)));
                }
            }
            let live_high = if live_complete { None } else { found.last().map(|(n, _)| n.clone()) };
            // Leaving memory (not yet durable) and stored: a stored record of a customer
            // back in memory is older than what memory holds.
            let evicting =
                s.evicting.iter().filter(|(id, _)| **id > after).map(|(_, (_, body))| body);
            let records = evicting.filter_map(|b| archive::decode_customer(b).ok()).chain(
                stored.into_iter().filter(|r| {
                    s.customers.get(&r.id).is_none() && !s.evicting.contains_key(&r.id)
                }),
            );
            for r in records {
                if below(&r.id)
                    && !found.iter().any(|(n, _)| *n == r.id)
                    && profile_matches(Some(&r.profile))
                    && in_scope(&r.id, Some(&r.customer))
                {
                    let view =
                        resources::customer_view(s, &r.id, Some(&r.customer), Some(&r.profile));
                    found.push((r.id.clone(), view));
                }
            }
            found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            // Everything up to `high` is considered.
            let high = match (live_high, stored_high) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(h) = &high {
                found.retain(|(n, _)| n <= h);
            }
            let next = if found.len() > size {
                found.truncate(size);
                found.last().map(|(n, _)| n.clone())
            } else {
                high
            };
            Ok((found.into_iter().map(|(_, v)| v).collect(), next))
        })
        .await??;
    let (customers, next) = page;
    let next_page_token = next.map(|at| token("customers", filter_text, &at)).unwrap_or_default();
    Ok(pb::ListCustomersResponse { customers, next_page_token })
}
