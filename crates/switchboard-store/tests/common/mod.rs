//! Builders shared by the integration tests.

#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;

use switchboard_store::{Batch, LogRecord, Message, SqliteOptions, SqliteStore, StreamEntry};

pub fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, SqliteOptions::default()).expect("open store")
}

pub fn record(seq: u64) -> LogRecord {
    LogRecord {
        seq,
        at_ms: 1_000 + seq,
        request_id: Some(format!("req-{seq}")),
        command: format!("command {seq}").into_bytes(),
        response: format!("response {seq}").into_bytes(),
    }
}

pub fn entry(stream: &str, seq: u64) -> StreamEntry {
    StreamEntry {
        stream: stream.into(),
        seq,
        at_ms: 1_000 + seq,
        payload: format!("{stream} {seq}").into_bytes(),
    }
}

pub fn message(conversation: u64, seq: u64) -> Message {
    Message {
        conversation,
        seq,
        at_ms: 1_000 + seq,
        sender: "agent/alice".into(),
        text: format!("hello {seq}"),
        kind: "text".into(),
    }
}

/// What one accepted command typically writes: its log record, an event, a transcript row.
pub fn command(tenant: &str, seq: u64) -> Batch {
    Batch {
        tenant: tenant.into(),
        log: vec![record(seq)],
        streams: vec![entry("events", seq)],
        messages: vec![message(1, seq)],
        ..Batch::default()
    }
}
