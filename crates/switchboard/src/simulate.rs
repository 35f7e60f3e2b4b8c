//! `switchboard ctl simulate`: what-if on a tenant's live configuration. Reads the tenant, its
//! groups (with their routing policies) and its agents (groups, capacity, status) over the
//! public API, converts them to core settings with the node's own conversions, and runs
//! `switchboard_sim::whatif` in virtual time under the load the flags describe. Nothing is
//! written to the node.
//!
//! The API has no shifts: agents online or busy when the command runs are on shift for the
//! whole run; offline, away and invisible agents are not. The output says so.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use serde::Serialize;
use switchboard_core::config::{AgentSettings, GroupSettings, TenantSettings};
use switchboard_node::convert::settings::routing_policy;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::admin_service_client::AdminServiceClient;
use switchboard_sim::whatif::{self, Forecast, GroupForecast, Load, Plan};
use switchboard_sim::{Est, driver};

use crate::output::Format;

const HOUR_MS: f64 = 3_600_000.0;
/// Batches of the measured window for the standard errors.
const BATCHES: u32 = 20;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The tenant whose configuration to simulate
    pub tenant: String,
    /// Contacts per hour to each group: GROUP=RATE/h,… (e.g. sales=120/h,support=40/h); groups
    /// left out get none
    #[arg(long)]
    pub arrivals: String,
    /// Mean handle time of each loaded group, seconds: GROUP=SECONDS,… (e.g. sales=300,support=600)
    #[arg(long)]
    pub handle: String,
    /// Agents to add on shift for the run, each in one group: GROUP=COUNTxCAPACITY,… (e.g.
    /// sales=2x3 adds two agents of capacity 3 to sales)
    #[arg(long, value_name = "GROUP=COUNTxCAPACITY,…")]
    pub add_agents: Option<String>,
    /// Mean patience in the queue, seconds (exponential); unset: nobody abandons
    #[arg(long, value_name = "SECONDS")]
    pub patience: Option<f64>,
    /// Simulated hours to measure (after the warm-up)
    #[arg(long)]
    pub hours: f64,
    /// Simulated minutes before measuring, so the figures do not start from an empty center
    #[arg(long, default_value_t = 60.0, value_name = "MINUTES")]
    pub warmup: f64,
    /// Service-level threshold: a contact counts if an agent has it within this many seconds
    #[arg(long, default_value_t = 20.0, value_name = "SECONDS")]
    pub sl_target: f64,
    /// Seed of the random arrivals, handle times and patience
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs the what-if against the node behind `admin`.
pub async fn run<S>(
    args: SimulateArgs,
    format: Format,
    admin: &mut AdminServiceClient<S>,
) -> anyhow::Result<()>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::Error: Into<tonic::codegen::StdError>,
    S::ResponseBody: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let flags = Flags::parse(&args)?;
    let live = read(admin, &args.tenant).await?;
    let plan = plan(&flags, &live, args.seed)?;
    let on_shift = plan.agents.len();
    let total = plan.length_ms();
    let bar = std::io::stderr().is_terminal();
    let forecast = tokio::task::spawn_blocking(move || {
        let mut shown = None;
        let result = whatif::run(&plan, |now| {
            if bar {
                progress(now, total, &mut shown);
            }
        });
        if bar {
            eprint!("\r{:60}\r", "");
        }
        result
    })
    .await
    .context("the simulation thread failed")??;
    let report = Report::new(&args, &flags, &live, on_shift, &forecast);
    let mut out = std::io::stdout().lock();
    match format {
        // One object on one line, like every other ctl answer.
        Format::Json => writeln!(out, "{}", serde_json::to_string(&report)?)?,
        Format::Table => report.table(&mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// Draws `simulating: 42% (25.2 of 61.0 h)` on one terminal line, redrawn per percent.
fn progress(now: u64, total: u64, shown: &mut Option<u64>) {
    let pct = (now.min(total) * 100).checked_div(total).unwrap_or(100);
    if *shown == Some(pct) {
        return;
    }
    *shown = Some(pct);
    let filled = (pct / 5) as usize;
    eprint!(
        "\rsimulating [{}{}] {pct:>3}% ({:.1} of {:.1} h)",
        "#".repeat(filled),
        " ".repeat(20 - filled),
        now.min(total) as f64 / HOUR_MS,
        total as f64 / HOUR_MS,
    );
    let _ = std::io::stderr().flush();
}

/// The flags, checked: per-group loads by group id.
#[derive(Debug, Clone, PartialEq)]
struct Flags {
    loads: BTreeMap<String, Load>,
    /// `--add-agents`: group, count, capacity.
    extra: Vec<(String, u32, u32)>,
    measured_ms: u64,
    warmup_ms: u64,
    target_ms: u64,
}

impl Flags {
    fn parse(a: &SimulateArgs) -> anyhow::Result<Flags> {
        let arrivals = per_group("--arrivals", &a.arrivals, "RATE/h", "sales=120/h", |v| {
            v.strip_suffix("/h").unwrap_or(v)
        })?;
        let handle = per_group("--handle", &a.handle, "SECONDS", "sales=300", |v| {
            v.strip_suffix('s').unwrap_or(v)
        })?;
        if let Some(p) = a.patience
            && !(p.is_finite() && p > 0.0)
        {
            bail!("--patience: must be a positive number of seconds, got {p}");
        }
        let mut loads = BTreeMap::new();
        for (group, per_hour) in arrivals {
            let Some(&handle_s) = handle.get(&group) else {
                bail!("--handle: no handle time for group {group}, which --arrivals loads");
            };
            loads.insert(group, Load { per_hour, handle_s, patience_s: a.patience });
        }
        if let Some(g) = handle.keys().find(|g| !loads.contains_key(*g)) {
            bail!("--handle: group {g} has no --arrivals; give it a rate or leave it out");
        }
        let millis = |flag: &str, x: f64, unit: f64, zero_ok: bool| {
            let ok = x.is_finite() && (x > 0.0 || (zero_ok && x == 0.0)) && x * unit < 1e13;
            if !ok {
                bail!("--{flag}: must be a positive number below a few centuries, got {x}");
            }
            Ok((x * unit).round() as u64)
        };
        Ok(Flags {
            loads,
            extra: a.add_agents.as_deref().map(extra_agents).transpose()?.unwrap_or_default(),
            measured_ms: millis("hours", a.hours, HOUR_MS, false)?,
            warmup_ms: millis("warmup", a.warmup, 60_000.0, true)?,
            target_ms: millis("sl-target", a.sl_target, 1000.0, true)?,
        })
    }
}

/// Most agents `--add-agents` adds to one group, and the API's largest capacity.
const MAX_ADDED: u32 = 10_000;
const MAX_CAPACITY: u32 = 1000;

/// `--add-agents GROUP=COUNTxCAPACITY,…`.
fn extra_agents(text: &str) -> anyhow::Result<Vec<(String, u32, u32)>> {
    let mut out: Vec<(String, u32, u32)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || anyhow!("--add-agents: {item:?} is not GROUP=COUNTxCAPACITY (e.g. sales=2x3)");
        let (group, value) = item.split_once('=').ok_or_else(bad)?;
        let (count, capacity) = value.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let (count, capacity): (u32, u32) =
            (count.trim().parse().map_err(|_| bad())?, capacity.trim().parse().map_err(|_| bad())?);
        let group = group.trim();
        if group.is_empty() {
            return Err(bad());
        }
        if !(1..=MAX_ADDED).contains(&count) || !(1..=MAX_CAPACITY).contains(&capacity) {
            bail!(
                "--add-agents: {group} needs 1 to {MAX_ADDED} agents of capacity 1 to {MAX_CAPACITY}, got {count}x{capacity}"
            );
        }
        if out.iter().any(|(g, ..)| g == group) {
            bail!("--add-agents: group {group} is given twice");
        }
        out.push((group.to_owned(), count, capacity));
    }
    Ok(out)
}

/// `GROUP=VALUE,…` with positive values; `strip` takes the unit off a value.
fn per_group(
    flag: &str,
    text: &str,
    shape: &str,
    example: &str,
    strip: impl Fn(&str) -> &str,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || anyhow!("{flag}: {item:?} is not GROUP={shape} (e.g. {example})");
        let (group, value) = item.split_once('=').ok_or_else(bad)?;
        let (group, value) = (group.trim(), strip(value.trim()).trim());
        if group.is_empty() {
            return Err(bad());
        }
        let value: f64 = value.parse().map_err(|_| bad())?;
        if !(value.is_finite() && value > 0.0) {
            bail!("{flag}: {group} must be greater than zero, got {value}");
        }
        if out.insert(group.to_owned(), value).is_some() {
            bail!("{flag}: group {group} is given twice");
        }
    }
    if out.is_empty() {
        bail!("{flag}: give at least one GROUP={shape} (e.g. {example})");
    }
    Ok(out)
}

/// What the node said about the tenant.
#[derive(Debug)]
struct Live {
    /// Group ids in the API's order, with their converted settings.
    groups: Vec<(String, GroupSettings)>,
    agents: Vec<pb::Agent>,
}

async fn read<S>(admin: &mut AdminServiceClient<S>, tenant: &str) -> anyhow::Result<Live>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::Error: Into<tonic::codegen::StdError>,
    S::ResponseBody: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let name = format!("tenants/{tenant}");
    // Fails with NOT_FOUND (or PERMISSION_DENIED) before any listing.
    crate::ctl::call(admin.get_tenant(pb::GetTenantRequest { name: name.clone() }).await)?;
    let page = |token: String| Some(pb::PageRequest { page_size: 1000, page_token: token });
    let mut groups = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListGroupsRequest { tenant: name.clone(), page: page(token) };
        let resp = crate::ctl::call(admin.list_groups(req).await)?;
        for g in resp.groups {
            let id = g.name.rsplit('/').next().unwrap_or_default().to_owned();
            let policy = routing_policy("policy", g.policy.as_ref())
                .map_err(|e| anyhow!("group {id}: the node's policy does not convert: {e}"))?;
            groups.push((id.clone(), GroupSettings { name: id, policy, ..Default::default() }));
        }
        token = resp.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let mut agents = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListAgentsRequest { tenant: name.clone(), page: page(token) };
        let resp = crate::ctl::call(admin.list_agents(req).await)?;
        agents.extend(resp.agents);
        token = resp.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    Ok(Live { groups, agents })
}

/// Agents on shift: online or busy now.
fn on_shift(a: &pb::Agent) -> bool {
    matches!(
        pb::AgentStatus::try_from(a.status),
        Ok(pb::AgentStatus::Online | pb::AgentStatus::Busy)
    )
}

fn plan(flags: &Flags, live: &Live, seed: u64) -> anyhow::Result<Plan> {
    let index: BTreeMap<&str, u32> =
        live.groups.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i as u32)).collect();
    if let Some(g) = flags.loads.keys().find(|g| !index.contains_key(g.as_str())) {
        let known: Vec<&str> = index.keys().copied().collect();
        bail!("--arrivals: the tenant has no group {g} (its groups: {})", known.join(", "));
    }
    let mut agents: Vec<AgentSettings> = live
        .agents
        .iter()
        .filter(|a| on_shift(a))
        .map(|a| AgentSettings {
            nickname: a.nickname.clone(),
            capacity: a.capacity,
            groups: a
                .groups
                .iter()
                // Resource names, tenants/{t}/groups/{g}: the index is by group id.
                .filter_map(|g| g.rsplit('/').next().and_then(|id| index.get(id)))
                .map(|i| driver::group_id(*i))
                .collect(),
            ..Default::default()
        })
        .collect();
    for (group, count, capacity) in &flags.extra {
        let Some(&g) = index.get(group.as_str()) else {
            let known: Vec<&str> = index.keys().copied().collect();
            bail!(
                "--add-agents: the tenant has no group {group} (its groups: {})",
                known.join(", ")
            );
        };
        agents.extend((0..*count).map(|_| AgentSettings {
            capacity: *capacity,
            groups: vec![driver::group_id(g)],
            ..Default::default()
        }));
    }
    Ok(Plan {
        // Tenant-level settings (replies, windows, budgets, time zone) do not route: the
        // core's defaults stand in for them.
        tenant: TenantSettings::default(),
        groups: live.groups.iter().map(|(_, g)| g.clone()).collect(),
        agents,
        loads: live.groups.iter().map(|(id, _)| flags.loads.get(id).copied()).collect(),
        warmup_ms: flags.warmup_ms,
        measured_ms: flags.measured_ms,
        target_ms: flags.target_ms,
        batches: BATCHES,
        seed,
    })
}

/// An estimate and its standard error, for the JSON output.
#[derive(Debug, Serialize)]
struct Figure {
    value: f64,
    se: Option<f64>,
}

impl From<Est> for Figure {
    fn from(e: Est) -> Self {
        Figure { value: e.value, se: e.se }
    }
}

#[derive(Debug, Serialize)]
struct Row {
    /// The group's id, or `all`.
    group: String,
    agents: usize,
    slots: u64,
    /// Contacts per hour given, and mean handle time.
    per_hour: Option<f64>,
    handle_s: Option<f64>,
    offered: u64,
    served: u64,
    abandoned: u64,
    unserved: u64,
    service_level: Figure,
    asa_s: Figure,
    abandonment: Figure,
    occupancy: Figure,
}

impl Row {
    fn new(group: &str, load: Option<&Load>, f: &GroupForecast) -> Row {
        Row {
            group: group.to_owned(),
            agents: f.agents,
            slots: f.slots,
            per_hour: load.map(|l| l.per_hour),
            handle_s: load.map(|l| l.handle_s),
            offered: f.figures.offered,
            served: f.figures.served,
            abandoned: f.figures.abandoned,
            unserved: f.figures.unserved,
            service_level: f.figures.service_level.into(),
            asa_s: f.figures.mean_wait.into(),
            abandonment: f.figures.abandonment.into(),
            occupancy: f.occupancy.into(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    tenant: String,
    hours: f64,
    warmup_minutes: f64,
    sl_target_s: f64,
    patience_s: Option<f64>,
    seed: u64,
    batches: u32,
    /// Agents of the tenant, and those on shift (online or busy when read).
    agents: usize,
    agents_on_shift: usize,
    /// Of those on shift, added by `--add-agents`.
    agents_added: u64,
    contacts_simulated: u64,
    groups: Vec<Row>,
    all: Row,
    /// What the figures assume.
    assumptions: Vec<String>,
}

impl Report {
    fn new(a: &SimulateArgs, flags: &Flags, live: &Live, on_shift: usize, f: &Forecast) -> Report {
        let mut assumptions = vec![
            "the API has no shifts: agents online or busy when read are on shift for the whole run, the others are not".to_owned(),
            "SL: share of contacts offered (entered the queue in the measured window) that an agent had within the threshold; ASA: mean wait of served contacts; abandonment: share of offered that left the queue; occupancy: conversations over capacity of the group's agents on shift; ±: standard error over batches".to_owned(),
        ];
        assumptions.extend(f.assumptions.iter().cloned());
        let unstaffed: Vec<&str> = live
            .groups
            .iter()
            .zip(&f.groups)
            .filter(|((id, _), g)| g.agents == 0 && flags.loads.contains_key(id))
            .map(|((id, _), _)| id.as_str())
            .collect();
        if !unstaffed.is_empty() {
            assumptions.push(format!(
                "no agent is on shift in {}: its contacts wait unserved (counted as offered, not answered)",
                unstaffed.join(", ")
            ));
        }
        let batch_minutes = a.hours * 60.0 / f64::from(BATCHES);
        if batch_minutes < 60.0 {
            assumptions.push(format!(
                "batches are {batch_minutes:.0} min long: at high occupancy a queue outlasts them and ± understates the spread; a longer --hours costs seconds and tightens it"
            ));
        }
        Report {
            tenant: a.tenant.clone(),
            hours: a.hours,
            warmup_minutes: a.warmup,
            sl_target_s: a.sl_target,
            patience_s: a.patience,
            seed: a.seed,
            batches: BATCHES,
            agents: live.agents.len(),
            agents_on_shift: on_shift,
            agents_added: flags.extra.iter().map(|(_, n, _)| u64::from(*n)).sum(),
            contacts_simulated: f.arrived,
            groups: live
                .groups
                .iter()
                .zip(&f.groups)
                .map(|((id, _), g)| Row::new(id, flags.loads.get(id), g))
                .collect(),
            all: Row::new("all", None, &f.all),
            assumptions,
        }
    }

    fn table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "what-if for tenant {}: {} h measured after {} min warm-up, seed {}; {} of {} agents on shift (online or busy now){}; {} contacts simulated",
            self.tenant,
            self.hours,
            self.warmup_minutes,
            self.seed,
            self.agents_on_shift - self.agents_added as usize,
            self.agents,
            match self.agents_added {
                0 => String::new(),
                n => format!(" and {n} added"),
            },
            self.contacts_simulated
        )?;
        let patience =
            self.patience_s.map_or("nobody abandons".to_owned(), |p| format!("patience {p} s"));
        writeln!(
            out,
            "SL = answered within {} s; {patience}; ± standard error over {} batches\n",
            self.sl_target_s, self.batches
        )?;
        writeln!(
            out,
            "{:<16} {:>6} {:>5} {:>8} {:>6} {:>8} {:>8} {:>15} {:>15} {:>15} {:>15}",
            "group",
            "agents",
            "slots",
            "per hour",
            "AHT s",
            "offered",
            "unserved",
            "SL",
            "ASA s",
            "abandoned",
            "occupancy"
        )?;
        for r in self.groups.iter().chain([&self.all]) {
            let opt = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x}"));
            writeln!(
                out,
                "{:<16} {:>6} {:>5} {:>8} {:>6} {:>8} {:>8} {:>15} {:>15} {:>15} {:>15}",
                r.group,
                r.agents,
                r.slots,
                opt(r.per_hour),
                opt(r.handle_s),
                r.offered,
                r.unserved,
                fmt(&r.service_level, 3),
                fmt(&r.asa_s, 1),
                fmt(&r.abandonment, 3),
                fmt(&r.occupancy, 3),
            )?;
        }
        writeln!(out, "\nassumptions:")?;
        for a in &self.assumptions {
            writeln!(out, "  - {a}")?;
        }
        Ok(())
    }
}

fn fmt(f: &Figure, p: usize) -> String {
    match f.se {
        Some(se) => format!("{:.p$} ±{:.p$}", f.value, se),
        None => format!("{:.p$}", f.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(arrivals: &str, handle: &str) -> SimulateArgs {
        SimulateArgs {
            tenant: "acme".into(),
            arrivals: arrivals.into(),
            handle: handle.into(),
            add_agents: None,
            patience: None,
            hours: 1.0,
            warmup: 60.0,
            sl_target: 20.0,
            seed: 1,
        }
    }

    fn error(a: SimulateArgs) -> String {
        Flags::parse(&a).unwrap_err().to_string()
    }

    #[test]
    fn loads_parse_with_or_without_units() {
        let f = Flags::parse(&args("sales=120/h, support=40", "sales=300s,support=600")).unwrap();
        let l = |per_hour, handle_s| Load { per_hour, handle_s, patience_s: None };
        assert_eq!(f.loads["sales"], l(120.0, 300.0));
        assert_eq!(f.loads["support"], l(40.0, 600.0));
        assert_eq!((f.measured_ms, f.warmup_ms, f.target_ms), (3_600_000, 3_600_000, 20_000));
    }

    #[test]
    fn bad_loads_name_the_flag() {
        for (a, h, flag, what) in [
            ("sales", "sales=300", "--arrivals", "not GROUP=RATE/h"),
            ("sales=fast", "sales=300", "--arrivals", "not GROUP=RATE/h"),
            ("=5/h", "sales=300", "--arrivals", "not GROUP=RATE/h"),
            ("sales=0/h", "sales=300", "--arrivals", "greater than zero"),
            ("sales=1/h,sales=2/h", "sales=300", "--arrivals", "twice"),
            ("", "sales=300", "--arrivals", "at least one"),
            ("sales=5/h", "sales=-1", "--handle", "greater than zero"),
            ("sales=5/h", "sales=300/h", "--handle", "not GROUP=SECONDS"),
            ("sales=5/h", "support=300", "--handle", "no handle time for group sales"),
            ("sales=5/h", "sales=300,support=9", "--handle", "support has no --arrivals"),
        ] {
            let e = error(args(a, h));
            assert!(e.starts_with(flag) && e.contains(what), "{a:?} {h:?}: {e}");
        }
        for (added, what) in [
            ("sales=2", "not GROUP=COUNTxCAPACITY"),
            ("sales=2x", "not GROUP=COUNTxCAPACITY"),
            ("sales=0x3", "1 to 10000 agents"),
            ("sales=1x1001", "capacity 1 to 1000"),
            ("sales=1x1,sales=2x2", "twice"),
        ] {
            let mut a = args("sales=5/h", "sales=300");
            a.add_agents = Some(added.into());
            let e = error(a);
            assert!(e.starts_with("--add-agents") && e.contains(what), "{added}: {e}");
        }
        let mut a = args("sales=5/h", "sales=300");
        a.hours = 0.0;
        assert!(error(a).starts_with("--hours"));
        let mut a = args("sales=5/h", "sales=300");
        a.patience = Some(f64::NAN);
        assert!(error(a).starts_with("--patience"));
    }

    #[test]
    fn unknown_groups_and_shifts_follow_the_api() {
        let agent = |name: &str, status: pb::AgentStatus, groups: &[&str]| pb::Agent {
            name: name.into(),
            capacity: 3,
            groups: groups.iter().map(|g| format!("tenants/acme/groups/{g}")).collect(),
            status: status as i32,
            ..Default::default()
        };
        let live = Live {
            groups: vec![
                ("sales".into(), GroupSettings::default()),
                ("support".into(), GroupSettings::default()),
            ],
            agents: vec![
                agent("a", pb::AgentStatus::Online, &["sales"]),
                agent("b", pb::AgentStatus::Busy, &["sales", "support"]),
                agent("c", pb::AgentStatus::Offline, &["support"]),
                agent("d", pb::AgentStatus::Away, &["support"]),
            ],
        };
        let flags = Flags::parse(&args("support=10/h", "support=60")).unwrap();
        let p = plan(&flags, &live, 1).unwrap();
        assert_eq!(p.agents.len(), 2, "online and busy agents are on shift");
        assert_eq!(p.agents[1].groups, vec![driver::group_id(0), driver::group_id(1)]);
        assert_eq!(p.loads[0], None);
        assert!(p.loads[1].is_some());
        let mut a = args("support=10/h", "support=60");
        a.add_agents = Some("support=3x2, sales=1x1".into());
        let p = plan(&Flags::parse(&a).unwrap(), &live, 1).unwrap();
        assert_eq!(p.agents.len(), 6, "2 on shift and 4 added");
        let added = &p.agents[2];
        assert_eq!((added.capacity, added.groups.clone()), (2, vec![driver::group_id(1)]));
        a.add_agents = Some("billing=1x1".into());
        let e = plan(&Flags::parse(&a).unwrap(), &live, 1).unwrap_err().to_string();
        assert!(e.starts_with("--add-agents") && e.contains("billing"), "{e}");
        let flags = Flags::parse(&args("billing=10/h", "billing=60")).unwrap();
        let e = plan(&flags, &live, 1).unwrap_err().to_string();
        assert!(e.contains("--arrivals") && e.contains("billing") && e.contains("sales, support"));
    }
}
