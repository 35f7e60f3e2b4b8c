//! What customers, agents and supervisors do in the simulation: one random operation on the
//! side it belongs to, refused or not; only what succeeds changes the side.

use switchboard_core::config::CustomerSettings;
use switchboard_core::mesh::{RouterInput, RouterOp, ToAgent};
use switchboard_core::router::{Release, StatusCause, Via};
use switchboard_core::{
    Actor, AgentId, AgentStatus, Channel, ConversationId, CustomerId, Effect, Note,
};

use super::{Done, Sim, Who, random_message, random_target};
use crate::checks;
use crate::model::AGENTS;

impl Sim {
    // ----- what customers, agents and supervisors do -------------------------------------------

    pub(super) fn operation(&mut self) -> Result<(), String> {
        let now = self.now;
        let tenant = self.tenant.clone();
        let cfg = tenant.cfg();
        let u = self.rng.index(self.sides.len());
        let open = self.sides[u].live.conversation().map(|c| c.id);
        let supervisor = Actor::Supervisor(AgentId(99));
        let draw = self.rng.below(25);
        // Which kind of operation, for the record of what succeeded.
        let kind = match draw {
            0..=5 => 0,
            6 => 1,
            7..=9 => 2,
            10 => 3,
            11 => 4,
            12..=14 => 5,
            15 => 6,
            16 | 17 => 7,
            18 | 19 => 8,
            20 => 9,
            21 => 10,
            22 => 11,
            23 => 13,
            _ => 12,
        };
        let (who, what, result): (Who, String, Outcome) = match draw {
            0..=5 => {
                self.next_conversation += 1;
                let id = ConversationId(self.next_conversation);
                let msg = random_message(&mut self.rng, CustomerId(u as u64), id);
                let r = self.sides[u].live.customer_message(cfg, now, msg);
                if let Ok(o) = &r {
                    self.sides[u].done.push(Done::Wrote(o.conversation));
                }
                (
                    Who::Side(u),
                    "customer message".into(),
                    r.map(|o| o.effects).map_err(|e| e.to_string()),
                )
            }
            6 => {
                self.next_conversation += 1;
                let channel = Channel::ALL[self.rng.index(Channel::ALL.len())];
                let id = ConversationId(self.next_conversation);
                let r = self.sides[u].live.open_service(cfg, now, channel, id);
                (
                    Who::Side(u),
                    "open service".into(),
                    r.map(|o| o.effects).map_err(|e| e.to_string()),
                )
            }
            7..=9 => match open {
                Some(c) => (
                    Who::Side(u),
                    "request human".into(),
                    err(self.sides[u].live.request_human(cfg, now, c)),
                ),
                None => return Ok(()),
            },
            10 => match open {
                Some(c) => {
                    // Ends by its agent as this side knows it, or by a supervisor.
                    let agent = self.sides[u].live.conversation().and_then(|c| c.agent);
                    let by = match agent {
                        Some(a) if self.rng.percent(60) => Actor::Agent(a),
                        _ => supervisor,
                    };
                    (Who::Side(u), "end".into(), err(self.sides[u].live.end(cfg, now, c, by)))
                }
                None => return Ok(()),
            },
            11 => match open {
                Some(c) if self.rng.percent(50) => (
                    Who::Side(u),
                    "end in batch".into(),
                    err(self.sides[u].live.end_in_batch(cfg, now, c)),
                ),
                Some(c) => (
                    Who::Side(u),
                    "channel closed".into(),
                    err(self.sides[u].live.channel_closed(cfg, now, c)),
                ),
                None => return Ok(()),
            },
            12..=14 => {
                // The desk of whoever the router says holds it writes; now and then another.
                let Some((c, holder)) = self.held(true) else { return Ok(()) };
                let from =
                    if self.rng.percent(15) { AgentId((holder.0 + 1) % AGENTS) } else { holder };
                let Some(side) = self.router.live.customer_of(c) else { return Ok(()) };
                let u = side.0 as usize;
                let r = self.sides[u].live.agent_message(
                    cfg,
                    now,
                    c,
                    from,
                    "hello from the desk",
                    None,
                );
                (Who::Side(u), "agent message".into(), err(r))
            }
            15 => match open {
                Some(c) => {
                    let on = self.rng.percent(50);
                    let r = self.sides[u].live.set_bot_hosting(cfg, c, on).map(|(_, fx)| fx);
                    (Who::Side(u), "bot hosting".into(), err(r))
                }
                None => return Ok(()),
            },
            16 | 17 => {
                let agent = AgentId(self.rng.below(AGENTS));
                // Online half the time, so that work flows.
                let status = if self.rng.percent(50) {
                    AgentStatus::Online
                } else {
                    AgentStatus::ALL[self.rng.index(5)]
                };
                let cause =
                    if self.rng.percent(30) { StatusCause::Supervisor } else { StatusCause::Agent };
                // The agent side sets it and tells the router, which decides.
                let n = self.agents[agent.0 as usize].live.set_status(status, cause);
                (
                    Who::Agent(agent.0 as usize),
                    format!("{agent} {status:?} (command {n})"),
                    Ok(vec![]),
                )
            }
            18 | 19 => {
                // An offer as the agent's desk knows it, or (a desk ahead of or behind the
                // router) as the router does.
                let a = AgentId(self.rng.below(AGENTS));
                let desk: Vec<_> =
                    self.agents[a.0 as usize].live.offered().iter().copied().collect();
                let (c, holder) = if !desk.is_empty() && self.rng.percent(70) {
                    (desk[self.rng.index(desk.len())], a)
                } else {
                    let Some(held) = self.held(false) else { return Ok(()) };
                    held
                };
                let side = &mut self.agents[holder.0 as usize].live;
                let n = if self.rng.percent(60) { side.accept(c) } else { side.decline(c) };
                (
                    Who::Agent(holder.0 as usize),
                    format!("{holder} answers the offer of {c} (command {n})"),
                    Ok(vec![]),
                )
            }
            20 => {
                let waiting = checks::waiting(self.router.live.router());
                if waiting.is_empty() {
                    return Ok(());
                }
                let c = waiting[self.rng.index(waiting.len())];
                let agent = AgentId(self.rng.below(AGENTS));
                let n = self.agents[agent.0 as usize].live.pick(c);
                (
                    Who::Agent(agent.0 as usize),
                    format!("{agent} picks {c} (command {n})"),
                    Ok(vec![]),
                )
            }
            21 => {
                let placed = checks::placed(self.router.live.router());
                if placed.is_empty() {
                    return Ok(());
                }
                let c = placed[self.rng.index(placed.len())];
                let target = random_target(&mut self.rng);
                (
                    Who::Router,
                    format!("transfer {c} to {target:?}"),
                    err(self.router_input(RouterInput::Op {
                        at: now,
                        op: RouterOp::Transfer { conversation: c, target, by: supervisor },
                    })),
                )
            }
            22 => {
                let agent = AgentId(self.rng.below(AGENTS));
                let capacity = 1 + self.rng.below(3) as u32;
                let groups = tenant.agents[&agent].groups.clone();
                let op = RouterOp::SetAgent { agent, capacity, groups };
                let r = self.router_input(RouterInput::Op { at: now, op });
                (Who::Router, format!("{agent} capacity {capacity}"), err(r))
            }
            23 => {
                // An administrator changes the customer's dedicated agent (PutCustomer).
                let dedicated = (!self.rng.percent(30)).then(|| AgentId(self.rng.below(AGENTS)));
                let side = &mut self.sides[u].live;
                let settings = CustomerSettings {
                    dedicated_agent: dedicated,
                    ..side.customer().settings.clone()
                };
                let r = side.put_customer(cfg, settings).map(|()| Vec::new());
                (Who::Side(u), format!("dedicated agent {dedicated:?}"), err(r))
            }
            _ => {
                let u = self.rng.index(self.sides.len());
                let Some(c) = self.sides[u].live.conversation().map(|c| c.id) else {
                    return Ok(());
                };
                let agent = AgentId(self.rng.below(AGENTS));
                if self.rng.percent(30) {
                    // A supervisor's whisper to whoever holds it (a note its side writes on the desk too).
                    let r = self.sides[u].live.whisper(cfg, c, AgentId(99), "try the refund");
                    (Who::Side(u), "whisper".into(), err(r))
                } else {
                    (
                        Who::Side(u),
                        "mark read".into(),
                        err(self.sides[u].live.mark_read(cfg, now, c, agent)),
                    )
                }
            }
        };
        // Refusals are expected (random operations are often invalid) and change nothing.
        match result {
            Ok(fx) => {
                // Agent commands count once the router decided them (`agent_kinds`).
                if !matches!(who, Who::Agent(_)) {
                    self.stats.kinds |= 1 << kind;
                }
                self.note(format!("{who:?} {what}: ok"));
                match who {
                    Who::Router => self.router.did(fx),
                    Who::Side(u) => {
                        self.sides[u].did(fx);
                        self.sides[u].live.take_ended();
                    }
                    Who::Agent(a) => self.agents[a].did(fx),
                }
            }
            Err(e) => self.note(format!("{who:?} {what}: refused ({e})")),
        }
        if self.rng.percent(50) {
            let who = self.random_node();
            self.commit(who)?;
        }
        Ok(())
    }

    /// A random offered (`assigned` false) or assigned conversation, with its holder, as the
    /// router knows it.
    fn held(&mut self, assigned: bool) -> Option<(ConversationId, AgentId)> {
        let list = checks::held(self.router.live.router(), assigned);
        (!list.is_empty()).then(|| list[self.rng.index(list.len())])
    }
}

/// What one operation returned: its effects, or why it was refused.
type Outcome = Result<Vec<Effect>, String>;

fn err(r: switchboard_core::Result<Vec<Effect>>) -> Outcome {
    r.map_err(|e| e.to_string())
}

/// The kinds of agent command (bits 7, 8 and 9 of [`Sim::operation`]'s kinds) the router
/// carried out, read from its messages to the agent sides: a status an agent or supervisor
/// set, an offer accepted or declined, a pick.
pub fn agent_kinds<'a>(messages: impl Iterator<Item = &'a ToAgent>) -> u32 {
    let mut kinds = 0;
    for m in messages {
        let ToAgent::Decided { notes } = m else { continue };
        for n in notes {
            kinds |= match n {
                Note::StatusChanged {
                    cause: StatusCause::Agent | StatusCause::Supervisor, ..
                } => 1 << 7,
                Note::Assigned { via: Via::Accepted, .. }
                | Note::Released { reason: Release::Declined, .. } => 1 << 8,
                Note::Assigned { via: Via::Picked, .. } => 1 << 9,
                _ => 0,
            };
        }
    }
    kinds
}
