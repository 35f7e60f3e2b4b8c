//! Metric names of the node (labels bounded: tenant, command kind, reason, reply kind).

use std::time::Duration;

use metrics::{counter, describe_counter, describe_histogram, histogram};

use crate::apply::Output;

pub const COMMANDS: &str = "switchboard_commands_total";
pub const COMMANDS_REFUSED: &str = "switchboard_commands_refused_total";
pub const APPLY_SECONDS: &str = "switchboard_command_apply_seconds";
pub const AUTOMATIC_REPLIES_SUPPRESSED: &str = "switchboard_automatic_replies_suppressed_total";
pub const EVENTS: &str = "switchboard_events_total";
pub const SNAPSHOT_BYTES: &str = "switchboard_snapshot_bytes";

pub fn describe() {
    describe_counter!(COMMANDS, "Commands applied and logged, by tenant and kind.");
    describe_counter!(COMMANDS_REFUSED, "Commands refused, by tenant, kind and reason.");
    describe_histogram!(
        APPLY_SECONDS,
        metrics::Unit::Seconds,
        "Time to apply one command to a tenant's state."
    );
    describe_counter!(
        AUTOMATIC_REPLIES_SUPPRESSED,
        "Automatic replies withheld to keep the channel budget's reserve for humans."
    );
    describe_counter!(EVENTS, "Integrator events emitted, by tenant and type.");
    describe_histogram!(SNAPSHOT_BYTES, metrics::Unit::Bytes, "Size of tenant snapshots.");
}

pub fn applied(tenant: &str, kind: &'static str, took: Duration, out: &Output) {
    counter!(COMMANDS, "tenant" => tenant.to_owned(), "kind" => kind).increment(1);
    histogram!(APPLY_SECONDS, "kind" => kind).record(took.as_secs_f64());
    for k in &out.suppressed {
        counter!(AUTOMATIC_REPLIES_SUPPRESSED, "tenant" => tenant.to_owned(), "kind" => k.as_str())
            .increment(1);
    }
    for e in &out.events {
        let kind = crate::convert::snake_tag(e);
        counter!(EVENTS, "tenant" => tenant.to_owned(), "type" => kind).increment(1);
    }
}

pub fn refused(tenant: &str, kind: &'static str, reason: &'static str) {
    counter!(COMMANDS_REFUSED, "tenant" => tenant.to_owned(), "kind" => kind, "reason" => reason)
        .increment(1);
}

pub fn snapshot(_tenant: &str, bytes: usize) {
    histogram!(SNAPSHOT_BYTES).record(bytes as f64);
}
