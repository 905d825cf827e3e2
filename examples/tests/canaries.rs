//! Privacy canaries: each example program is run through its real flows with a distinctive
//! string in every input that is not sent as `#[plain]` (names, paths, images, labels,
//! variables, records, headers, error texts, the home and working directories, the user's
//! name), and then no canary, nor an unkeyed SHA-256 of one (hex in either case, or base64),
//! may be found in any byte the receiver got, in any file of the telemetry state directory,
//! in a shared temporary directory, or in what the program printed, debug payloads included.
//! Each canary names the field it stands for, so a failure says which one leaked.

#![cfg(unix)]
#![deny(warnings, unused_qualifications)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use support::{ApiServer as Server, Sandbox, files_under};

/// A distinctive string standing for one input field.
struct Canary {
    field: &'static str,
    text: String,
}

/// One way a canary could show: its text, or an unkeyed digest of it.
struct Needle {
    field: &'static str,
    form: &'static str,
    bytes: Vec<u8>,
    /// Compared without regard to ASCII case (text and hex); base64 is compared exactly.
    any_case: bool,
}

/// The canaries given to a program, and the whole values they were part of (a path, an
/// image reference), whose digests are looked for as well.
#[derive(Default)]
struct Canaries {
    canaries: Vec<Canary>,
    values: Vec<(&'static str, String)>,
}

impl Canaries {
    /// Adds a canary for `field` and returns its text.
    fn add(&mut self, field: &'static str, text: &str) -> String {
        if let Some(known) = self
            .canaries
            .iter()
            .find(|canary| canary.text.eq_ignore_ascii_case(text))
        {
            assert!(
                known.field == field && known.text == text,
                "canaries must be distinct: {text}"
            );
            return known.text.clone();
        }
        self.canaries.push(Canary {
            field,
            text: text.to_owned(),
        });
        text.to_owned()
    }

    /// Records a whole value given for `field` (it holds a canary), so that its digests are
    /// looked for too, and returns it.
    fn value(&mut self, field: &'static str, value: impl Into<String>) -> String {
        let value = value.into();
        assert!(
            self.canaries.iter().any(|canary| contains(
                value.as_bytes(),
                canary.text.as_bytes(),
                true
            )),
            "{value} holds no canary"
        );
        self.values.push((field, value.clone()));
        value
    }

    /// Every needle: each canary's text, and the digests of each canary and whole value.
    fn needles(&self) -> Vec<Needle> {
        let mut needles = Vec::new();
        for canary in &self.canaries {
            needles.push(Needle {
                field: canary.field,
                form: "text",
                bytes: canary.text.as_bytes().to_vec(),
                any_case: true,
            });
        }
        let hashed = self
            .canaries
            .iter()
            .map(|canary| (canary.field, canary.text.as_str()))
            .chain(
                self.values
                    .iter()
                    .map(|(field, value)| (*field, value.as_str())),
            );
        for (field, text) in hashed {
            let digest: Vec<u8> = Sha256::digest(text.as_bytes()).to_vec();
            needles.push(Needle {
                field,
                form: "SHA-256 hex",
                // A prefix: a digest cut short is found too.
                bytes: hex(&digest).as_bytes()[..16].to_vec(),
                any_case: true,
            });
            // Unpadded: what a padded encoding starts with too.
            for (form, engine) in [
                ("SHA-256 base64", &STANDARD_NO_PAD),
                ("SHA-256 base64url", &URL_SAFE_NO_PAD),
            ] {
                needles.push(Needle {
                    field,
                    form,
                    bytes: engine.encode(&digest).as_bytes()[..16].to_vec(),
                    any_case: false,
                });
            }
        }
        needles
    }

    /// Fails the test when `bytes`, found `where_`, hold a canary or a digest of one. The
    /// text of the canaries of `echoed` fields may appear (the program shows the user what
    /// the user gave it); their digests may not.
    #[track_caller]
    fn assert_absent(&self, where_: &str, bytes: &[u8], echoed: &[&str]) {
        let leaks: Vec<String> = self
            .needles()
            .iter()
            .filter(|needle| !(needle.form == "text" && echoed.contains(&needle.field)))
            .filter(|needle| contains(bytes, &needle.bytes, needle.any_case))
            .map(|needle| format!("{} ({})", needle.field, needle.form))
            .collect();
        assert!(
            leaks.is_empty(),
            "{where_} holds {}:\n{}",
            leaks.join(", "),
            String::from_utf8_lossy(bytes)
        );
    }

    /// Every field, for places where the text of any input may legitimately appear.
    fn fields(&self) -> Vec<&'static str> {
        self.canaries.iter().map(|canary| canary.field).collect()
    }
}

fn contains(haystack: &[u8], needle: &[u8], any_case: bool) -> bool {
    haystack.windows(needle.len()).any(|window| {
        if any_case {
            window.eq_ignore_ascii_case(needle)
        } else {
            window == needle
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn the_canary_helpers_find_text_and_digests() {
    let mut canaries = Canaries::default();
    canaries.add("name", "CANARYselftestZ0");
    let digest = Sha256::digest(b"CANARYselftestZ0").to_vec();
    for found in [
        b"x canaryselftestz0 y".to_vec(),
        hex(&digest).to_uppercase().into_bytes(),
        STANDARD_NO_PAD.encode(&digest).into_bytes(),
        URL_SAFE_NO_PAD.encode(&digest).into_bytes(),
    ] {
        let caught = std::panic::catch_unwind(|| canaries.assert_absent("a test", &found, &[]));
        assert!(caught.is_err(), "{}", String::from_utf8_lossy(&found));
    }
    canaries.assert_absent("a test", b"CANARYselftestZ0", &["name"]);
    canaries.assert_absent("a test", b"nothing here", &[]);
}

/// A program run in a world full of canaries: its home, working and temporary directories,
/// the user's name, the host's, `PATH` and other variables, each holding one.
struct World {
    sandbox: Sandbox,
    program: PathBuf,
    /// Telemetry state directories besides the default one, chosen by a flow.
    more_state: Vec<PathBuf>,
    app: &'static str,
    prefix: &'static str,
    home: PathBuf,
    cwd: PathBuf,
    tmp: PathBuf,
    path_dir: PathBuf,
    canaries: Canaries,
}

impl World {
    fn new(program: &str, app: &'static str, prefix: &'static str) -> World {
        let sandbox = Sandbox::new(program, prefix);
        let root = sandbox.home.path().to_owned();
        let mut canaries = Canaries::default();
        let home = root
            .join(canaries.add("HOME", "CANARYhomeH1"))
            .join(canaries.add("USER", "CANARYuserU2"));
        let cwd = root.join(canaries.add("working directory", "CANARYcwdW3"));
        let tmp = root.join(canaries.add("TMPDIR", "CANARYtmpT4"));
        let path_dir = root.join(canaries.add("PATH", "CANARYpathP5")).join("bin");
        for dir in [&home, &cwd, &tmp, &path_dir] {
            std::fs::create_dir_all(dir).unwrap();
        }
        for (field, text) in [
            ("HOSTNAME", "CANARYhostN6"),
            ("arbitrary variable", "CANARYenvE7"),
            ("variable name", "CANARYVARNAMEV8"),
            ("AWS_SECRET_ACCESS_KEY", "CANARYawsA9"),
            ("GITHUB_TOKEN", "CANARYghtokG10"),
            ("PYTHONPATH", "CANARYpypathY11"),
            ("SHELL", "CANARYshellS12"),
            ("LANG", "CANARYlangL13"),
        ] {
            canaries.add(field, text);
        }
        for (field, value) in [
            ("HOME", home.display().to_string()),
            ("working directory", cwd.display().to_string()),
            ("TMPDIR", tmp.display().to_string()),
        ] {
            canaries.value(field, value);
        }
        World {
            sandbox,
            program: PathBuf::from(program),
            more_state: Vec::new(),
            app,
            prefix,
            home,
            cwd,
            tmp,
            path_dir,
            canaries,
        }
    }

    /// The program with `args`, opted in, in the world's environment.
    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        self.command_as(&self.program, args)
    }

    /// As [`World::command`], run as `program` (a link to the program).
    fn command_as<S: AsRef<std::ffi::OsStr>>(&self, program: &Path, args: &[S]) -> Command {
        let mut command = Command::new(program);
        let path = std::env::var("PATH").unwrap_or_default();
        command
            .args(args)
            .env_clear()
            .env(
                format!("{}_TELEMETRY_ENDPOINT", self.prefix),
                self.sandbox.receiver.origin(),
            )
            .env(format!("{}_TELEMETRY", self.prefix), "on")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("USER", "CANARYuserU2")
            .env("LOGNAME", "CANARYuserU2")
            .env("HOSTNAME", "CANARYhostN6")
            .env("PATH", format!("{}:{path}", self.path_dir.display()))
            .env("TMPDIR", &self.tmp)
            .env("PWD", &self.cwd)
            .env("CANARY_SETTING", "CANARYenvE7")
            .env("CANARYVARNAMEV8", "1")
            .env("AWS_SECRET_ACCESS_KEY", "CANARYawsA9")
            .env("GITHUB_TOKEN", "CANARYghtokG10")
            .env("PYTHONPATH", "/opt/CANARYpypathY11/lib")
            .env("SHELL", "/bin/CANARYshellS12")
            .env("LANG", "CANARYlangL13.UTF-8")
            .env("MAIL", "/var/mail/CANARYuserU2")
            .current_dir(&self.cwd);
        command
    }

    /// The program's telemetry state directory in this world.
    fn state_dir(&self) -> PathBuf {
        self.home.join(".config").join(self.app).join("telemetry")
    }

    /// Runs `command` to its end and checks what it printed: no canary but the text of the
    /// `echoed` fields, no digest at all.
    #[track_caller]
    fn run(&self, command: &mut Command, echoed: &[&str]) -> Output {
        let output = command.output().expect("the program runs");
        self.check_printed(command, &output, echoed);
        output
    }

    #[track_caller]
    fn run_ok(&self, command: &mut Command, echoed: &[&str]) -> Output {
        let output = self.run(command, echoed);
        assert!(
            output.status.success(),
            "{command:?} failed: {}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    #[track_caller]
    fn check_printed(&self, command: &Command, output: &Output, echoed: &[&str]) {
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let args: Vec<_> = command
                .get_args()
                .map(|arg| arg.to_string_lossy())
                .collect();
            self.canaries.assert_absent(
                &format!("the {stream} of `{} {}`", self.app, args.join(" ")),
                bytes,
                echoed,
            );
        }
    }

    /// Runs `command` in debug mode, and checks what it printed (see [`World::check_debug`]).
    #[track_caller]
    fn run_debug(&self, mut command: Command, echoed: &[&str]) -> Output {
        command.env(format!("{}_TELEMETRY_DEBUG", self.prefix), "1");
        let before = self.sandbox.receiver.events().len();
        let output = self.run(&mut command, echoed);
        self.check_debug(&output, before);
        output
    }

    /// Checks the payloads a run in debug mode printed: none may hold a canary, and they
    /// must be the events the receiver got after its first `before`.
    #[track_caller]
    fn check_debug(&self, output: &Output, before: usize) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let printed = printed_payloads(&stderr, self.app);
        assert!(
            !printed.is_empty(),
            "debug mode printed no payload: {stderr}"
        );
        for payload in &printed {
            self.canaries
                .assert_absent("a payload debug mode printed", payload.as_bytes(), &[]);
        }
        let received = self.sandbox.receiver.events().len() - before;
        let printed_events: usize = printed
            .iter()
            .map(|payload| {
                let value: Value = serde_json::from_str(payload).expect("a JSON payload");
                value["batch"].as_array().map_or(1, Vec::len)
            })
            .sum();
        assert_eq!(printed_events, received, "debug mode prints what is sent");
    }

    /// The names of the events received so far.
    fn received(&self) -> Vec<String> {
        self.sandbox
            .receiver
            .events()
            .iter()
            .map(|event| event["event"].as_str().expect("a name").to_owned())
            .collect()
    }

    /// Fails unless every one of `names` was received.
    #[track_caller]
    fn assert_received(&self, names: &[&str]) {
        let received = self.received();
        for name in names {
            assert!(
                received.iter().any(|got| got == name),
                "no `{name}` received: {received:?}"
            );
        }
    }

    /// Checks every byte the receiver got, every file of the state directory and of the
    /// temporary directory, and every other file of the world for digests.
    #[track_caller]
    fn assert_no_leak(&self) {
        let requests = self.sandbox.receiver.requests();
        assert!(!requests.is_empty(), "nothing was sent");
        for request in &requests {
            // A refused request is checked as well, and is a failure of its own.
            assert_eq!(
                request.status, 200,
                "a request was refused: {}",
                request.url
            );
            let headers: String = request
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: {value}\n"))
                .collect();
            for (part, bytes) in [
                ("URL", request.url.as_bytes()),
                ("headers", headers.as_bytes()),
                ("raw body", &request.raw[..]),
                ("body", request.body.as_bytes()),
            ] {
                self.canaries
                    .assert_absent(&format!("the {part} of a request"), bytes, &[]);
            }
        }
        self.assert_state_clean();
        for file in files_under(&self.tmp) {
            self.canaries.assert_absent(
                &format!("the temporary file {}", file.display()),
                &std::fs::read(&file).unwrap(),
                &[],
            );
        }
        // The user's own files (specs, configuration, outputs) hold the user's text; no file
        // may hold an unkeyed digest of it.
        let all = self.canaries.fields();
        let files = files_under(self.sandbox.home.path())
            .into_iter()
            .filter(|file| {
                // A link to the program is the program, not something it wrote.
                !file.symlink_metadata().unwrap().file_type().is_symlink()
            });
        for file in files {
            self.canaries.assert_absent(
                &format!("the file {}", file.display()),
                &std::fs::read(&file).unwrap(),
                &all,
            );
        }
    }

    /// Checks every file of the state directories, of which the default one must exist.
    #[track_caller]
    fn assert_state_clean(&self) {
        let files = files_under(&self.state_dir());
        assert!(!files.is_empty(), "no telemetry state was written");
        let more = self.more_state.iter().flat_map(|dir| files_under(dir));
        for file in files.into_iter().chain(more) {
            self.canaries.assert_absent(
                &format!("the state file {}", file.display()),
                &std::fs::read(&file).unwrap(),
                &[],
            );
        }
    }

    /// Runs `command` against an endpoint that refuses connections, so that what it sends
    /// is spooled, and checks that the spool holds it and no canary.
    fn assert_spooled_clean(&self, mut command: Command, echoed: &[&str]) {
        command
            .env(
                format!("{}_TELEMETRY_ENDPOINT", self.prefix),
                refused_origin(),
            )
            .env(format!("{}_TELEMETRY", self.prefix), "on");
        self.run_ok(&mut command, echoed);
        self.assert_spool_clean();
    }

    /// Checks that the spool holds events, and no canary.
    fn assert_spool_clean(&self) {
        let spool = files_under(&self.state_dir().join("spool"));
        assert!(!spool.is_empty(), "nothing was spooled");
        self.assert_state_clean();
    }

    /// The events of the local log, which must exist.
    fn local_events(&self) -> Vec<String> {
        let log = self.state_dir().join("events.jsonl");
        let text = std::fs::read_to_string(&log).expect("a local log");
        text.lines()
            .map(|line| {
                let event: Value = serde_json::from_str(line).expect("a JSON line");
                event["event"].as_str().expect("a name").to_owned()
            })
            .collect()
    }

    /// Checks a run in `local` mode: nothing was sent, the local log holds each of `names`,
    /// and the state directory holds no canary.
    fn assert_logged_locally(&self, names: &[&str]) {
        assert!(
            self.sandbox.receiver.requests().is_empty(),
            "local sends nothing"
        );
        let events = self.local_events();
        for name in names {
            assert!(
                events.iter().any(|event| event == name),
                "{name}: {events:?}"
            );
        }
        self.assert_state_clean();
    }
}

/// The payloads debug mode printed: each `[<app> telemetry] <url>:` line followed by the
/// pretty-printed body.
fn printed_payloads(stderr: &str, app: &str) -> Vec<String> {
    let label = format!("[{app} telemetry] ");
    let mut payloads = Vec::new();
    let mut rest = stderr;
    while let Some(start) = rest.find(&label) {
        let after = &rest[start + label.len()..];
        let Some(colon) = after.find(":\n") else {
            break;
        };
        let body = &after[colon + 2..];
        let mut stream = serde_json::Deserializer::from_str(body).into_iter::<Value>();
        match stream.next() {
            Some(Ok(_)) => {
                payloads.push(body[..stream.byte_offset()].to_owned());
                rest = &body[stream.byte_offset()..];
            }
            _ => break,
        }
    }
    payloads
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A `jobs` spec using every field, each holding a canary, with `image` and `command`.
fn jobs_spec(canaries: &mut Canaries, image: &str, command: &str) -> String {
    let mut c = |field, text: &str| canaries.add(field, text);
    let namespace = c("namespace", "CANARYnsJ1");
    let name = c("job name", "CANARYjobJ2");
    let task = c("task name", "CANARYtaskJ3");
    let label_key = c("label key", "CANARYlabelkeyJ4");
    let label_value = c("label value", "CANARYlabelvalJ5");
    let meta_key = c("meta key", "CANARYmetakeyJ6");
    let meta_value = c("meta value", "CANARYmetavalJ7");
    let env_name = c("env name", "CANARYENVNAMEJ8");
    let env_value = c("env value", "CANARYenvvalJ9");
    let engine_var = c("engine variable", "CANARY_ENGINEVAR_J10");
    let engine_value = c("engine variable value", "CANARYenginevalJ11");
    let task_env = c("task env value", "CANARYtaskenvJ12");
    let task_meta = c("task meta", "CANARYtaskmetaJ13");
    let parameter = c("parameter", "CANARYparamJ14");
    let url_host = c("input URL host", "canaryhostj15");
    let url_path = c("input URL path", "CANARYurlpathJ16");
    let source_path = c("input source path", "CANARYsrcpathJ17");
    let target = c("input target", "CANARYtargetJ18");
    let bucket = c("bucket", "canarybucketj19");
    let result_name = c("result name", "CANARYresultJ20");
    let result_path = c("result path", "CANARYresultpathJ21");
    let domain = c("domain", "canarydomainj22");
    // The whole values the canaries are part of: a field's unkeyed digest would be of these.
    for (field, whole) in [
        (
            "input URL",
            format!("https://{url_host}.example/{url_path}.csv"),
        ),
        ("input source path", format!("/home/{source_path}")),
        ("input target", format!("/inputs/{target}")),
        ("result path", format!("/outputs/{result_path}")),
        ("domain", format!("{domain}.example")),
        ("label", format!("{label_key}={label_value}")),
        ("label", format!("{label_key}:{label_value}")),
        ("meta", format!("{meta_key}={meta_value}")),
        ("env", format!("{env_name}={env_value}")),
        ("engine variable", format!("{engine_var}={engine_value}")),
        ("parameter", format!("{command} --tag {parameter}")),
    ] {
        canaries.value(field, whole);
    }
    format!(
        "\
Name: {name}
Namespace: {namespace}
Type: batch
Count: 1
Labels:
  {label_key}: {label_value}
Meta:
  {meta_key}: {meta_value}
Env:
  {env_name}: {env_value}
Tasks:
  - Name: {task}
    Engine:
      Type: docker
      Params:
        Image: {image}
        Entrypoint: [sh, -c]
        Parameters: [\"{command} --tag {parameter}\"]
        EnvironmentVariables:
          - {engine_var}={engine_value}
    Env:
      MODE: {task_env}
    Meta:
      {task_meta}: {task_meta}
    Publisher:
      Type: local
    InputSources:
      - Target: /inputs/{target}
        Source:
          Type: urlDownload
          Params:
            URL: https://{url_host}.example/{url_path}.csv
      - Target: /inputs/rates
        Source:
          Type: localDirectory
          Params:
            SourcePath: /home/{source_path}
      - Target: /inputs/archive
        Source:
          Type: s3
          Params:
            Bucket: {bucket}
    ResultPaths:
      - Name: {result_name}
        Path: /outputs/{result_path}
    Resources:
      CPU: 500m
      Memory: 1Gi
      GPU: 1
      GPUType: nvidia
    Network:
      Type: http
      Domains: [{domain}.example]
    Timeouts:
      ExecutionTimeout: 600
"
    )
}

/// Writes a `jobs` spec under a directory of canaries, and returns its path.
fn write_jobs_spec(world: &mut World, file: &str, text: &str) -> PathBuf {
    let dir = world
        .cwd
        .join(world.canaries.add("spec directory", "CANARYspecdirJ23"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    world.canaries.value("spec path", text_of(&path));
    path
}

fn text_of(path: &Path) -> String {
    text(path).to_owned()
}

fn jobs_world() -> World {
    World::new(env!("CARGO_BIN_EXE_jobs"), "jobs", "JOBS")
}

#[test]
fn jobs_leaks_no_canary() {
    let mut world = jobs_world();
    let image = world.canaries.add("image", "canaryimagej24");
    let image = world
        .canaries
        .value("image reference", format!("docker.io/{image}/payroll:2.1"));
    let spec_text = jobs_spec(&mut world.canaries, &image, "echo ok");
    let file = format!(
        "{}.yaml",
        world.canaries.add("spec file", "CANARYspecfileJ25")
    );
    let spec = write_jobs_spec(&mut world, &file, &spec_text);
    let spec_dir = spec.parent().unwrap().to_owned();

    // The user names the node: it is kept in the configuration, and sent only as a hash.
    let node = world.canaries.add("node name", "CANARYnodeJ26");
    world.run_ok(
        &mut world.command(&["config", "set", "NodeName", &node]),
        &["node name"],
    );
    let output = world.run_ok(&mut world.command(&["run", text(&spec)]), &[]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("completed"));

    // A task that exits with an error, retried then failed.
    let failing_text = jobs_spec(
        &mut Canaries::default(),
        &image,
        "exit 3 && echo CANARYexitJ27",
    );
    world.canaries.add("failing command", "CANARYexitJ27");
    let failing = spec_dir.join("failing.yaml");
    std::fs::write(&failing, failing_text).unwrap();
    let output = world.run(&mut world.command(&["run", text(&failing)]), &[]);
    assert_eq!(output.status.code(), Some(1));

    // An image whose registry cannot be reached.
    let registry = world.canaries.add("registry", "canaryregistryj28");
    let unreachable = world.canaries.value(
        "unreachable image",
        format!("{registry}.example:5000/payroll:1"),
    );
    let pull = spec_dir.join("pull.json");
    std::fs::write(
        &pull,
        json!({
            "Name": "pull", "Type": "batch",
            "Tasks": [{"Name": "pull", "Engine": {"Type": "docker", "Params": {"Image": unreachable}},
                       "Timeouts": {"ExecutionTimeout": 60}}]
        })
        .to_string(),
    )
    .unwrap();
    let output = world.run(&mut world.command(&["run", text(&pull)]), &[]);
    assert_eq!(output.status.code(), Some(1));

    // A spec that is not a job: the parser's message, which quotes it, is only printed.
    let bad_type = world.canaries.add("job type", "CANARYtypeJ29");
    let invalid = spec_dir.join("invalid.yaml");
    std::fs::write(&invalid, format!("Name: x\nType: {bad_type}\nTasks: 7\n")).unwrap();
    let output = world.run(&mut world.command(&["run", text(&invalid)]), &["job type"]);
    assert_eq!(output.status.code(), Some(1));
    let missing = spec_dir.join(format!(
        "{}.yaml",
        world.canaries.add("missing spec", "CANARYmissingJ30")
    ));
    let output = world.run(&mut world.command(&["run", text(&missing)]), &[]);
    assert_eq!(output.status.code(), Some(1));

    // A node name given for one run, and the configuration listed.
    let override_node = world.canaries.add("node name override", "CANARYnodeJ31");
    world.run_ok(
        &mut world.command(&[
            "--config",
            &format!("NodeName={override_node}"),
            "run",
            text(&spec),
        ]),
        &[],
    );
    world.run_ok(&mut world.command(&["config", "list"]), &["node name"]);

    // Debug mode prints each payload: none holds a canary.
    world.run_debug(world.command(&["run", text(&spec)]), &[]);

    world.assert_received(&[
        "app_started",
        "job_submitted",
        "execution_updated",
        "job_finished",
        "command",
        "app_stopped",
    ]);
    let failed = world
        .sandbox
        .receiver
        .events()
        .into_iter()
        .filter(|event| event["event"] == "command" && event["properties"]["outcome"] == "error")
        .count();
    assert!(failed >= 4, "the failing runs are reported");
    world.assert_no_leak();
}

#[test]
fn jobs_local_log_and_spool_hold_no_canary() {
    let mut world = jobs_world();
    let image = world.canaries.add("image", "canaryimagej24");
    let image = world
        .canaries
        .value("image reference", format!("docker.io/{image}/payroll:2.1"));
    let spec_text = jobs_spec(&mut world.canaries, &image, "echo ok");
    let spec = write_jobs_spec(&mut world, "job.yaml", &spec_text);
    let mut command = world.command(&["run", text(&spec)]);
    command.env("JOBS_TELEMETRY", "local");
    world.run_ok(&mut command, &[]);
    world.assert_logged_locally(&["app_started", "job_submitted", "job_finished", "command"]);
    world.assert_spooled_clean(world.command(&["run", text(&spec)]), &[]);
}

fn agent_world() -> World {
    World::new(env!("CARGO_BIN_EXE_agent"), "agent", "AGENT")
}

#[test]
fn agent_leaks_no_canary() {
    let mut world = agent_world();
    // `install` says where it wrote the configuration: under the user's home.
    world.run_ok(
        &mut world.command(&["install"]),
        &["HOME", "USER", "working directory"],
    );
    world.run_ok(&mut world.command(&["run", "--exit-after", "0"]), &[]);

    // A panic, run under a name of the user's choosing.
    let links = world
        .sandbox
        .home
        .path()
        .join(world.canaries.add("program directory", "CANARYbindirA1"));
    std::fs::create_dir_all(&links).unwrap();
    let renamed = links.join(format!(
        "agent-{}",
        world.canaries.add("program name", "CANARYexeA2")
    ));
    std::os::unix::fs::symlink(&world.program, &renamed).unwrap();
    world.canaries.value("program path", text_of(&renamed));
    let output = world.run(
        &mut world.command_as(&renamed, &["run", "--panic-after", "0"]),
        &[],
    );
    assert!(!output.status.success());

    // A configuration directory of the user's, holding a setting the agent does not know.
    let dir = world.cwd.join(
        world
            .canaries
            .add("configuration directory", "CANARYcfgdirA3"),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let collector = world.canaries.add("collector", "CANARYcollectorA4");
    std::fs::write(
        dir.join("agent.conf"),
        format!("collectors = load, {collector}\n"),
    )
    .unwrap();
    world.canaries.value("configuration path", text_of(&dir));
    world.more_state.push(dir.join("telemetry"));
    let output = world.run(
        &mut world.command(&["--config-dir", text(&dir), "run", "--exit-after", "0"]),
        &[
            "configuration directory",
            "HOME",
            "USER",
            "working directory",
        ],
    );
    assert_eq!(output.status.code(), Some(2));

    // `telemetry status` shows where the state is kept, for the user to see.
    world.run_ok(
        &mut world.command(&["telemetry", "status"]),
        &["HOME", "USER"],
    );
    world.run_debug(world.command(&["run", "--exit-after", "0"]), &[]);

    world.assert_received(&[
        "app_started",
        "agent_configured",
        "app_fatal",
        "command",
        "app_stopped",
    ]);
    let events = world.sandbox.receiver.events();
    let fatal = events
        .iter()
        .find(|event| event["event"] == "app_fatal")
        .unwrap();
    assert_eq!(fatal["properties"]["process"], "agent", "{fatal:#}");
    world.assert_no_leak();
}

#[test]
fn agent_local_log_and_spool_hold_no_canary() {
    let world = agent_world();
    let mut command = world.command(&["run", "--exit-after", "0"]);
    command.env("AGENT_TELEMETRY", "local");
    world.run_ok(&mut command, &[]);
    world.assert_logged_locally(&["app_started", "agent_configured", "command", "app_stopped"]);
    world.assert_spooled_clean(world.command(&["run", "--exit-after", "0"]), &[]);
}

fn bench_world() -> World {
    World::new(env!("CARGO_BIN_EXE_bench"), "bench", "BENCH")
}

/// Writes a `bench` dataset file of canaries: one task scored, one failing with a message of
/// the user's; returns its path.
fn write_bench_dataset(world: &mut World) -> PathBuf {
    let dir = world
        .cwd
        .join(world.canaries.add("dataset directory", "CANARYdsdirB1"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{}.json",
        world.canaries.add("dataset name", "CANARYdatasetB2")
    ));
    let scored = world.canaries.add("environment name", "CANARYenvB3");
    let failing = world
        .canaries
        .add("failing environment name", "CANARYfailenvB4");
    let message = world.canaries.add("failure message", "CANARYmsgB5");
    let message_path = world
        .canaries
        .add("path in a failure message", "CANARYmsgpathB6");
    let tasks = json!({"tasks": [
        {"env": scored, "os": "linux", "outcome": "evaluated", "steps": 2, "reward": 1.0},
        {"env": failing, "os": "windows", "outcome": "fails", "stage": "step",
         "error": "action_error",
         "message": format!("{message} in /home/{message_path}/notes.txt with key {{api_key}}")},
    ]});
    std::fs::write(&path, tasks.to_string()).unwrap();
    world.canaries.value("dataset path", text_of(&path));
    path
}

#[test]
fn bench_leaks_no_canary() {
    let mut world = bench_world();
    let dataset = write_bench_dataset(&mut world);
    let agent = world.canaries.add("agent", "CANARYagentB7");
    let model = world.canaries.add("model", "CANARYmodelB8");
    let key = world.canaries.add("API key", "CANARYapikeyB9");
    let output_dir = world
        .cwd
        .join(world.canaries.add("output directory", "CANARYoutB10"));
    world.canaries.value("output path", text_of(&output_dir));
    let mut command = world.command(&[
        "run",
        "--dataset",
        text(&dataset),
        "--agent",
        &agent,
        "--model",
        &model,
        "--output",
        text(&output_dir),
        "--provider",
        "cloud",
        "--variants",
        "2",
        "--parallelism",
        "2",
    ]);
    command.env("BENCH_API_KEY", &key);
    // The user's own tasks and messages are printed to the user, with the key they hold.
    world.run_ok(
        &mut command,
        &[
            "environment name",
            "failing environment name",
            "failure message",
            "path in a failure message",
            "API key",
            "dataset directory",
            "dataset name",
            "output directory",
            "working directory",
        ],
    );
    // The built-in datasets' failures quote the key: it is shown, never sent.
    world.run_ok(
        &mut world.command(&["run", "--dataset", "bench-basic", "--api-key", &key]),
        &["API key"],
    );
    world.run_ok(
        &mut world.command(&["run", "--dataset", "bench-office"]),
        &[],
    );
    let prompt = world.canaries.add("prompt", "CANARYpromptB11");
    world.run_ok(
        &mut world.command(&["interact", "--env", "click-button", "--prompt", &prompt]),
        &["prompt"],
    );
    world.run_ok(
        &mut world.command(&["trace", text(&output_dir.join("trace.jsonl"))]),
        &["environment name", "failing environment name"],
    );
    world.run_ok(&mut world.command(&["platform", "list"]), &[]);
    // A dataset file that does not exist: the error names it to the user only.
    let missing = world.cwd.join(format!(
        "{}.json",
        world.canaries.add("missing dataset", "CANARYmissingB12")
    ));
    let output = world.run(
        &mut world.command(&["run", "--dataset", text(&missing)]),
        &["missing dataset", "HOME", "USER", "working directory"],
    );
    assert!(!output.status.success());
    world.run_debug(
        world.command(&["run", "--tasks", "2", "--agent", &agent, "--model", &model]),
        &[],
    );

    world.assert_received(&[
        "app_started",
        "batch_started",
        "task_started",
        "evaluation_completed",
        "task_failed",
        "batch_task_completed",
        "step_executed",
        "command",
        "app_stopped",
    ]);
    world.assert_no_leak();
}

#[test]
fn bench_local_log_and_spool_hold_no_canary() {
    let mut world = bench_world();
    let dataset = write_bench_dataset(&mut world);
    let mut command = world.command(&["run", "--dataset", text(&dataset)]);
    command.env("BENCH_TELEMETRY", "local");
    world.run_ok(
        &mut command,
        &[
            "environment name",
            "failing environment name",
            "failure message",
            "path in a failure message",
            "dataset directory",
            "dataset name",
            "working directory",
        ],
    );
    world.assert_logged_locally(&["batch_started", "task_failed", "command"]);
    world.assert_spooled_clean(
        world.command(&["run", "--dataset", text(&dataset)]),
        &[
            "environment name",
            "failing environment name",
            "failure message",
            "path in a failure message",
            "dataset directory",
            "dataset name",
            "working directory",
        ],
    );
}

fn api_world() -> World {
    World::new(env!("CARGO_BIN_EXE_api"), "api", "API")
}

/// The requests of every route, the error paths included, with canaries in the user's name,
/// key, dataset names, records, headers and paths.
fn api_requests(world: &mut World, server: &Server) {
    let c = &mut world.canaries;
    let key = "CANARYapikeyK2";
    let agent = format!(
        "{}/3.1 ({})",
        c.add("user-agent product", "CANARYclientK3"),
        c.add("user-agent comment", "CANARYuaK4")
    );
    let language = format!(
        "x-{}, en-GB;q=0.8",
        c.add("accept-language", "CANARYlangK5")
    );
    let client = [
        ("User-Agent", agent.as_str()),
        ("Accept-Language", language.as_str()),
    ];
    let with_key = [client[0], client[1], ("X-Api-Key", key)];
    let query = c.add("query string", "CANARYqueryK6");
    assert_eq!(server.request("GET", "/api/me", &with_key, None).0, 200);
    assert_eq!(
        server
            .request("GET", &format!("/api/me?q={query}"), &client, None)
            .0,
        200
    );
    let wrong = c.add("wrong API key", "CANARYwrongkeyK7");
    let wrong_key = [client[0], client[1], ("X-Api-Key", wrong.as_str())];
    assert_eq!(server.request("GET", "/api/me", &wrong_key, None).0, 401);

    let dataset = c.add("dataset name", "canarydsk8");
    let records = json!({"records": [
        {"text": c.add("record text", "CANARYrecordK9"),
         "annotation": c.add("annotation", "CANARYlabelK10"),
         "metadata": {c.add("metadata key", "CANARYmetakeyK11"): c.add("metadata value", "CANARYmetavalK12")}},
        {"text": "plain", "id": c.add("record id", "CANARYidK13")},
    ]})
    .to_string();
    let bulk = |dataset: &str, task: &str| format!("/api/datasets/{dataset}/{task}:bulk");
    assert_eq!(
        server
            .request(
                "POST",
                &bulk(&dataset, "text_classification"),
                &with_key,
                Some(&records)
            )
            .0,
        200
    );
    // Another task for the same dataset, an unknown task, an invalid name, a bad body.
    assert_eq!(
        server
            .request(
                "POST",
                &bulk(&dataset, "text2text"),
                &with_key,
                Some(&records)
            )
            .0,
        409
    );
    let task = c.add("task", "CANARYtaskK14");
    assert_eq!(
        server
            .request("POST", &bulk(&dataset, &task), &with_key, Some(&records))
            .0,
        422
    );
    let bad_name = c.add("invalid dataset name", "CANARYbadnameK15");
    assert_eq!(
        server
            .request(
                "POST",
                &bulk(&bad_name, "text2text"),
                &with_key,
                Some(&records)
            )
            .0,
        422
    );
    let body = json!({"records": c.add("malformed body", "CANARYbodyK16")}).to_string();
    assert_eq!(
        server
            .request(
                "POST",
                &bulk(&dataset, "text_classification"),
                &with_key,
                Some(&body)
            )
            .0,
        400
    );
    let route = c.add("unknown route", "CANARYrouteK17");
    assert_eq!(
        server
            .request("GET", &format!("/api/{route}"), &client, None)
            .0,
        404
    );
    let missing = c.add("unknown dataset", "canarymissingk18");
    assert_eq!(
        server
            .request("GET", &format!("/api/datasets/{missing}"), &client, None)
            .0,
        404
    );
    assert_eq!(server.request("DELETE", "/api/me", &client, None).0, 405);
}

/// `api serve --port 0` in `world`, as a user and key of canaries.
fn api_serve(world: &World, env: &[(&str, &str)]) -> Server {
    let mut command = world.command(&["serve", "--port", "0"]);
    command
        .env("API_USERNAME", "CANARYusernameK1")
        .env("API_KEY", "CANARYapikeyK2");
    for (name, value) in env {
        command.env(name, value);
    }
    Server::start(command)
}

fn api_canaries(world: &mut World) {
    world.canaries.add("user name", "CANARYusernameK1");
    world.canaries.add("API key", "CANARYapikeyK2");
}

#[test]
fn api_leaks_no_canary() {
    let mut world = api_world();
    api_canaries(&mut world);
    let server = api_serve(&world, &[]);
    api_requests(&mut world, &server);
    let output = server.stop("TERM");
    world.check_printed(&Command::new("api serve"), &output, &[]);
    world.assert_received(&[
        "app_started",
        "user_info_requested",
        "log_records_requested",
        "server_error_found",
        "command",
        "app_stopped",
    ]);

    // Debug mode prints each payload: none holds a canary.
    let before = world.sandbox.receiver.events().len();
    let server = api_serve(&world, &[("API_TELEMETRY_DEBUG", "1")]);
    api_requests(&mut world, &server);
    let output = server.stop("TERM");
    world.check_printed(&Command::new("api serve"), &output, &[]);
    world.check_debug(&output, before);
    world.assert_no_leak();
}

#[test]
fn api_local_log_and_spool_hold_no_canary() {
    let mut world = api_world();
    api_canaries(&mut world);
    let server = api_serve(&world, &[("API_TELEMETRY", "local")]);
    api_requests(&mut world, &server);
    let output = server.stop("TERM");
    world.check_printed(&Command::new("api serve"), &output, &[]);
    world.assert_logged_locally(&[
        "user_info_requested",
        "log_records_requested",
        "server_error_found",
        "command",
    ]);
    let refused = refused_origin();
    let server = api_serve(&world, &[("API_TELEMETRY_ENDPOINT", refused.as_str())]);
    api_requests(&mut world, &server);
    let output = server.stop("TERM");
    world.check_printed(&Command::new("api serve"), &output, &[]);
    world.assert_spool_clean();
}

/// An origin on 127.0.0.1 where nothing listens: connecting is refused.
fn refused_origin() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    format!("http://{}", listener.local_addr().expect("an address"))
}
