//! Noticing that TLS files changed, so a renewed certificate is used without a signal.
//!
//! The parent directories are watched, not the files: an editor or certbot replaces a file by
//! renaming a new one over it, and Kubernetes updates a mounted secret by swapping a `..data`
//! symlink, neither of which a watch on the old file would see. Events are filtered to the
//! watched file names and Kubernetes' `..`-prefixed entries, and reads are ignored (reloading
//! reads the files, which must not trigger another reload). A change is acted on once the
//! directory has been quiet for [`SETTLE`], so a certificate and its key written one after the
//! other are read as a pair.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last change before the files are read.
const SETTLE: Duration = Duration::from_millis(200);

/// A running watch; dropping it stops watching.
pub struct FileWatch {
    watcher: Mutex<RecommendedWatcher>,
    watched: Arc<Mutex<Watched>>,
}

#[derive(Default)]
struct Watched {
    dirs: BTreeSet<PathBuf>,
    names: BTreeSet<OsString>,
}

impl Watched {
    fn of(files: &[PathBuf]) -> Watched {
        let mut w = Watched::default();
        for file in files {
            let dir = match file.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            w.dirs.insert(dir);
            if let Some(name) = file.file_name() {
                w.names.insert(name.to_owned());
            }
        }
        w
    }

    fn concerns(&self, path: &Path) -> bool {
        path.file_name().is_some_and(|name| {
            self.names.contains(name) || name.to_string_lossy().starts_with("..")
        })
    }
}

/// Call `on_change` (on the runtime, after [`SETTLE`]) whenever one of `files` may have changed.
/// Must be called inside a tokio runtime.
pub fn watch(
    files: &[PathBuf],
    on_change: impl Fn() + Send + 'static,
) -> notify::Result<FileWatch> {
    let (tx, mut rx) = mpsc::unbounded_channel::<notify::Event>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let _ = tx.send(event);
        }
    })?;
    let watch = FileWatch {
        watcher: Mutex::new(watcher),
        watched: Arc::new(Mutex::new(Watched::default())),
    };
    watch.set_files(files)?;
    let watched = watch.watched.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let relevant = relevant(&event, &watched.lock().unwrap_or_else(|e| e.into_inner()));
            if !relevant {
                continue;
            }
            // Wait for the directory to settle: every further event restarts the wait.
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            on_change();
        }
    });
    Ok(watch)
}

fn relevant(event: &notify::Event, watched: &Watched) -> bool {
    let kind = matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other
    ) || matches!(event.kind, EventKind::Modify(m) if !matches!(m, ModifyKind::Metadata(_)));
    kind && event.paths.iter().any(|p| watched.concerns(p))
}

impl FileWatch {
    /// Watch the directories of `files` (and only those) from now on.
    pub fn set_files(&self, files: &[PathBuf]) -> notify::Result<()> {
        let new = Watched::of(files);
        let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        for dir in watched.dirs.difference(&new.dirs) {
            let _ = watcher.unwatch(dir);
        }
        for dir in new.dirs.difference(&watched.dirs) {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        *watched = new;
        Ok(())
    }
}
