//! The gRPC API's own checks (issue 13): `buf lint` with the repository's `buf.yaml`
//! (STANDARD minus the rules it justifies), and `buf breaking` against the newest release
//! tag (`v*`), so the v1 API only grows from a release on. buf comes from `scripts/setup`
//! (npm @bufbuild/buf, in target/tools/bin); a missing buf fails with the command to run.
//!
//! Two breaking checks: the public API (`switchboard.v1`) source-compatibly (buf's FILE
//! rules, as `buf.yaml` says), and the node's internal messages — the durable log's records
//! among them — wire-compatibly, since a log written by the last release must still replay.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn buf() -> Command {
    let path = root().join("target/tools/bin/buf");
    assert!(path.exists(), "{} is missing: run scripts/setup", path.display());
    let mut c = Command::new(path);
    c.current_dir(root());
    c
}

fn git(args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(root()).output().expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

fn passed(what: &str, out: Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// buf's git input for the newest release tag: the repository's git directory (a worktree's
/// `.git` is a file, so ask git where the objects are) and the tag.
fn last_release() -> String {
    let tag = git(&["tag", "--list", "v*", "--sort=-v:refname"]);
    let tag = tag.lines().next().unwrap_or_else(|| {
        panic!("no release tag v* in this clone: fetch tags (git fetch --tags) and run again")
    });
    let dir = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]);
    format!("{dir}#tag={tag}")
}

#[test]
fn buf_lint_passes() {
    passed("buf lint", buf().arg("lint").output().expect("run buf lint"));
}

#[test]
fn the_public_api_has_no_breaking_change_since_the_last_release() {
    let against = last_release();
    passed(
        &format!("buf breaking --against {against}"),
        buf().args(["breaking", "--against", &against]).output().expect("run buf breaking"),
    );
}

#[test]
fn internal_messages_stay_wire_compatible_with_the_last_release() {
    let against = last_release();
    let config = r#"{"version":"v2","modules":[{"path":"proto"}],"breaking":{"use":["WIRE"]}}"#;
    let out = buf()
        .args(["breaking", "--against", &against, "--config", config])
        .args(["--against-config", config, "--path", "proto/switchboard/internal"])
        .output()
        .expect("run buf breaking");
    passed(&format!("buf breaking (WIRE, internal) --against {against}"), out);
}
