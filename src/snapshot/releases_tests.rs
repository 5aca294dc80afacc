//! Unit tests of the `releases` reader: log lines, release names, the listing's cache.

use std::path::Path;

use super::Commits;
use super::releases::*;

#[test]
fn revisions_log_lines() {
    let log = parse_revisions_log(
        "Branch main (at abc123f) deployed as release 20261120091402 by alice\n\
         alice rolled back to release 20261119000000\n\
         garbage here\n\
         Branch main (at def4567) deployed as rel",
    );
    assert_eq!(log.entries.len(), 3);
    assert_eq!(
        log.entries[0],
        LogEntry::Deployed {
            branch: "main".into(),
            sha: "abc123f".into(),
            release: "20261120091402".into(),
            user: "alice".into()
        }
    );
    assert_eq!(
        log.entries[1],
        LogEntry::RolledBack {
            user: "alice".into(),
            release: "20261119000000".into()
        }
    );
    assert_eq!(log.entries[2], LogEntry::Garbage("garbage here".into()));
    assert!(log.partial_tail);
}

#[test]
fn releases_log_lines_and_times() {
    let entries = parse_releases_log(
        "{\"created_at\":\"2026-11-20T10:14:02+01:00\",\"release_name\":\"3\",\"user\":\"bob\",\"target\":\"main\"}\nnot json\n{\"release_name\":4",
    );
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].release_name, "3");
    assert_eq!(entries[0].user.as_deref(), Some("bob"));
    assert_eq!(
        entries[0].created_at.map(|t| t.rfc3339()),
        Some("2026-11-20T09:14:02.0000000Z".to_string())
    );
}

#[test]
fn temporary_link_names_are_not_releases() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = dir.path();
    let rel = root.join("releases/20261120090000");
    std::fs::create_dir_all(&rel).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(rel.join("REVISION"), "abcdef1\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(root.join("releases/.hidden")).unwrap_or_else(|e| panic!("{e}"));
    // Capistrano's temporary link inside releases/, deploy_helper's beside current.
    std::os::unix::fs::symlink(&rel, root.join("releases/current"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&rel, root.join("current.DEPLOY_UNFINISHED"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("releases/20261120090000", root.join("current"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut site = crate::config::SiteConfig::new("s", root);
    site.layout = crate::config::LayoutChoice::Releases;
    let mut warnings = Vec::new();
    let snap = read_releases(
        &site,
        &mut Commits::default(),
        &mut ReleasesCache::default(),
        &mut warnings,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snap.releases.keys().collect::<Vec<_>>(), ["20261120090000"]);
    assert_eq!(snap.current, Current::Release("20261120090000".into()));
    assert_eq!(snap.flavour, Flavour::Plain);
    assert_eq!(
        snap.releases["20261120090000"].revision,
        Revision::Sha("abcdef1".into())
    );
}

#[test]
fn an_unchanged_release_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = dir.path();
    let rel = root.join("releases/1");
    std::fs::create_dir_all(&rel).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(rel.join("REVISION"), "aaaaaaa\n").unwrap_or_else(|e| panic!("{e}"));
    let age = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let t = libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        };
        // SAFETY: a valid path and two valid timespecs.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
        assert_eq!(rc, 0);
    };
    age(&rel);
    let mut site = crate::config::SiteConfig::new("s", root);
    site.layout = crate::config::LayoutChoice::Releases;
    let mut cache = ReleasesCache::default();
    let read = |cache: &mut ReleasesCache| {
        read_releases(&site, &mut Commits::default(), cache, &mut Vec::new())
            .unwrap_or_else(|e| panic!("{e}"))
            .releases["1"]
            .revision
            .clone()
    };
    assert_eq!(read(&mut cache), Revision::Sha("aaaaaaa".into()));
    // Rewritten in place (the directory's time does not change): not read again.
    std::fs::write(rel.join("REVISION"), "bbbbbbb\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(&mut cache), Revision::Sha("aaaaaaa".into()));
    // A change of the directory (a file added) makes it read again.
    std::fs::write(rel.join("other"), "").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(&mut cache), Revision::Sha("bbbbbbb".into()));
    // A directory changed just now is not kept: file times are coarse.
    std::fs::write(rel.join("REVISION"), "ccccccc\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(&mut cache), Revision::Sha("ccccccc".into()));
}

#[test]
fn revision_content() {
    assert_eq!(
        parse_revision(b"ABCDEF1234567\n"),
        Revision::Sha("abcdef1234567".into())
    );
    assert_eq!(parse_revision(b"  "), Revision::Missing);
    assert!(matches!(
        parse_revision(b"not a sha"),
        Revision::Unreadable(_)
    ));
    assert!(matches!(
        parse_revision(&[0xff, 0xfe]),
        Revision::Unreadable(_)
    ));
}
