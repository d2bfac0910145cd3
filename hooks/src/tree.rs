//! A read-only view of the repository files an edit is decided against: the checked-out clone
//! in production, a map of paths in unit tests. Paths are repo-relative, with `/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The files of the head an edit is decided on.
pub trait Tree {
    /// The text of a file, or `None` when it does not exist (or is not UTF-8).
    fn read(&self, path: &str) -> Option<String>;

    /// Whether a file exists.
    fn exists(&self, path: &str) -> bool {
        self.read(path).is_some()
    }

    /// The entries of a folder, sorted, or `None` when the folder does not exist.
    fn entries(&self, dir: &str) -> Option<Vec<Entry>>;

    /// The files directly in a folder (no subfolders, no dot files) by name, with their text;
    /// empty when the folder does not exist.
    fn files(&self, dir: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for e in self.entries(dir).unwrap_or_default() {
            if e.is_dir || e.name.starts_with('.') {
                continue;
            }
            if let Some(text) = self.read(&format!("{dir}/{}", e.name)) {
                out.insert(e.name, text);
            }
        }
        out
    }
}

/// One entry of a folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Its name (no `/`).
    pub name: String,
    /// A folder rather than a file.
    pub is_dir: bool,
}

/// The files of a folder on disk (the clone's work tree).
#[derive(Debug, Clone)]
pub struct DiskTree {
    root: PathBuf,
}

impl DiskTree {
    /// A view of the folder `root`.
    pub fn new(root: impl Into<PathBuf>) -> DiskTree {
        DiskTree { root: root.into() }
    }
}

impl Tree for DiskTree {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path)).ok()
    }

    fn exists(&self, path: &str) -> bool {
        self.root.join(path).is_file()
    }

    fn entries(&self, dir: &str) -> Option<Vec<Entry>> {
        let rd = std::fs::read_dir(self.root.join(dir)).ok()?;
        let mut out: Vec<Entry> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let is_dir = e.file_type().ok()?.is_dir();
                Some(Entry { name, is_dir })
            })
            .filter(|e| !e.name.starts_with('.'))
            .collect();
        out.sort();
        Some(out)
    }
}

/// Files held in memory, for tests of the pure decisions.
#[derive(Debug, Clone, Default)]
pub struct MemTree {
    files: BTreeMap<String, String>,
}

impl MemTree {
    /// An empty tree.
    pub fn new() -> MemTree {
        MemTree::default()
    }

    /// Adds or replaces a file.
    pub fn with(mut self, path: &str, text: &str) -> MemTree {
        self.files.insert(path.to_owned(), text.to_owned());
        self
    }

    /// Applies writes (`None` removes the file).
    pub fn apply(&mut self, writes: &[(String, Option<String>)]) {
        for (path, text) in writes {
            match text {
                Some(t) => {
                    self.files.insert(path.clone(), t.clone());
                }
                None => {
                    self.files.remove(path);
                }
            }
        }
    }
}

impl Tree for MemTree {
    fn read(&self, path: &str) -> Option<String> {
        self.files.get(path).cloned()
    }

    fn entries(&self, dir: &str) -> Option<Vec<Entry>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut out: Vec<Entry> = self
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix))
            .map(|rest| match rest.split_once('/') {
                Some((d, _)) => Entry {
                    name: d.to_owned(),
                    is_dir: true,
                },
                None => Entry {
                    name: rest.to_owned(),
                    is_dir: false,
                },
            })
            .collect();
        out.sort();
        out.dedup();
        if out.is_empty() { None } else { Some(out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_tree_lists_files_and_folders() {
        let t = MemTree::new()
            .with("bootstraps/os/debian-12/install.sh", "")
            .with("bootstraps/os/alpine-321/install.sh", "")
            .with("bootstraps/README.md", "");
        let e = t.entries("bootstraps").unwrap();
        assert_eq!(
            e,
            vec![
                Entry {
                    name: "README.md".into(),
                    is_dir: false
                },
                Entry {
                    name: "os".into(),
                    is_dir: true
                }
            ]
        );
        assert_eq!(t.entries("bootstraps/os").unwrap().len(), 2);
        assert!(t.entries("nothing").is_none());
        assert!(t.exists("bootstraps/README.md"));
        let files = t.files("bootstraps");
        assert_eq!(files.keys().collect::<Vec<_>>(), ["README.md"]);
        assert!(t.files("nothing").is_empty());
    }

    #[test]
    fn disk_tree_reads_a_folder() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/f.txt"), "hi").unwrap();
        let t = DiskTree::new(d.path());
        assert_eq!(t.read("a/f.txt").as_deref(), Some("hi"));
        assert!(t.exists("a/f.txt"));
        assert!(!t.exists("a/b"));
        let names: Vec<_> = t
            .entries("a")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["b", "f.txt"]);
        assert!(t.entries("zz").is_none());
    }
}
