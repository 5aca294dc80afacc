//! The receiver recipes of `docs/src/recipes.md`, run as printed (Python, Node.js, Go):
//! each one, started with a secret, gets a real deploy's webhooks from the daemon signed
//! both ways (Standard Webhooks and GitHub) and says they are valid; forged, tampered and
//! replayed requests are refused with 401.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::deploy::{Site, shop_config};
use crate::support::env::{TestEnv, wait_until};
use crate::support::netns;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The page's block in `lang` (its info string).
fn recipe(lang: &str) -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/src/recipes.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    page.split_once(&format!("```{lang}\n"))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(b, _)| format!("{b}\n"))
        .unwrap_or_else(|| panic!("recipes.md lost its {lang} block"))
}

/// A running recipe: the process, the lines it printed, the port it listens on.
struct Recipe {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl Recipe {
    fn start(env: &TestEnv, lang: &str) -> Recipe {
        let (file, program, args): (&str, &str, Vec<&str>) = match lang {
            "python" => ("receiver.py", "python3", vec!["receiver.py"]),
            "js" => ("receiver.js", "node", vec!["receiver.js"]),
            _ => ("receiver.go", "go", vec!["run", "receiver.go"]),
        };
        let dir = env.join(lang);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join(file), recipe(lang)).unwrap_or_else(|e| panic!("{e}"));
        let mut child = Command::new(program)
            .args(&args)
            .current_dir(&dir)
            .env("SECRET", SECRET)
            .env("PORT", "0")
            .env("HOME", env.join("home"))
            .env("GOCACHE", env.join("gocache"))
            .env("GOFLAGS", "-buildvcs=false")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let mut port = 0;
        wait_until(
            || {
                port = lines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .find_map(|l| l.strip_prefix("listening on ")?.trim().parse().ok())
                    .unwrap_or(0);
                port != 0
            },
            Duration::from_secs(120),
            || {
                format!(
                    "the {lang} recipe listening: {:?}",
                    lines.lock().map(|l| l.clone())
                )
            },
        );
        Recipe { child, lines, port }
    }

    fn said(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends a POST with `headers` and `body`; the status it answers.
    fn post(&self, headers: &[(&str, String)], body: &str) -> u16 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("{e}"));
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut req = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Recipe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn check(lang: &str) {
    let env = TestEnv::new();
    let recipe = Recipe::start(&env, lang);
    let site = Site::capistrano(&env);
    site.cap_deploy("20261120090000", "alice");
    let secret = env.join("mine.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://127.0.0.1:{}/", recipe.port);
    let hooks = format!(
        "[[hook]]\nname = \"standard\"\nurl = \"{url}\"\nsecret_file = \"{s}\"\n\n\
         [[hook]]\nname = \"github\"\nurl = \"{url}\"\nsecret_file = \"{s}\"\nsignature = \"github\"\n",
        s = secret.display()
    );
    let d = Daemon::start(&env, &shop_config(&env, &site, &hooks));
    site.commit("a.html", "Fix header");
    site.cap_deploy("20261120100000", "bob");
    let valid = |scheme: &str| {
        recipe
            .said()
            .iter()
            .any(|l| l == &format!("{scheme} signature valid: PostDeployment"))
    };
    wait_until(
        || valid("standard") && valid("github"),
        Duration::from_secs(30),
        || {
            format!(
                "{lang}: both signatures valid: {:?}\n{:?}",
                recipe.said(),
                d.logs()
            )
        },
    );
    // Nothing the daemon sent was refused: both deliveries are delivered.
    let status = d.status();
    assert_eq!(status.matches("delivered 1, dead 0").count(), 2, "{status}");

    // Forged, tampered and replayed requests.
    let body = r#"{"id":"x","status":"success"}"#;
    let t = now().to_string();
    let forged = [
        ("webhook-id", "msg_1".to_string()),
        ("webhook-timestamp", t.clone()),
        ("webhook-signature", "v1,AAAA".to_string()),
        ("x-deployhook-event", "PostDeployment".to_string()),
    ];
    assert_eq!(
        recipe.post(&forged, body),
        401,
        "{lang}: a forged signature"
    );
    let gh = [
        ("x-hub-signature-256", format!("sha256={}", "0".repeat(64))),
        ("x-deployhook-event", "PostDeployment".to_string()),
    ];
    assert_eq!(
        recipe.post(&gh, body),
        401,
        "{lang}: a forged GitHub signature"
    );
    // A real signature over another body, and one from an hour ago.
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap_or_else(|e| panic!("{e}"));
    let sign = |id: &str, ts: &str, body: &str| {
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap_or_else(|e| panic!("{e}"));
        mac.update(format!("{id}.{ts}.{body}").as_bytes());
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    };
    let signed = |ts: &str, signed_body: &str| {
        [
            ("webhook-id", "msg_2".to_string()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sign("msg_2", ts, signed_body)),
            ("x-deployhook-event", "PostDeployment".to_string()),
        ]
    };
    assert_eq!(
        recipe.post(&signed(&t, body), body),
        204,
        "{lang}: a good one"
    );
    let tampered = body.replace("success", "failed");
    assert_eq!(
        recipe.post(&signed(&t, body), &tampered),
        401,
        "{lang}: a tampered body"
    );
    let old = (now() - 3600).to_string();
    assert_eq!(
        recipe.post(&signed(&old, body), body),
        401,
        "{lang}: a replay an hour late"
    );
    assert!(
        recipe.said().iter().any(|l| l.contains("INVALID")),
        "{lang}: says so: {:?}",
        recipe.said()
    );
}

#[test]
#[cfg_attr(
    not(tool_python3),
    ignore = "python3 is needed: apt-get install python3"
)]
fn the_python_recipe_verifies_both_signatures_and_refuses_forgeries() {
    if !netns::have("python3", &["--version"], "apt-get install python3") {
        return;
    }
    check("python");
}

#[test]
#[cfg_attr(not(tool_node), ignore = "Node.js is needed: apt-get install nodejs")]
fn the_node_recipe_verifies_both_signatures_and_refuses_forgeries() {
    if !netns::have("node", &["--version"], "apt-get install nodejs") {
        return;
    }
    check("js");
}

#[test]
#[cfg_attr(not(tool_go), ignore = "Go is needed: apt-get install golang-go")]
fn the_go_recipe_verifies_both_signatures_and_refuses_forgeries() {
    if !netns::have("go", &["version"], "apt-get install golang-go") {
        return;
    }
    check("go");
}
