//! Headless Chromium (Debian's package): a page's screenshot, or a page driven over the DevTools
//! protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in a NUL byte, which
//! Chromium reads from fd 3 and writes to fd 4), so a test clicks and types in a page as a user
//! does, with no websocket client and no driver binary.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{peer_missing, KillOnDrop};

/// Headless Chromium on a fresh profile (`profile`), 900x700, without the background traffic.
fn chromium(profile: &std::path::Path) -> Command {
    let mut command = Command::new("chromium");
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=900,700"])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// Chromium's screenshot of `url` (written to `path`), or `None` (and a message) where it cannot
/// be run, except in CI, where that is a failure.
pub fn screenshot(url: &str, path: &std::path::Path) -> Option<image::RgbImage> {
    let profile = tempfile::tempdir().unwrap();
    match chromium(profile.path()).arg(format!("--screenshot={}", path.display())).arg(url).output() {
        Err(e) => {
            peer_missing(&format!("chromium cannot be run ({e})"), "apt-get install chromium");
            None
        }
        Ok(out) => {
            assert!(path.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
            Some(image::open(path).unwrap().into_rgb8())
        }
    }
}

pub struct Browser {
    to_chromium: File,
    from_chromium: BufReader<File>,
    next_id: u64,
    session: String,
    _chromium: KillOnDrop,
    _profile: tempfile::TempDir,
}

/// A pipe whose two ends close on exec (the child gets its own copies, placed by `pre_exec`).
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

impl Browser {
    /// A new headless Chromium showing `url`; `None` (and a message) where it is not installed,
    /// except in CI (`CVEDGE_REQUIRE_PEERS=1`), where its absence is a failure.
    pub fn open(url: &str) -> Option<Browser> {
        let (commands_read, commands_write) = pipe();
        let (replies_read, replies_write) = pipe();
        let profile = tempfile::tempdir().unwrap();
        let mut command = chromium(profile.path());
        command.args(["--remote-debugging-pipe", "about:blank"]).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: between fork and exec only fcntl and dup2, which are async-signal-safe. Each end
        // is first copied above 10 so that placing one at 3 or 4 cannot overwrite the other, and
        // dup2 clears close-on-exec on the copies Chromium keeps.
        unsafe {
            command.pre_exec(move || {
                let high_read = libc::fcntl(commands_read, libc::F_DUPFD, 10);
                let high_write = libc::fcntl(replies_write, libc::F_DUPFD, 10);
                if high_read < 0 || high_write < 0 || libc::dup2(high_read, 3) < 0 || libc::dup2(high_write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = command.spawn();
        // SAFETY: the child has its copies; ours of its ends are closed, ours of our ends owned.
        unsafe {
            libc::close(commands_read);
            libc::close(replies_write);
        }
        let (to_chromium, from_chromium) = unsafe { (File::from_raw_fd(commands_write), File::from_raw_fd(replies_read)) };
        let chromium = match spawned {
            Ok(child) => KillOnDrop(child),
            Err(e) => {
                peer_missing(&format!("chromium cannot be run ({e})"), "apt-get install chromium");
                return None;
            }
        };
        let mut browser = Browser { to_chromium, from_chromium: BufReader::new(from_chromium), next_id: 0, session: String::new(), _chromium: chromium, _profile: profile };
        let target = browser.call("Target.createTarget", json!({ "url": url }));
        let attached = browser.call("Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }));
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        Some(browser)
    }

    /// Sends one command (to the page once attached) and returns its result; panics on an error.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let mut message = json!({ "id": self.next_id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_chromium.write_all(&bytes).expect("chromium closed its pipe");
        loop {
            let mut reply = vec![];
            let read = self.from_chromium.read_until(0, &mut reply).unwrap();
            assert!(read > 0, "chromium exited while answering {method}");
            reply.pop();
            let reply: Value = serde_json::from_slice(&reply).unwrap();
            // Events (no id) and nothing else arrive in between.
            if reply["id"] == self.next_id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true }));
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Waits (up to 30 s) until the expression is true in the page.
    pub fn wait_until(&mut self, what: &str, expression: &str) {
        let started = Instant::now();
        while self.eval(expression) != json!(true) {
            assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what} ({expression})");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A left click in the middle of the first element matching `selector`, as the mouse does it.
    pub fn click(&mut self, selector: &str) {
        let selector_literal = serde_json::to_string(selector).unwrap();
        let rect = self.eval(&format!("(() => {{ const r = document.querySelector({selector_literal}).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"));
        let (x, y) = (rect[0].as_f64().unwrap(), rect[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call("Input.dispatchMouseEvent", json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }));
        }
    }

    /// Text typed into the focused element.
    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text }));
    }
}
