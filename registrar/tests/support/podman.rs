//! A real container engine for tests: Podman's Docker-compatible API
//! (`podman system service`) on a socket in a temp dir, with its storage,
//! network configuration and events in that dir too, so tests share no
//! state with each other or with the machine's own containers.
//!
//! Images are built locally (no registry is reachable): a rootfs with
//! busybox-static, `podman import`ed. Containers run on a bridge network
//! of the harness's own (its own subnet and interface), serve busybox's
//! `httpd`, and are removed on drop.
//!
//! One engine at a time, across every test process: the bridge network
//! is the machine's, so harnesses take a file lock for as long as they
//! live (tests in one binary then run one after the other).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/gosd-test:busybox";
pub const NETWORK: &str = "gosdtest";
const SUBNET: &str = "10.213.7.0/24";
const INTERFACE: &str = "gosdtest0";
/// The port every test container serves on (each has its own IP).
pub const PORT: u16 = 8080;

const INSTALL: &str = "the registrar's tests need podman, runc and busybox-static: \
    `apt-get install -y podman runc busybox-static` (Debian/Ubuntu; `scripts/test` does it as root)";

pub struct Engine {
    dir: tempfile::TempDir,
    service: Option<Child>,
    _one_at_a_time: File,
}

impl Engine {
    /// Starts an engine with the test image imported and the test network
    /// created.
    pub fn start() -> Self {
        let lock_path = std::env::temp_dir().join("gosd-registrar-podman-tests.lock");
        let lock = File::create(&lock_path).expect("create the engine lock file");
        // SAFETY: flock on a file descriptor we own; blocks until free.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(locked, 0, "flock {}", lock_path.display());
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("containers.conf"),
            // crun fails on this kind of machine's hybrid cgroups; the
            // default rlimits are refused; journald may be absent.
            "[containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        )
        .expect("write containers.conf");
        let mut engine = Self {
            dir,
            service: None,
            _one_at_a_time: lock,
        };
        engine.import_image();
        engine.create_network();
        engine.start_service();
        engine
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    /// The `DOCKER_HOST` of this engine.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// `podman` with this engine's storage and settings (local mode: it
    /// works while the API service is down, as `docker` would not).
    pub fn podman(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("networks"));
        cmd
    }

    /// Runs `podman args…`, panics with its output unless it succeeds;
    /// returns its stdout, trimmed.
    pub fn run_podman(&self, args: &[&str]) -> String {
        let out = match self.podman().args(args).stdin(Stdio::null()).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL}"),
            Err(e) => panic!("podman {args:?}: {e}"),
        };
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts a container named `name` with `labels` that serves `body`
    /// at `/` on [`PORT`]; returns its full id.
    pub fn serve(&self, name: &str, labels: &[(&str, &str)], body: &str) -> String {
        self.serve_with(name, labels, body, &[])
    }

    /// [`serve`](Self::serve) with more `podman run` options.
    pub fn serve_with(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        body: &str,
        options: &[&str],
    ) -> String {
        let mut args = vec![
            "run".to_owned(),
            "-d".into(),
            "--name".into(),
            name.into(),
            "--network".into(),
            NETWORK.into(),
            "-e".into(),
            format!("BODY={body}"),
        ];
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.extend(options.iter().map(|o| o.to_string()));
        args.extend([
            IMAGE.into(),
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            format!(
                "printf %s \"$BODY\" > /www/index.html && exec /bin/busybox httpd -f -p {PORT} -h /www"
            ),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_podman(&args)
    }

    /// The first 12 hex digits of a container's id.
    pub fn short(id: &str) -> String {
        id[..12].to_owned()
    }

    /// The container's IP on the test network.
    pub fn ip(&self, name: &str) -> String {
        self.run_podman(&[
            "inspect",
            "--format",
            &format!("{{{{.NetworkSettings.Networks.{NETWORK}.IPAddress}}}}"),
            name,
        ])
    }

    /// Whether the container is running now.
    pub fn running(&self, name: &str) -> bool {
        self.run_podman(&["inspect", "--format", "{{.State.Running}}", name]) == "true"
    }

    /// Kills the API service at once (the containers keep running: conmon
    /// holds them, as dockerd's shim does).
    pub fn stop_service(&mut self) {
        if let Some(mut s) = self.service.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts the API service on the same socket, and waits until it answers.
    pub fn start_service(&mut self) {
        assert!(self.service.is_none(), "the service is already running");
        let child = self
            .podman()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", self.socket().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{INSTALL} ({e})"));
        self.service = Some(child);
        let started = Instant::now();
        while !ping(&self.socket()) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "podman system service did not answer /_ping within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn import_image(&self) {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("busybox is missing: {INSTALL}"));
        let rootfs = self.dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("rootfs/bin");
        std::fs::create_dir_all(rootfs.join("www")).expect("rootfs/www");
        std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        let tar = self.dir.path().join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(status.success(), "tar the rootfs");
        self.run_podman(&["import", tar.to_str().expect("utf-8 temp path"), IMAGE]);
    }

    /// A bridge network of the harness's own: its own subnet and interface
    /// name, so it touches neither podman's default network nor another
    /// engine's. (podman 4.3 has no --interface-name: the name is set in
    /// the network's file.)
    fn create_network(&self) {
        self.run_podman(&[
            "network",
            "create",
            "--subnet",
            SUBNET,
            "--disable-dns",
            NETWORK,
        ]);
        let file = self
            .dir
            .path()
            .join("networks")
            .join(format!("{NETWORK}.json"));
        let json = std::fs::read_to_string(&file).expect("read the network file");
        let renamed: String = json
            .lines()
            .map(|line| {
                if line.contains("\"network_interface\"") {
                    format!("     \"network_interface\": \"{INTERFACE}\",")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&file, renamed).expect("write the network file");
    }
}

/// Whether the API answers `GET /_ping` on `socket`.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.") && reply.contains(" 200 ")
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self
            .podman()
            .args(["rm", "--force", "--all", "--time", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.stop_service();
        // containers/storage bind-mounts its overlay home onto itself, and
        // does not always undo it: detach it before the temp dir goes.
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(self.dir.path().join("storage/overlay"))
            .stderr(Stdio::null())
            .status();
    }
}
