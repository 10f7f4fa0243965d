//! Unit tests: reading and decoding here, the rules in `rules` (top level, process, mounts,
//! hooks) and `linux`. Every rule has a passing and a failing case; configs start from the one
//! `runc spec` writes (testdata/runc-spec.json, runc 1.1.5) and change one field.

mod linux;
mod rules;

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use super::*;

pub(super) const FILE: &str = "/bundle/config.json";
pub(super) const RUNC_SPEC: &str = include_str!("../testdata/runc-spec.json");
const RUNC_SPEC_ROOTLESS: &str = include_str!("../testdata/runc-spec-rootless.json");

pub(super) fn base() -> Value {
    serde_json::from_str(RUNC_SPEC).expect("fixture is JSON")
}

/// Parses the runc default config after `edit`.
pub(super) fn parse_with(edit: impl FnOnce(&mut Value)) -> Result<Spec, SpecError> {
    let mut v = base();
    edit(&mut v);
    parse_config(&serde_json::to_vec(&v).expect("serializes"), Path::new(FILE))
}

pub(super) fn accepts(edit: impl FnOnce(&mut Value)) {
    if let Err(e) = parse_with(edit) {
        panic!("expected the config to be accepted, got: {e}");
    }
}

/// Expects a rule error; returns its field and violation.
pub(super) fn refuses(edit: impl FnOnce(&mut Value)) -> (String, Violation) {
    match parse_with(edit) {
        Err(SpecError::Invalid { field, violation, .. }) => (field, violation),
        other => panic!("expected a rule error, got {other:?}"),
    }
}

/// Expects a decode error; returns its field and message.
pub(super) fn decode_error(edit: impl FnOnce(&mut Value)) -> (String, String) {
    match parse_with(edit) {
        Err(SpecError::Decode { field, reason, .. }) => (field, reason),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

// ---- fixtures -------------------------------------------------------------------------------

#[test]
fn runc_default_spec_validates() {
    let spec = parse_config(RUNC_SPEC.as_bytes(), Path::new(FILE)).unwrap();
    assert_eq!(spec.version(), "1.0.2-dev");
    assert!(warnings(&spec, Path::new(FILE)).is_empty());
}

#[test]
fn runc_rootless_spec_validates() {
    // User namespace with one mapping each, a bind mount of /sys with "type": "none" + rbind.
    parse_config(RUNC_SPEC_ROOTLESS.as_bytes(), Path::new(FILE)).unwrap();
}

#[test]
fn oci_spec_default_validates() {
    let text = serde_json::to_vec(&Spec::default()).unwrap();
    parse_config(&text, Path::new(FILE)).unwrap();
}

// ---- reading --------------------------------------------------------------------------------

fn write_bundle(text: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    dir
}

#[test]
fn load_bundle_reads_config_json() {
    let dir = write_bundle(RUNC_SPEC.as_bytes());
    let spec = load_bundle(dir.path()).unwrap();
    assert_eq!(spec.hostname().as_deref(), Some("runc"));
}

#[test]
fn load_bundle_names_the_full_path() {
    let dir = write_bundle(br#"{"ociVersion": "0.9.0", "root": {"path": "rootfs"}}"#);
    let err = load_bundle(dir.path()).unwrap_err();
    let path = dir.path().join("config.json");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ociVersion: ", path.display())),
        "{err}"
    );
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_bundle(dir.path()).unwrap_err();
    assert!(matches!(err, SpecError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: not found", dir.path().join("config.json").display())
    );
}

#[test]
fn oversized_file_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let f = std::fs::File::create(&path).unwrap();
    // Sparse: the size check must not need the content.
    f.set_len(CONFIG_MAX_BYTES + 1).unwrap();
    let err = load_bundle(dir.path()).unwrap_err();
    match err {
        SpecError::TooLarge { size, limit, .. } => {
            assert_eq!((size, limit), (CONFIG_MAX_BYTES + 1, CONFIG_MAX_BYTES))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn file_at_the_limit_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(RUNC_SPEC.as_bytes()).unwrap();
    let pad = usize::try_from(CONFIG_MAX_BYTES).unwrap() - RUNC_SPEC.len();
    f.write_all(&vec![b' '; pad]).unwrap();
    drop(f);
    load_bundle(dir.path()).unwrap();
}

#[test]
fn directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config.json")).unwrap();
    let err = load_bundle(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            SpecError::NotRegular {
                kind: FileKind::Directory,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = load_bundle(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            SpecError::NotRegular {
                kind: FileKind::Fifo,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().ends_with("is a fifo, not a regular file"));
}

#[test]
fn symlink_to_regular_file_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("real.json"), RUNC_SPEC).unwrap();
    std::os::unix::fs::symlink("real.json", dir.path().join("config.json")).unwrap();
    load_bundle(dir.path()).unwrap();
}

#[test]
fn load_process_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("process.json");
    std::fs::write(&path, base()["process"].to_string()).unwrap();
    let p = load_process(&path).unwrap();
    assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
    std::fs::write(&path, br#"{"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": []}"#).unwrap();
    let err = load_process(&path).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: args: must not be empty", path.display()));
}

// ---- decoding -------------------------------------------------------------------------------

#[test]
fn syntax_error_names_line_and_column() {
    let text = b"{\n  \"ociVersion\": \"1.0.0\",\n  \"root\": {\"path\": \"rootfs\"\n}\n";
    let err = parse_config(text, Path::new(FILE)).unwrap_err();
    match &err {
        SpecError::Syntax {
            line, column, reason, ..
        } => {
            assert_eq!((*line, *column), (5, 0));
            assert!(!reason.contains("at line"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("/bundle/config.json: invalid JSON at line 5, column 0: "));
    let err = parse_config(b"{\"a\": 1,,}", Path::new(FILE)).unwrap_err();
    assert!(matches!(err, SpecError::Syntax { line: 1, column: 9, .. }), "{err:?}");
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let mut text = b"{\"annotations\": ".to_vec();
    text.extend(std::iter::repeat_n(b'[', 100_000));
    let err = parse_config(&text, Path::new(FILE)).unwrap_err();
    match err {
        SpecError::Syntax { reason, .. } => assert_eq!(reason, "recursion limit exceeded"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_file_is_a_syntax_error() {
    let err = parse_config(b"", Path::new(FILE)).unwrap_err();
    assert!(matches!(err, SpecError::Syntax { .. }), "{err:?}");
}

#[test]
fn wrong_type_names_the_field() {
    let err = parse_with(|v| {
        v["linux"]["resources"]["memory"] = json!({"limit": "x"});
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/bundle/config.json: linux.resources.memory.limit: invalid type: string \"x\", expected i64"
    );
    assert_eq!(err.field(), Some("linux.resources.memory.limit"));
}

#[test]
fn wrong_type_inside_an_array_names_the_index() {
    let (field, reason) = decode_error(|v| v["process"]["args"] = json!(["sh", 3]));
    assert_eq!(field, "process.args[1]");
    assert!(reason.starts_with("invalid type: integer `3`"), "{reason}");
}

#[test]
fn top_level_not_an_object() {
    for text in [&b"[]"[..], b"null", b"\"1.0.0\"", b"3"] {
        let err = parse_config(text, Path::new(FILE)).unwrap_err();
        assert_eq!(err.field(), Some("(top level)"), "{err}");
    }
    let err = parse_config(b"[\"1.0.0\"]", Path::new(FILE)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/bundle/config.json: (top level): expected a JSON object, found an array"
    );
}

#[test]
fn unknown_capability_is_a_field_error() {
    let (field, reason) = decode_error(|v| {
        v["process"]["capabilities"]["bounding"] = json!(["CAP_KILL", "CAP_NOT_A_CAP"]);
    });
    assert_eq!(field, "process.capabilities.bounding[1]");
    assert!(reason.contains("CAP_NOT_A_CAP"), "{reason}");
}

#[test]
fn unknown_rlimit_is_a_field_error() {
    let (field, reason) = decode_error(|v| {
        v["process"]["rlimits"][0]["type"] = json!("RLIMIT_BOGUS");
    });
    assert_eq!(field, "process.rlimits[0].type");
    assert!(reason.contains("unknown variant `RLIMIT_BOGUS`"), "{reason}");
}

#[test]
fn uid_beyond_u32_is_a_field_error() {
    let (field, reason) = decode_error(|v| v["process"]["user"]["uid"] = json!(4_294_967_296u64));
    assert_eq!(field, "process.user.uid");
    assert!(reason.contains("expected u32"), "{reason}");
    let (field, _) = decode_error(|v| v["process"]["user"]["gid"] = json!(-1));
    assert_eq!(field, "process.user.gid");
    accepts(|v| v["process"]["user"]["uid"] = json!(u32::MAX));
}

#[test]
fn missing_required_field_names_its_parent() {
    let (field, reason) = decode_error(|v| {
        v["process"].as_object_mut().unwrap().remove("cwd");
    });
    assert_eq!((field.as_str(), reason.as_str()), ("process", "missing field `cwd`"));
}
