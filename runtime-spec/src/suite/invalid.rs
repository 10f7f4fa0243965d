//! Invalid config.json fixtures: `fixtures/invalid/NAME.json` (`@ROOTFS@` stands for the
//! rootfs path) must make `create` fail and leave nothing behind. `NAME.err` holds the text
//! amber's error must contain (it names the file and the JSON field); other runtimes only have
//! to fail. `NAME.runc`, when present, explains why runc 1.1.5 accepts the config.

use std::fs;
use std::path::{Path, PathBuf};

use super::Test;
use crate::case::{Case, Kind};
use crate::ensure;

pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("RS_FIXTURES") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/invalid"),
    }
}

pub fn tests() -> Vec<Test> {
    let dir = fixtures_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_suffix(".json").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let json = dir.join(format!("{name}.json"));
            let err = dir.join(format!("{name}.err"));
            let runc = dir.join(format!("{name}.runc"));
            let runc_note = fs::read_to_string(&runc).ok();
            let t = Test::custom(
                &format!("invalid config: {name}"),
                "config.md (fixtures/invalid)",
                move |env, left| {
                    let text = fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
                    let want = fs::read_to_string(&err).map_err(|e| format!("{}: {e}", err.display()))?;
                    let want = want.lines().next().unwrap_or("").trim().to_string();
                    let mut c = Case::new(env, left)?;
                    c.raw_config = Some(text.replace("@ROOTFS@", &env.rootfs.to_string_lossy()));
                    c.helper_args(&[]);
                    let out = c.create();
                    out.check_fails()?;
                    if env.rt.kind == Kind::Amber {
                        ensure!(
                            out.stderr.contains(&want),
                            "amber's error lacks {want:?}: {}",
                            out.stderr.trim()
                        );
                    }
                    ensure!(c.state().is_err(), "the container exists after a failed create");
                    Ok(())
                },
            );
            match runc_note {
                Some(n) => t.runc_todo(n.trim()),
                None => t,
            }
        })
        .collect()
}
