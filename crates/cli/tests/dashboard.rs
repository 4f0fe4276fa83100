//! The dashboard in a real browser: headless Chromium loads the page from a follower's admin
//! port and the DOM it renders must show the three members and the leader; after the leader is
//! killed, the same page must show the new leader; with one more member killed, the page must
//! say that no leader is known. Screenshots are saved under the cargo target directory as the
//! test's artifacts (their paths are printed).
//!
//! Without `chromium` on the PATH the test says so and passes, except under CI (`CI` set),
//! where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Cluster, FAST_TIMING, READY_TIMEOUT};

/// The longest one Chromium run may take.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

fn chromium_available() -> bool {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing; install it (apt-get install chromium chromium-driver)"
        );
        eprintln!("chromium not found: skipping (apt-get install chromium)");
    }
    found
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=PATH`), giving
/// the page five seconds of virtual time; its stdout.
fn chromium(profile: &Path, url: &str, mode: &str) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(mode)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut text);
        text
    });
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The text of the element with `id` in a dumped DOM.
fn element_text<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let open_end = start + dom[start..].find('>')? + 1;
    let close = open_end + dom[open_end..].find('<')?;
    Some(&dom[open_end..close])
}

/// Dumps the page until `accept` holds for the DOM (the page polls every second).
fn dom_until(profile: &Path, url: &str, what: &str, accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let dom = chromium(profile, url, "--dump-dom");
        if accept(&dom) {
            return dom;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {what}:\n{dom}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_dashboard_shows_the_members_and_follows_a_new_leader() {
    if !chromium_available() {
        return;
    }
    let mut cluster = Cluster::builder().admin().args(&FAST_TIMING).start();
    let leader = cluster.agreed_leader();
    let viewer = (leader + 1) % 3;
    let url = format!("http://{}/", cluster.members[viewer].admin);
    let profile = tempfile::tempdir().unwrap();
    let leader_name = cluster.members[leader].name.clone();

    let dom = dom_until(profile.path(), &url, "the members and the leader", |dom| {
        element_text(dom, "leader-name") == Some(leader_name.as_str())
            && ["n1", "n2", "n3"]
                .iter()
                .all(|name| dom.contains(&format!("data-member=\"{name}\"")))
    });
    assert!(
        dom.contains(&format!(
            "data-member=\"{leader_name}\" data-role=\"leader\""
        )),
        "{dom}"
    );
    assert_eq!(
        element_text(&dom, "self-name"),
        Some(cluster.members[viewer].name.as_str())
    );

    cluster.kill(leader);
    let new_leader = cluster.agreed_leader();
    let new_leader_name = cluster.members[new_leader].name.clone();
    let dom = dom_until(profile.path(), &url, "the new leader", |dom| {
        element_text(dom, "leader-name") == Some(new_leader_name.as_str())
    });
    assert!(
        dom.contains(&format!(
            "data-member=\"{leader_name}\" data-role=\"unreachable\""
        )),
        "the killed leader is not shown unreachable:\n{dom}"
    );

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("dashboard-after-leader-change.png");
    take_screenshot(profile.path(), &url, &screenshot);

    // The viewer alone: no quorum, no leader; the page must say so.
    let other = (0..3)
        .find(|index| *index != leader && *index != viewer)
        .unwrap();
    cluster.kill(other);
    let viewer_name = cluster.members[viewer].name.clone();
    dom_until(profile.path(), &url, "that no leader is known", |dom| {
        dom.contains(&format!("No leader known by {viewer_name}"))
            && element_text(dom, "leader-name") == Some("none")
    });
    take_screenshot(
        profile.path(),
        &url,
        &artifacts.join("dashboard-without-leader.png"),
    );
}

/// Saves a screenshot of the page at `path` and prints where.
fn take_screenshot(profile: &Path, url: &str, path: &Path) {
    let _ = std::fs::remove_file(path);
    chromium(profile, url, &format!("--screenshot={}", path.display()));
    assert!(
        std::fs::metadata(path).is_ok_and(|metadata| metadata.len() > 0),
        "no screenshot at {}",
        path.display()
    );
    println!("dashboard screenshot: {}", path.display());
}
