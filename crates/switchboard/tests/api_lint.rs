//! The gRPC API's own checks (issue 13): `buf lint` with the repository's `buf.yaml`
//! (STANDARD minus the rules it justifies), and `buf breaking` against the newest release
//! (tag `v*`, whose image is committed in `proto/releases/`), so the v1 API only grows from a
//! release on. buf comes from `scripts/setup`
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

/// The newest release's image, `proto/releases/v*.binpb` (built at release time with
/// `buf build .git#tag=vX.Y.Z --exclude-source-info -o proto/releases/vX.Y.Z.binpb`), so the
/// check needs no git history: a shallow clone has no tags.
fn release_image() -> (String, PathBuf) {
    let dir = root().join("proto/releases");
    let mut images: Vec<(Vec<u64>, String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let path = e.ok()?.path();
            let tag = path.file_name()?.to_str()?.strip_suffix(".binpb")?.to_owned();
            let version: Option<Vec<u64>> =
                tag.strip_prefix('v')?.split('.').map(|p| p.parse().ok()).collect();
            Some((version?, tag, path))
        })
        .collect();
    images.sort();
    let (_, tag, path) = images.pop().expect("no release image in proto/releases");
    (tag, path)
}

/// What `buf breaking` compares against: the newest release. Where the clone has the release
/// tags, the newest tag must be the newest image's (a release commits its image).
fn last_release() -> String {
    let (image_tag, image) = release_image();
    let tags = git(&["tag", "--list", "v*", "--sort=-v:refname"]);
    if let Some(tag) = tags.lines().next() {
        assert_eq!(
            tag, image_tag,
            "release {tag} has no image: buf build .git#tag={tag} --exclude-source-info -o proto/releases/{tag}.binpb"
        );
    }
    image.display().to_string()
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
        .output()
        .expect("run buf breaking");
    // WIRE over the whole module: the public API already passes the stricter FILE rules, and
    // buf's --path cannot select the same files in a source tree and in an image.
    passed(&format!("buf breaking (WIRE) --against {against}"), out);
}
