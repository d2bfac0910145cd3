//! The files of a repository: reading them, listing an inventory folder, parsing TOML, and
//! running one parser per file (in parallel for a folder) with its diagnostics collected.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rayon::prelude::*;
use toml_edit::{Document, Item, TableLike};

use super::{Claim, LoadError, paths};
use crate::diag::{Diagnostic, Pos, SourceFile};
use crate::ids::IdError;
use crate::read::Reader;
use crate::values::VpsAddr;

pub(super) fn read_file(root: &Path, rel: &str) -> Result<Option<SourceFile>, LoadError> {
    let path = root.join(rel);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(match String::from_utf8(bytes) {
            Ok(text) => SourceFile::new(rel, text),
            Err(_) => SourceFile::new(rel, String::new()).with_bad_utf8(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LoadError::Io { path, source }),
    }
}

/// Files of one inventory folder, sorted, as `(id text, repo-relative path)`.
fn list_dir(root: &Path, rel: &str) -> Result<Vec<(String, String)>, LoadError> {
    let dir = root.join(rel);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(LoadError::Io { path: dir, source }),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".toml") {
            out.push((stem.to_owned(), format!("{rel}/{name}")));
        }
    }
    out.sort();
    Ok(out)
}

/// Parses a file's text; a syntax error becomes a diagnostic.
pub(crate) fn parse_doc(src: &SourceFile) -> Result<Document<&str>, Diagnostic> {
    if src.bad_utf8() {
        return Err(src.diag(Pos::default(), "", "the file is not valid UTF-8"));
    }
    Document::parse(src.text.as_str()).map_err(|e| src.toml_error(&e))
}

/// The addresses a VPS file names, read leniently from a file that failed to load.
pub(super) fn claims_of(root: &Path, stem: &str) -> Vec<Claim> {
    let rel = format!("{}/{stem}.toml", paths::VPS);
    let Ok(Some(src)) = read_file(root, &rel) else {
        return Vec::new();
    };
    let Ok(doc) = parse_doc(&src) else {
        return Vec::new();
    };
    let Some(arr) = doc.get("ips").and_then(Item::as_array) else {
        return Vec::new();
    };
    arr.iter()
        .filter_map(|v| {
            let addr = v.as_str()?.parse::<VpsAddr>().ok()?;
            Some(Claim {
                addr,
                vps: stem.to_owned(),
                file: src.path.clone(),
                line: src.pos_of(v.span()).line,
            })
        })
        .collect()
}

fn missing(file: &str, what: &str) -> Diagnostic {
    Diagnostic {
        file: file.into(),
        line: 0,
        col: 0,
        field: String::new(),
        message: format!("{what}: file not found"),
    }
}

pub(super) fn parse_one<T>(
    src: &SourceFile,
    diags: &mut Vec<Diagnostic>,
    f: impl FnOnce(&mut Reader<'_>, &dyn TableLike) -> Option<T>,
) -> Option<T> {
    let doc = match parse_doc(src) {
        Ok(d) => d,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let mut r = Reader::new(src);
    let out = f(&mut r, doc.as_table());
    diags.extend(r.diags);
    out
}

type ListParser<T> = fn(&mut Reader<'_>, &dyn TableLike, &mut BTreeSet<String>) -> Option<T>;

/// Reads a list file that must exist (products.toml, pools.toml): what parsed, or the default,
/// and whether the file as a whole could not be read (missing, or not TOML).
pub(super) fn load_list<T: Default>(
    root: &Path,
    rel: &str,
    what: &str,
    diags: &mut Vec<Diagnostic>,
    failed: &mut BTreeSet<String>,
    parse: ListParser<T>,
) -> Result<(T, bool), LoadError> {
    let Some(src) = read_file(root, rel)? else {
        diags.push(missing(rel, what));
        return Ok((T::default(), true));
    };
    let parsed = parse_one(&src, diags, |r, t| parse(r, t, failed));
    let unreadable = parsed.is_none();
    Ok((parsed.unwrap_or_default(), unreadable))
}

type EntityParser<Id, T> = fn(&mut Reader<'_>, Id, &dyn TableLike) -> Option<T>;
type FileResult<Id, T> = Result<(String, Option<(Id, T)>, Vec<Diagnostic>), LoadError>;

/// Reads every file of one inventory folder in parallel, keyed by the id its name spells.
/// Files with errors (or a bad name) are recorded in `broken` by their stem.
pub(super) fn load_dir<Id, T>(
    root: &Path,
    rel: &str,
    diags: &mut Vec<Diagnostic>,
    broken: &mut BTreeSet<String>,
    parse: EntityParser<Id, T>,
) -> Result<BTreeMap<Id, T>, LoadError>
where
    Id: std::str::FromStr<Err = IdError> + Ord + Clone + Send,
    T: Send,
{
    let results: Vec<FileResult<Id, T>> = list_dir(root, rel)?
        .into_par_iter()
        .map(|(stem, relpath)| load_file(root, stem, &relpath, parse))
        .collect();
    let mut out = BTreeMap::new();
    for res in results {
        let (stem, entity, ds) = res?;
        if !ds.is_empty() || entity.is_none() {
            broken.insert(stem);
        }
        diags.extend(ds);
        if let Some((id, e)) = entity {
            out.insert(id, e);
        }
    }
    Ok(out)
}

/// One file of an inventory folder: its stem, the entity if it parsed, and its diagnostics.
fn load_file<Id, T>(
    root: &Path,
    stem: String,
    relpath: &str,
    parse: EntityParser<Id, T>,
) -> FileResult<Id, T>
where
    Id: std::str::FromStr<Err = IdError> + Clone,
{
    let Some(src) = read_file(root, relpath)? else {
        return Ok((stem, None, Vec::new()));
    };
    let id = match stem.parse::<Id>() {
        Ok(id) => id,
        Err(e) => {
            let d = src.diag(Pos::default(), "", format!("file name: {e}"));
            return Ok((stem, None, vec![d]));
        }
    };
    let mut ds = Vec::new();
    let entity = parse_one(&src, &mut ds, |r, t| parse(r, id.clone(), t));
    Ok((stem, entity.map(|e| (id, e)), ds))
}
