//! Reading a config or process file and decoding it, with errors that point at the field.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{FileKind, IoOp, SpecError};
use super::CONFIG_MAX_BYTES;

/// How a decode error at the document's root names its field.
const TOP_LEVEL: &str = "(top level)";

/// Reads `file` whole, refusing anything but a regular file of at most [`CONFIG_MAX_BYTES`].
///
/// The size and type are checked on the open descriptor, so a file swapped between `stat` and
/// `open` cannot slip past; the read itself is capped too, in case the file grows meanwhile.
pub(crate) fn read_limited(file: &Path) -> Result<Vec<u8>, SpecError> {
    // A first stat on the path: opening a fifo for reading would block until a writer appears,
    // so refuse it before open. O_NONBLOCK below covers a fifo swapped in after this check.
    let meta = std::fs::metadata(file).map_err(|e| io_error(file, IoOp::Stat, e))?;
    check_regular(file, &meta)?;
    let fd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file)
        .map_err(|e| io_error(file, IoOp::Open, e))?;
    let meta = fd.metadata().map_err(|e| io_error(file, IoOp::Stat, e))?;
    check_regular(file, &meta)?;
    check_size(file, meta.len())?;
    read_capped(file, fd, meta.len())
}

fn read_capped(file: &Path, fd: File, len: u64) -> Result<Vec<u8>, SpecError> {
    // The capacity is bounded by check_size, so the conversion cannot truncate on 64-bit hosts;
    // on others the Vec just grows as it reads.
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    fd.take(CONFIG_MAX_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error(file, IoOp::Read, e))?;
    let read = u64::try_from(buf.len()).unwrap_or(u64::MAX);
    check_size(file, read)?;
    Ok(buf)
}

fn io_error(file: &Path, op: IoOp, source: io::Error) -> SpecError {
    if source.kind() == io::ErrorKind::NotFound {
        SpecError::NotFound {
            file: file.to_path_buf(),
        }
    } else {
        SpecError::Io {
            file: file.to_path_buf(),
            op,
            source,
        }
    }
}

fn check_regular(file: &Path, meta: &Metadata) -> Result<(), SpecError> {
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(());
    }
    let kind = if ft.is_dir() {
        FileKind::Directory
    } else if ft.is_fifo() {
        FileKind::Fifo
    } else if ft.is_socket() {
        FileKind::Socket
    } else if ft.is_char_device() {
        FileKind::CharDevice
    } else if ft.is_block_device() {
        FileKind::BlockDevice
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Unknown
    };
    Err(SpecError::NotRegular {
        file: file.to_path_buf(),
        kind,
    })
}

fn check_size(file: &Path, size: u64) -> Result<(), SpecError> {
    if size > CONFIG_MAX_BYTES {
        return Err(SpecError::TooLarge {
            file: file.to_path_buf(),
            size,
            limit: CONFIG_MAX_BYTES,
        });
    }
    Ok(())
}

/// Parses `text` as JSON, then decodes it into `T`, naming the field of any schema error.
///
/// Two steps on purpose: the JSON parse reports syntax errors with line and column, and the
/// decode from the parsed [`Value`] reports type errors by field path alone (a line number
/// would be noise next to `linux.resources.memory.limit`). Like runc (Go's encoding/json), a
/// duplicated key keeps its last value. serde_json's recursion limit keeps hostile nesting from
/// overflowing the stack.
pub(crate) fn decode<T: DeserializeOwned>(text: &[u8], file: &Path) -> Result<(T, Value), SpecError> {
    let value: Value = serde_json::from_slice(text).map_err(|e| SpecError::Syntax {
        file: file.to_path_buf(),
        line: e.line(),
        column: e.column(),
        reason: strip_position(&e),
    })?;
    // serde's derived structs also accept an array of fields in order; Go's encoding/json, and
    // so runc, only take an object. Nested values keep serde's leniency.
    if !value.is_object() {
        return Err(SpecError::Decode {
            file: file.to_path_buf(),
            field: TOP_LEVEL.to_string(),
            reason: format!("expected a JSON object, found {}", json_kind(&value)),
        });
    }
    let decoded = serde_path_to_error::deserialize(&value).map_err(|e| {
        let field = e.path().to_string();
        SpecError::Decode {
            file: file.to_path_buf(),
            field: if field == "." { TOP_LEVEL.to_string() } else { field },
            reason: strip_position(e.inner()),
        }
    })?;
    Ok((decoded, value))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json appends " at line L column C" to its messages; the position is reported in its own
/// fields, so drop it from the text.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(reason) => reason.to_string(),
        None => text,
    }
}
