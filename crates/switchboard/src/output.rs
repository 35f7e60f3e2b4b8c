//! How `switchboard ctl` prints responses: the proto3 JSON of each message on one line (a
//! stream prints one line per message), the way `grpcurl` and `kubectl -o json` do, so the
//! output pipes into `jq`; or, with `-o table`, a table for people.

use std::io::Write;

use clap::ValueEnum;
use serde_json::Value;
use switchboard_proto::json;

/// `-o` / `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// One JSON object per line (proto3 JSON mapping, field names as in `proto/`).
    #[default]
    Json,
    /// A table: a header of field names, then one row per message.
    Table,
}

/// Longest cell of a table; longer values end in "…".
const MAX_CELL: usize = 60;

/// Prints messages in one format; a stream's table prints its header once.
#[derive(Debug)]
pub struct Printer {
    format: Format,
    /// Column widths of a stream's table, once its header is out.
    widths: Option<Vec<usize>>,
}

impl Printer {
    pub fn new(format: Format) -> Printer {
        Printer { format, widths: None }
    }

    /// A single response (`full_name` is its message type, e.g. `switchboard.v1.Tenant`).
    /// Its table leaves out the columns it has no value for.
    pub fn one(&mut self, full_name: &str, message: &impl prost::Message) -> anyhow::Result<()> {
        match self.format {
            Format::Json => line(&json::to_json(full_name, message).map_err(anyhow::Error::msg)?),
            Format::Table => {
                let (header, row) = table_row(full_name, message)?;
                let keep: Vec<bool> = row.iter().map(|c| !c.is_empty()).collect();
                let pick = |cells: Vec<String>| -> Vec<String> {
                    cells.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(c, _)| c).collect()
                };
                let (header, row) = (pick(header), pick(row));
                let widths = widths(&header, &row);
                line(&format_row(&header, &widths))?;
                line(&format_row(&row, &widths))
            }
        }
    }

    /// One message of a stream, printed (and flushed) as it arrives.
    pub fn item(&mut self, full_name: &str, message: &impl prost::Message) -> anyhow::Result<()> {
        match self.format {
            Format::Json => line(&json::to_json(full_name, message).map_err(anyhow::Error::msg)?),
            Format::Table => {
                let (header, row) = table_row(full_name, message)?;
                let widths = match &self.widths {
                    Some(w) => w.clone(),
                    None => {
                        let w = widths(&header, &row);
                        line(&format_row(&header, &w))?;
                        self.widths = Some(w.clone());
                        w
                    }
                };
                line(&format_row(&row, &widths))
            }
        }
    }

    /// A line of plain text, as JSON (`{"key":"value"}`) or a one-column table.
    pub fn text(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match self.format {
            Format::Json => line(&serde_json::json!({ key: value }).to_string()),
            Format::Table => {
                line(&key.to_uppercase())?;
                line(value)
            }
        }
    }
}

/// The header (upper-case column names) and the cells of one message.
fn table_row(
    full_name: &str,
    message: &impl prost::Message,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let columns = json::columns(full_name).map_err(anyhow::Error::msg)?;
    let value = json::to_value(full_name, message, true).map_err(anyhow::Error::msg)?;
    let mut header = Vec::new();
    let mut row = Vec::new();
    for (column, fields) in columns {
        header.push(column.to_uppercase());
        let cell = if fields.len() == 1 && fields[0] == column {
            cell(&value[&column])
        } else {
            // A oneof: the field that is set, and its value.
            fields
                .iter()
                .find_map(|f| match &value[f] {
                    Value::Null => None,
                    Value::Object(o) if o.values().all(is_default) => Some(f.clone()),
                    v => Some(format!("{f} {}", cell(v))),
                })
                .unwrap_or_default()
        };
        row.push(truncate(cell));
    }
    Ok((header, row))
}

fn is_default(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty() || s == "0",
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_default),
    }
}

/// A value as a table shows it: strings bare, defaults empty, the rest compact JSON.
fn cell(v: &Value) -> String {
    if is_default(v) {
        return String::new();
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            let set: serde_json::Map<String, Value> = o
                .iter()
                .filter(|(_, v)| !is_default(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(set).to_string()
        }
        other => other.to_string(),
    }
}

fn truncate(s: String) -> String {
    let s = s.replace(['\n', '\t'], " ");
    if s.chars().count() <= MAX_CELL {
        return s;
    }
    let mut t: String = s.chars().take(MAX_CELL - 1).collect();
    t.push('…');
    t
}

fn widths(header: &[String], row: &[String]) -> Vec<usize> {
    header.iter().zip(row).map(|(h, c)| h.chars().count().max(c.chars().count())).collect()
}

fn format_row(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            out.push_str(c);
        } else {
            out.push_str(c);
            out.push_str(&" ".repeat(w.saturating_sub(c.chars().count()) + 3));
        }
    }
    out.trim_end().to_owned()
}

/// Writes one line to stdout, flushed so watchers see each message at once.
fn line(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use switchboard_proto::v1 as pb;

    use super::*;

    #[test]
    fn table_rows_collapse_oneofs_and_leave_defaults_empty() {
        let event = pb::AgentEvent {
            cursor: 3,
            conversation: "tenants/acme/conversations/1".into(),
            event: Some(pb::agent_event::Event::Assigned(pb::agent_event::Assigned {
                via: "auto".into(),
            })),
            ..Default::default()
        };
        let (header, row) = table_row("switchboard.v1.AgentEvent", &event).unwrap();
        assert_eq!(header, ["CURSOR", "AT", "CONVERSATION", "EVENT"]);
        assert_eq!(row, ["3", "", "tenants/acme/conversations/1", r#"assigned {"via":"auto"}"#]);
        let read = pb::AgentEvent {
            event: Some(pb::agent_event::Event::ReadUnreplied(Default::default())),
            ..Default::default()
        };
        let (_, row) = table_row("switchboard.v1.AgentEvent", &read).unwrap();
        assert_eq!(row[3], "read_unreplied");
        assert_eq!(truncate("x".repeat(100)).chars().count(), MAX_CELL);
    }
}
