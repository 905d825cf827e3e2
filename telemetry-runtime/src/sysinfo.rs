//! What kind of machine the application runs on, read once from a few small system files.
//!
//! Every read is bounded and every failure only leaves a part unknown. Raw text from the
//! machine is sent only where it names the software (os-release names and versions, the kernel
//! release); everything else is reduced to a fixed label, a count or a coarse bucket.

use std::fs::File;
use std::io::Read as _;
use std::num::NonZero;
use std::path::Path;

use crate::config::Env;
use crate::json::ObjectWriter;

/// The most bytes read of os-release, `/proc/cpuinfo` and similar multi-line files.
const MAX_FILE_BYTES: u64 = 64 << 10;
/// The most bytes read of a one-value file such as `/proc/sys/kernel/osrelease`.
const MAX_VALUE_BYTES: u64 = 512;
/// The most characters kept of any value.
const MAX_VALUE_CHARS: usize = 128;

/// What kind of machine the application runs on, sent with every event.
///
/// Collected: the operating system's name, version and family (from `os-release` on Linux),
/// the kernel's name and release, the CPU architecture, whether the machine is a virtual one
/// and of which kind, whether the process runs in a container and of which kind, the number of
/// CPUs available to the process, the total memory as a coarse range, and the version of the
/// compiler that built the application.
///
/// Never collected: the host name, user names, home, working or any other directories, IP or
/// MAC addresses, serial numbers, machine ids or any other identifier. Hardware vendor strings
/// and cgroup paths are read only to pick a fixed label and are never sent themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemInfo {
    /// The operating system's name, such as `Debian GNU/Linux` (os-release `NAME`), or else a
    /// name for the platform such as `Linux`, `macOS` or `Windows`.
    pub os_name: String,
    /// The operating system's version, such as `12` (os-release `VERSION_ID`, else `VERSION`).
    pub os_version: Option<String>,
    /// The operating system's identifier, such as `debian` (os-release `ID`).
    pub os_id: Option<String>,
    /// The identifiers of related systems, such as `debian` on Ubuntu (os-release `ID_LIKE`).
    pub os_id_like: Option<String>,
    /// The kernel's name, such as `Linux` or `Darwin`.
    pub kernel_name: String,
    /// The kernel's release, such as `6.1.0-18-amd64`; known on Linux only.
    pub kernel_release: Option<String>,
    /// The CPU architecture the application was built for, such as `x86_64` or `aarch64`.
    pub arch: &'static str,
    /// The hypervisor: `kvm`, `qemu`, `vmware`, `xen`, `hyper-v`, `virtualbox`, `parallels`,
    /// `bhyve`, `apple`, `amazon` or `google`; `other` for a virtual machine of another kind,
    /// `none` for a physical machine, or `unknown` when nothing could be read.
    pub virtualization: String,
    /// The container: `docker`, `podman`, `kubernetes`, `lxc`, `containerd`, `systemd-nspawn`
    /// or `rkt`, or `none`. WSL is not a container: it shows in the kernel release.
    pub container: String,
    /// The number of CPUs the process may use, or 0 if unknown.
    pub cpu_count: usize,
    /// The total memory as a range: `<1 GiB`, `1-2 GiB`, `2-4 GiB`, `4-8 GiB`, `8-16 GiB`,
    /// `16-32 GiB`, `32-64 GiB`, `64-128 GiB`, `128-256 GiB` or `>=256 GiB`, each including its
    /// lower bound, or `unknown`. The total excludes memory the firmware and kernel reserve,
    /// so a machine with 16 GiB installed reports `8-16 GiB`.
    pub memory: &'static str,
    /// The version of the compiler that built the application, such as `1.95.0`, or
    /// `unknown`.
    pub rustc_version: &'static str,
}

impl SystemInfo {
    /// Reads this machine. Cheap (a few small files), never panics and never fails: parts that
    /// cannot be read are `unknown` or `None`.
    pub fn collect() -> SystemInfo {
        // Only Unix-like systems keep these files at fixed absolute paths; elsewhere `/` is the
        // root of the current drive, which may hold anything.
        let root = if cfg!(unix) {
            Some(Path::new("/"))
        } else {
            None
        };
        Self::gather(Files { root }, &Env::Process)
    }

    /// `"container"` when the process runs in a container, else `"local"`.
    pub fn environment(&self) -> &'static str {
        if self.container == "none" {
            "local"
        } else {
            "container"
        }
    }

    /// Reads the files below `root` instead of `/`, and the variables from `env`. The CPU count
    /// and the compiler version are still this process's.
    #[cfg(test)]
    pub(crate) fn collect_from(root: &Path, env: &Env) -> SystemInfo {
        Self::gather(Files { root: Some(root) }, env)
    }

    fn gather(files: Files<'_>, env: &Env) -> SystemInfo {
        let release = files
            .lines("etc/os-release")
            .or_else(|| files.lines("usr/lib/os-release"))
            .map(|text| OsRelease::parse(&text))
            .unwrap_or_default();
        let kernel_release = files
            .value("proc/sys/kernel/osrelease")
            .and_then(|text| text.split_whitespace().next().map(str::to_owned));
        SystemInfo {
            os_name: release
                .name
                .unwrap_or_else(|| os_name(std::env::consts::OS).to_owned()),
            os_version: release.version_id.or(release.version),
            os_id: release.id,
            os_id_like: release.id_like,
            kernel_name: files
                .value("proc/sys/kernel/ostype")
                .unwrap_or_else(|| kernel_name(std::env::consts::OS).to_owned()),
            virtualization: virtualization(files, kernel_release.as_deref()).to_owned(),
            kernel_release,
            arch: std::env::consts::ARCH,
            container: container(files, env).unwrap_or("none").to_owned(),
            cpu_count: std::thread::available_parallelism().map_or(0, NonZero::get),
            memory: files
                .lines("proc/meminfo")
                .and_then(|text| mem_total_kib(&text))
                .map_or("unknown", memory_bucket),
            rustc_version: option_env!("TELEMETRY_RUSTC_VERSION").unwrap_or("unknown"),
        }
    }

    /// Writes every field as a property of an event: `os_name`, `os_version`, `os_id`,
    /// `os_id_like`, `kernel_name`, `kernel_release`, `arch`, `virtualization`, `container`,
    /// `environment`, `cpu_count`, `memory` and `rustc_version`; `None` is written as `null`.
    pub(crate) fn write_properties(&self, object: &mut ObjectWriter<'_>) {
        fn optional(object: &mut ObjectWriter<'_>, key: &'static str, value: Option<&str>) {
            match value {
                Some(value) => object.key(key).string(value),
                None => object.key(key).null(),
            }
        }
        object.key("os_name").string(&self.os_name);
        optional(object, "os_version", self.os_version.as_deref());
        optional(object, "os_id", self.os_id.as_deref());
        optional(object, "os_id_like", self.os_id_like.as_deref());
        object.key("kernel_name").string(&self.kernel_name);
        optional(object, "kernel_release", self.kernel_release.as_deref());
        object.key("arch").string(self.arch);
        object.key("virtualization").string(&self.virtualization);
        object.key("container").string(&self.container);
        object.key("environment").string(self.environment());
        object.key("cpu_count").int(self.cpu_count);
        object.key("memory").string(self.memory);
        object.key("rustc_version").string(self.rustc_version);
    }
}

/// The files of one machine, below `root`; with no root, none can be read.
#[derive(Clone, Copy)]
struct Files<'a> {
    root: Option<&'a Path>,
}

impl Files<'_> {
    /// At most `limit` bytes of a regular file, without a line cut short by the limit. Anything
    /// that is not a regular file, such as a FIFO that would block, is not read.
    fn read(self, relative: &str, limit: u64) -> Option<String> {
        let path = self.root?.join(relative);
        if !std::fs::metadata(&path).ok()?.is_file() {
            return None;
        }
        let mut bytes = Vec::new();
        File::open(&path)
            .ok()?
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() as u64 > limit {
            let end = bytes.iter().rposition(|&b| b == b'\n').unwrap_or(0);
            bytes.truncate(end);
        }
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The bounded text of a multi-line file.
    fn lines(self, relative: &str) -> Option<String> {
        self.read(relative, MAX_FILE_BYTES)
    }

    /// The first line of a one-value file, cleaned, if not blank.
    fn value(self, relative: &str) -> Option<String> {
        clean(self.read(relative, MAX_VALUE_BYTES)?.lines().next()?)
    }

    fn exists(self, relative: &str) -> bool {
        self.root
            .is_some_and(|root| std::fs::symlink_metadata(root.join(relative)).is_ok())
    }
}

/// `text` without control characters or surrounding blanks, cut to [`MAX_VALUE_CHARS`], if
/// anything is left.
fn clean(text: &str) -> Option<String> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_VALUE_CHARS)
        .collect();
    let cleaned = cleaned.trim_end();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

/// The fields of os-release that are sent. See `os-release(5)`.
#[derive(Debug, Default, PartialEq, Eq)]
struct OsRelease {
    name: Option<String>,
    version_id: Option<String>,
    version: Option<String>,
    id: Option<String>,
    id_like: Option<String>,
}

impl OsRelease {
    /// Reads `KEY=value` lines, skipping blank lines, comments and lines that are not valid
    /// assignments. A later assignment replaces an earlier one, as in a shell.
    fn parse(text: &str) -> OsRelease {
        let mut release = OsRelease::default();
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, raw)) = line.split_once('=') else {
                continue;
            };
            let slot = match key {
                "NAME" => &mut release.name,
                "VERSION_ID" => &mut release.version_id,
                "VERSION" => &mut release.version,
                "ID" => &mut release.id,
                "ID_LIKE" => &mut release.id_like,
                _ => continue,
            };
            if let Some(value) = unquote(raw) {
                *slot = clean(&value);
            }
        }
        release
    }
}

/// The value of a shell-style assignment: unquoted text up to the first blank, `"double
/// quoted"` text in which a backslash escapes `"`, `\`, `$` and `` ` ``, and `'single quoted'`
/// text taken literally, in any sequence. `None` when a quote is not closed.
fn unquote(raw: &str) -> Option<String> {
    let mut value = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        escaped @ ('"' | '\\' | '$' | '`') => value.push(escaped),
                        other => {
                            value.push('\\');
                            value.push(other);
                        }
                    },
                    other => value.push(other),
                }
            },
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    other => value.push(other),
                }
            },
            '\\' => value.extend(chars.next()),
            // Unquoted blanks end the value; whatever follows (a comment) is ignored.
            blank if blank.is_whitespace() => break,
            other => value.push(other),
        }
    }
    Some(value)
}

/// A name for the platform when os-release does not give one.
fn os_name(os: &'static str) -> &'static str {
    match os {
        "linux" => "Linux",
        "macos" => "macOS",
        "windows" => "Windows",
        "ios" => "iOS",
        "android" => "Android",
        "freebsd" => "FreeBSD",
        "netbsd" => "NetBSD",
        "openbsd" => "OpenBSD",
        "dragonfly" => "DragonFly BSD",
        "illumos" => "illumos",
        "solaris" => "Solaris",
        "haiku" => "Haiku",
        "fuchsia" => "Fuchsia",
        "redox" => "Redox",
        other => other,
    }
}

/// The kernel's name, as `uname -s` prints it, when `/proc` does not give one.
fn kernel_name(os: &'static str) -> &'static str {
    match os {
        "linux" | "android" => "Linux",
        "macos" | "ios" => "Darwin",
        "windows" => "Windows NT",
        "illumos" | "solaris" => "SunOS",
        "dragonfly" => "DragonFly",
        other => os_name(other),
    }
}

/// The DMI strings that name a machine's maker, as in `/sys/class/dmi/id`. They are only mapped
/// to a label, never sent. The serial numbers and UUID beside them are never read.
#[derive(Debug, Default)]
struct Dmi {
    sys_vendor: Option<String>,
    product_name: Option<String>,
    board_vendor: Option<String>,
    bios_vendor: Option<String>,
}

/// Prefixes of DMI strings that only virtual machines carry, checked in the product name, the
/// system vendor, the board vendor and the BIOS vendor in that order.
const VIRTUAL_VENDORS: &[(&str, &str)] = &[
    ("KVM", "kvm"),
    ("OpenStack", "kvm"),
    ("KubeVirt", "kvm"),
    ("QEMU", "qemu"),
    ("VMware", "vmware"),
    ("VMW", "vmware"),
    ("Xen", "xen"),
    ("Parallels", "parallels"),
    ("BHYVE", "bhyve"),
    ("Hyper-V", "hyper-v"),
    ("Apple Virtualization", "apple"),
];

impl Dmi {
    fn read(files: Files<'_>) -> Dmi {
        let field = |name: &str| files.value(&format!("sys/class/dmi/id/{name}"));
        Dmi {
            sys_vendor: field("sys_vendor"),
            product_name: field("product_name"),
            board_vendor: field("board_vendor"),
            bios_vendor: field("bios_vendor"),
        }
    }

    fn readable(&self) -> bool {
        self.sys_vendor.is_some()
            || self.product_name.is_some()
            || self.board_vendor.is_some()
            || self.bios_vendor.is_some()
    }

    /// The hypervisor these strings name, if any. `hypervisor_flag` is whether the CPU says it
    /// runs under one, when that is known.
    fn hypervisor(&self, hypervisor_flag: Option<bool>) -> Option<&'static str> {
        let product = self.product_name.as_deref().unwrap_or("");
        let sys_vendor = self.sys_vendor.as_deref().unwrap_or("");
        let fields = [
            product,
            sys_vendor,
            self.board_vendor.as_deref().unwrap_or(""),
            self.bios_vendor.as_deref().unwrap_or(""),
        ];
        // Makers of physical machines as well: only these products are virtual. A Surface is
        // also made by "Microsoft Corporation", a Chromebook by "Google".
        if sys_vendor == "Microsoft Corporation" && product == "Virtual Machine" {
            return Some("hyper-v");
        }
        if product.starts_with("Google Compute Engine") {
            return Some("google");
        }
        if fields.iter().any(|f| f.starts_with("Amazon EC2")) {
            // Bare-metal instances carry the same vendor; their type ends in `.metal`, and on
            // x86 their CPUs do not report a hypervisor.
            let metal = product.ends_with(".metal") || hypervisor_flag == Some(false);
            return (!metal).then_some("amazon");
        }
        // VirtualBox: Oracle also makes physical servers, so its name alone is not enough.
        if product.starts_with("VirtualBox") || fields.iter().any(|f| f.starts_with("innotek GmbH"))
        {
            return Some("virtualbox");
        }
        fields.iter().find_map(|field| {
            VIRTUAL_VENDORS
                .iter()
                .find(|(prefix, _)| field.starts_with(prefix))
                .map(|(_, label)| *label)
        })
    }
}

/// Whether the first `flags` line of `/proc/cpuinfo` lists `hypervisor`; `None` without such a
/// line, as on most CPUs other than x86.
fn hypervisor_flag(cpuinfo: &str) -> Option<bool> {
    cpuinfo.lines().find_map(|line| {
        let (key, flags) = line.split_once(':')?;
        (key.trim() == "flags").then(|| flags.split_whitespace().any(|flag| flag == "hypervisor"))
    })
}

/// The hypervisor, `other`, `none` or `unknown`; see [`SystemInfo::virtualization`].
fn virtualization(files: Files<'_>, kernel_release: Option<&str>) -> &'static str {
    let dmi = Dmi::read(files);
    let flag = files
        .lines("proc/cpuinfo")
        .and_then(|text| hypervisor_flag(&text));
    if let Some(label) = dmi.hypervisor(flag) {
        return label;
    }
    // Virtual machines without DMI, common on ARM, may name their hypervisor in the device tree.
    let device_tree = files.read("proc/device-tree/hypervisor/compatible", MAX_VALUE_BYTES);
    if let Some(compatible) = &device_tree {
        // A list of NUL-terminated strings such as `linux,kvm`.
        for entry in compatible.split('\0').map(str::trim) {
            match entry {
                "linux,kvm" => return "kvm",
                "vmware" => return "vmware",
                _ if entry.starts_with("xen") => return "xen",
                _ => {}
            }
        }
    }
    let hypervisor_type = files.value("sys/hypervisor/type");
    if hypervisor_type.as_deref() == Some("xen") {
        // Xen's control domain runs on the hardware, unlike its guests.
        let control_domain = files
            .lines("proc/xen/capabilities")
            .is_some_and(|text| text.contains("control_d"));
        return if control_domain { "none" } else { "xen" };
    }
    if flag == Some(true) {
        // WSL 2 runs in a Hyper-V virtual machine that has no DMI strings.
        let wsl = kernel_release.is_some_and(|release| {
            let release = release.to_ascii_lowercase();
            release.contains("microsoft") || release.contains("wsl")
        });
        return if wsl { "hyper-v" } else { "other" };
    }
    if dmi.readable() || flag.is_some() || device_tree.is_some() || hypervisor_type.is_some() {
        "none"
    } else {
        "unknown"
    }
}

/// The container, from the container manager's own markers first and then from the cgroups of
/// the first process and of this one.
fn container(files: Files<'_>, env: &Env) -> Option<&'static str> {
    let cgroups: Vec<String> = ["proc/1/cgroup", "proc/self/cgroup"]
        .iter()
        .filter_map(|path| files.lines(path))
        .collect();
    let from_cgroups = |kind: CgroupKind| {
        cgroups
            .iter()
            .any(|text| cgroup_components(text).any(|c| kind.matches(c)))
    };
    // Kubernetes first: its pods run on one of the other runtimes.
    if env.text("KUBERNETES_SERVICE_HOST").is_some() || from_cgroups(CgroupKind::Kubernetes) {
        return Some("kubernetes");
    }
    let manager = env
        .text("container")
        .or_else(|| files.value("run/systemd/container"));
    if let Some(kind) = manager.as_deref().and_then(container_manager) {
        return Some(kind);
    }
    if files.exists("run/.containerenv") {
        return Some("podman");
    }
    if files.exists(".dockerenv") {
        return Some("docker");
    }
    [
        (CgroupKind::Podman, "podman"),
        (CgroupKind::Docker, "docker"),
        (CgroupKind::Lxc, "lxc"),
        (CgroupKind::Containerd, "containerd"),
    ]
    .into_iter()
    .find(|(kind, _)| from_cgroups(*kind))
    .map(|(_, label)| label)
}

/// A container from the `container` variable that container managers set for the processes
/// they start (systemd's convention), or from `/run/systemd/container`. Values other than
/// these are ignored: the variable's text is never sent.
fn container_manager(value: &str) -> Option<&'static str> {
    match value.trim().to_ascii_lowercase().as_str() {
        "docker" => Some("docker"),
        "podman" => Some("podman"),
        "lxc" | "lxc-libvirt" => Some("lxc"),
        "systemd-nspawn" => Some("systemd-nspawn"),
        "rkt" => Some("rkt"),
        _ => None,
    }
}

/// The components of the paths in a `/proc/<pid>/cgroup` file, whose lines are
/// `hierarchy:controllers:path`.
fn cgroup_components(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .flat_map(|path| path.split('/'))
        .filter(|component| !component.is_empty())
}

/// The cgroup names a container runtime gives its containers, with the cgroupfs driver (a
/// directory named after the runtime) or the systemd one (a `<runtime>-<id>.scope` unit).
/// Matching whole components keeps `docker.service` (the daemon) or an application whose
/// name merely contains a runtime's from counting.
#[derive(Clone, Copy)]
enum CgroupKind {
    Kubernetes,
    Podman,
    Docker,
    Lxc,
    Containerd,
}

impl CgroupKind {
    fn matches(self, component: &str) -> bool {
        match self {
            // `kubepods`, `kubepods.slice`, `kubepods-burstable.slice`, ...
            CgroupKind::Kubernetes => component.starts_with("kubepods"),
            CgroupKind::Podman => component.starts_with("libpod-") || component == "libpod_parent",
            CgroupKind::Docker => {
                component == "docker"
                    || (component.starts_with("docker-") && component.ends_with(".scope"))
            }
            CgroupKind::Lxc => component == "lxc" || component.starts_with("lxc.payload"),
            CgroupKind::Containerd => {
                component == "containerd" || component.starts_with("cri-containerd")
            }
        }
    }
}

/// `MemTotal` in `/proc/meminfo`, in KiB; `None` when missing or zero.
fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?;
    let mut words = line.split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        None | Some("kB") => (kib > 0).then_some(kib),
        Some(_) => None,
    }
}

/// The range of [`SystemInfo::memory`] that `kib` falls in.
fn memory_bucket(kib: u64) -> &'static str {
    const GIB: u64 = 1 << 20;
    const BUCKETS: &[(u64, &str)] = &[
        (1, "<1 GiB"),
        (2, "1-2 GiB"),
        (4, "2-4 GiB"),
        (8, "4-8 GiB"),
        (16, "8-16 GiB"),
        (32, "16-32 GiB"),
        (64, "32-64 GiB"),
        (128, "64-128 GiB"),
        (256, "128-256 GiB"),
    ];
    BUCKETS
        .iter()
        .find(|(below_gib, _)| kib < below_gib * GIB)
        .map_or(">=256 GiB", |(_, label)| label)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::json::JsonBuf;

    /// A machine made of `files` (path below the root, content).
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    fn machine_with_env(files: &[(&str, &str)], env: &[(&str, &str)]) -> SystemInfo {
        let dir = tree(files);
        SystemInfo::collect_from(dir.path(), &Env::from_pairs(env))
    }

    fn machine(files: &[(&str, &str)]) -> SystemInfo {
        machine_with_env(files, &[])
    }

    const DEBIAN: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"#;

    const UBUNTU: &str = "PRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nNAME=\"Ubuntu\"\n\
        VERSION_ID=\"24.04\"\nVERSION=\"24.04.1 LTS (Noble Numbat)\"\nID=ubuntu\n\
        ID_LIKE=debian\nUBUNTU_CODENAME=noble\n";

    const DELL: &[(&str, &str)] = &[
        ("sys/class/dmi/id/sys_vendor", "Dell Inc.\n"),
        ("sys/class/dmi/id/product_name", "PowerEdge R740\n"),
        ("sys/class/dmi/id/board_vendor", "Dell Inc.\n"),
        ("sys/class/dmi/id/bios_vendor", "Dell Inc.\n"),
    ];

    const CPUINFO_VM: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
        flags\t\t: fpu vme de pse tsc msr hypervisor lahf_lm\n\n";
    const CPUINFO_METAL: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
        flags\t\t: fpu vme de pse tsc msr lahf_lm\n\n";

    #[test]
    fn debian_os_release_with_quoted_values() {
        let info = machine(&[("etc/os-release", DEBIAN)]);
        assert_eq!(info.os_name, "Debian GNU/Linux");
        assert_eq!(info.os_version.as_deref(), Some("12"));
        assert_eq!(info.os_id.as_deref(), Some("debian"));
        assert_eq!(info.os_id_like, None);
    }

    #[test]
    fn ubuntu_os_release_names_its_family() {
        let info = machine(&[("usr/lib/os-release", UBUNTU)]);
        assert_eq!(info.os_name, "Ubuntu");
        assert_eq!(info.os_version.as_deref(), Some("24.04"));
        assert_eq!(info.os_id.as_deref(), Some("ubuntu"));
        assert_eq!(info.os_id_like.as_deref(), Some("debian"));
    }

    #[test]
    fn etc_os_release_wins_over_usr_lib() {
        let info = machine(&[("etc/os-release", DEBIAN), ("usr/lib/os-release", UBUNTU)]);
        assert_eq!(info.os_id.as_deref(), Some("debian"));
    }

    #[test]
    fn os_release_escapes_comments_and_odd_lines() {
        let text = "# a comment\n\
            \n\
            \x20  # an indented comment\n\
            NAME=\"Acme \\\"Road\\\" \\\\ \\$HOME \\`x\\` \\n Linux\"\n\
            ID='acme'\n\
            ID_LIKE=\"rhel fedora\" # trailing comment\n\
            VERSION=1.0\\ beta\r\n\
            not an assignment\n\
            =nokey\n\
            ID=acme2\n\
            VERSION_ID=\"unterminated\n";
        let release = OsRelease::parse(text);
        assert_eq!(
            release,
            OsRelease {
                name: Some("Acme \"Road\" \\ $HOME `x` \\n Linux".to_owned()),
                version_id: None,
                version: Some("1.0 beta".to_owned()),
                id: Some("acme2".to_owned()),
                id_like: Some("rhel fedora".to_owned()),
            }
        );
        let info = machine(&[("etc/os-release", text)]);
        assert_eq!(info.os_version.as_deref(), Some("1.0 beta"));
    }

    #[test]
    fn values_are_joined_unquoted_and_cleaned() {
        assert_eq!(unquote("'a b'\"c d\"e").as_deref(), Some("a bc de"));
        assert_eq!(unquote("plain trailing").as_deref(), Some("plain"));
        assert_eq!(unquote("'it''s'").as_deref(), Some("its"));
        assert_eq!(unquote("\"open").as_deref(), None);
        assert_eq!(unquote("'open").as_deref(), None);
        assert_eq!(unquote("\"\\").as_deref(), None);
        assert_eq!(clean("  a\u{7}b\u{1b}[31m  "), Some("ab[31m".to_owned()));
        assert_eq!(clean(" \t "), None);
        let release = OsRelease::parse("ID=\"\"\nNAME=''\n");
        assert_eq!(release, OsRelease::default());
    }

    #[test]
    fn a_hostile_os_release_is_bounded() {
        // One value far longer than what is kept.
        let long = format!("NAME=\"{}\"\nID=x\n", "N".repeat(10_000));
        let info = machine(&[("etc/os-release", &long)]);
        assert_eq!(info.os_name, "N".repeat(MAX_VALUE_CHARS));
        assert_eq!(info.os_id.as_deref(), Some("x"));

        // A file of many megabytes: only its first lines are read, and a line cut short by
        // the limit is dropped rather than read as a value.
        let mut huge = String::from("ID=first\n");
        huge.push_str(&"# filler line\n".repeat(1_000));
        huge.push_str(&format!("NAME=\"{}\"\n", "x".repeat(8 << 20)));
        huge.push_str("ID=last\n");
        let info = machine(&[("etc/os-release", &huge)]);
        assert_eq!(info.os_id.as_deref(), Some("first"));
        assert_eq!(info.os_name, os_name(std::env::consts::OS));

        // Bytes that are not UTF-8 are replaced, not fatal.
        let dir = tree(&[]);
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/os-release"), b"ID=a\xffb\nNAME=Ok\n").unwrap();
        let info = SystemInfo::collect_from(dir.path(), &Env::from_pairs(&[]));
        assert_eq!(info.os_id.as_deref(), Some("a\u{fffd}b"));
        assert_eq!(info.os_name, "Ok");
    }

    #[test]
    fn version_falls_back_to_version() {
        let info = machine(&[("etc/os-release", "NAME=Arch\nVERSION=\"rolling\"\n")]);
        assert_eq!(info.os_version.as_deref(), Some("rolling"));
    }

    #[test]
    fn an_empty_root_gives_defaults() {
        let info = machine(&[]);
        assert_eq!(info.os_name, os_name(std::env::consts::OS));
        assert_eq!(info.os_version, None);
        assert_eq!(info.os_id, None);
        assert_eq!(info.os_id_like, None);
        assert_eq!(info.kernel_name, kernel_name(std::env::consts::OS));
        assert_eq!(info.kernel_release, None);
        assert_eq!(info.arch, std::env::consts::ARCH);
        assert_eq!(info.virtualization, "unknown");
        assert_eq!(info.container, "none");
        assert_eq!(info.environment(), "local");
        assert_eq!(info.memory, "unknown");
    }

    #[test]
    fn kernel_from_proc() {
        let info = machine(&[
            ("proc/sys/kernel/ostype", "Linux\n"),
            ("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n"),
        ]);
        assert_eq!(info.kernel_name, "Linux");
        assert_eq!(info.kernel_release.as_deref(), Some("6.1.0-18-amd64"));
    }

    #[test]
    fn platform_names_without_os_release() {
        assert_eq!(os_name("linux"), "Linux");
        assert_eq!(os_name("macos"), "macOS");
        assert_eq!(os_name("windows"), "Windows");
        assert_eq!(os_name("freebsd"), "FreeBSD");
        assert_eq!(kernel_name("macos"), "Darwin");
        assert_eq!(kernel_name("windows"), "Windows NT");
        assert_eq!(kernel_name("freebsd"), "FreeBSD");
    }

    fn dmi(sys_vendor: &str, product_name: &str) -> [(&'static str, String); 2] {
        [
            ("sys/class/dmi/id/sys_vendor", format!("{sys_vendor}\n")),
            ("sys/class/dmi/id/product_name", format!("{product_name}\n")),
        ]
    }

    fn virtualization_of(files: &[(&str, String)]) -> String {
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        machine(&files).virtualization
    }

    #[test]
    fn hypervisors_from_dmi() {
        let cases = [
            ("QEMU", "Standard PC (Q35 + ICH9, 2009)", "qemu"),
            ("Red Hat", "KVM", "kvm"),
            ("OpenStack Foundation", "OpenStack Nova", "kvm"),
            ("VMware, Inc.", "VMware Virtual Platform", "vmware"),
            ("Xen", "HVM domU", "xen"),
            ("Microsoft Corporation", "Virtual Machine", "hyper-v"),
            ("innotek GmbH", "VirtualBox", "virtualbox"),
            (
                "Parallels Software International Inc.",
                "Parallels Virtual Platform",
                "parallels",
            ),
            ("FreeBSD", "BHYVE", "bhyve"),
            ("Amazon EC2", "m5.large", "amazon"),
            ("Google", "Google Compute Engine", "google"),
            (
                "Apple Inc.",
                "Apple Virtualization Generic Platform",
                "apple",
            ),
            // Makers of physical machines.
            ("Dell Inc.", "PowerEdge R740", "none"),
            ("Microsoft Corporation", "Surface Pro 7", "none"),
            ("Google", "Eve", "none"),
            ("Oracle Corporation", "ORACLE SERVER X8-2", "none"),
            ("Amazon EC2", "i3.metal", "none"),
        ];
        for (vendor, product, expected) in cases {
            assert_eq!(
                virtualization_of(&dmi(vendor, product)),
                expected,
                "{vendor} / {product}"
            );
        }
    }

    #[test]
    fn virtualbox_by_its_board_under_oracle() {
        let files = [
            (
                "sys/class/dmi/id/sys_vendor",
                "Oracle Corporation".to_owned(),
            ),
            ("sys/class/dmi/id/product_name", "VirtualBox".to_owned()),
            (
                "sys/class/dmi/id/board_vendor",
                "Oracle Corporation".to_owned(),
            ),
        ];
        assert_eq!(virtualization_of(&files), "virtualbox");
    }

    #[test]
    fn amazon_without_a_hypervisor_flag_is_bare_metal() {
        let mut files = dmi("Amazon EC2", "c5.large").to_vec();
        files.push(("proc/cpuinfo", CPUINFO_METAL.to_owned()));
        assert_eq!(virtualization_of(&files), "none");
        files.pop();
        files.push(("proc/cpuinfo", CPUINFO_VM.to_owned()));
        assert_eq!(virtualization_of(&files), "amazon");
    }

    #[test]
    fn physical_dmi_without_hypervisor_flag_is_none() {
        let mut files = DELL.to_vec();
        files.push(("proc/cpuinfo", CPUINFO_METAL));
        assert_eq!(machine(&files).virtualization, "none");
    }

    #[test]
    fn unknown_vendor_with_hypervisor_flag_is_other() {
        let mut files = vec![("sys/class/dmi/id/sys_vendor", "DigitalOcean\n")];
        files.push(("proc/cpuinfo", CPUINFO_VM));
        assert_eq!(machine(&files).virtualization, "other");
    }

    #[test]
    fn hypervisor_flag_without_dmi() {
        assert_eq!(
            machine(&[("proc/cpuinfo", CPUINFO_VM)]).virtualization,
            "other"
        );
        assert_eq!(
            machine(&[("proc/cpuinfo", CPUINFO_METAL)]).virtualization,
            "none"
        );
        // An ARM cpuinfo has no flags line: nothing is known.
        let arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm\n";
        assert_eq!(machine(&[("proc/cpuinfo", arm)]).virtualization, "unknown");
        // WSL 2 has no DMI but a kernel that names it.
        let wsl = machine(&[
            ("proc/cpuinfo", CPUINFO_VM),
            (
                "proc/sys/kernel/osrelease",
                "5.15.153.1-microsoft-standard-WSL2\n",
            ),
        ]);
        assert_eq!(wsl.virtualization, "hyper-v");
        assert_eq!(wsl.container, "none");
    }

    #[test]
    fn xen_guests_and_control_domain() {
        assert_eq!(
            machine(&[("sys/hypervisor/type", "xen\n")]).virtualization,
            "xen"
        );
        let dom0 = [
            ("sys/hypervisor/type", "xen\n"),
            ("proc/xen/capabilities", "control_d\n"),
            ("proc/cpuinfo", CPUINFO_VM),
        ];
        assert_eq!(machine(&dom0).virtualization, "none");
    }

    #[test]
    fn hypervisors_from_the_device_tree() {
        let kvm = [("proc/device-tree/hypervisor/compatible", "linux,kvm\0")];
        assert_eq!(machine(&kvm).virtualization, "kvm");
        let xen = [(
            "proc/device-tree/hypervisor/compatible",
            "xen,xen-4.17\0xen,xen\0",
        )];
        assert_eq!(machine(&xen).virtualization, "xen");
    }

    #[test]
    fn docker_from_cgroup_v1() {
        let cgroup = "12:pids:/docker/3f4b1c0e9d8a\n\
            11:memory:/docker/3f4b1c0e9d8a\n\
            1:name=systemd:/docker/3f4b1c0e9d8a\n";
        let v1 = machine(&[("proc/1/cgroup", cgroup)]);
        assert_eq!(v1.container, "docker");
        assert_eq!(v1.environment(), "container");
        let systemd_driver = "0::/system.slice/docker-3f4b1c0e9d8a.scope\n";
        assert_eq!(
            machine(&[("proc/self/cgroup", systemd_driver)]).container,
            "docker"
        );
    }

    #[test]
    fn dockerenv_marks_docker() {
        assert_eq!(machine(&[(".dockerenv", "")]).container, "docker");
    }

    #[test]
    fn kubepods_cgroup_is_kubernetes_before_docker() {
        let cgroup = "1:name=systemd:/kubepods/burstable/pod1234/3f4b1c0e9d8a\n\
            0::/kubepods.slice/kubepods-burstable.slice/docker-3f4b.scope\n";
        let pod = machine(&[("proc/self/cgroup", cgroup), (".dockerenv", "")]);
        assert_eq!(pod.container, "kubernetes");
        let by_env = machine_with_env(&[], &[("KUBERNETES_SERVICE_HOST", "10.0.0.1")]);
        assert_eq!(by_env.container, "kubernetes");
    }

    #[test]
    fn podman_from_containerenv_and_cgroup() {
        let marked = machine(&[("run/.containerenv", "engine=\"podman-5.0\"\n")]);
        assert_eq!(marked.container, "podman");
        let cgroup = "0::/machine.slice/libpod-3f4b1c0e9d8a.scope/container\n";
        assert_eq!(machine(&[("proc/1/cgroup", cgroup)]).container, "podman");
    }

    #[test]
    fn container_variable_names_the_manager() {
        assert_eq!(
            machine_with_env(&[], &[("container", "lxc")]).container,
            "lxc"
        );
        assert_eq!(
            machine_with_env(&[], &[("container", "systemd-nspawn")]).container,
            "systemd-nspawn"
        );
        assert_eq!(
            machine_with_env(&[], &[("container", "podman")]).container,
            "podman"
        );
        // Unknown values, WSL included, are ignored rather than sent.
        assert_eq!(
            machine_with_env(&[], &[("container", "my-box")]).container,
            "none"
        );
        assert_eq!(
            machine_with_env(&[], &[("container", "wsl")]).container,
            "none"
        );
        assert_eq!(
            machine(&[("run/systemd/container", "systemd-nspawn\n")]).container,
            "systemd-nspawn"
        );
    }

    #[test]
    fn lxc_and_containerd_cgroups() {
        let lxc = "0::/lxc.payload.web/init.scope\n";
        assert_eq!(machine(&[("proc/1/cgroup", lxc)]).container, "lxc");
        let lxc_v1 = "4:memory:/lxc/web\n";
        assert_eq!(machine(&[("proc/1/cgroup", lxc_v1)]).container, "lxc");
        let cri = "0::/system.slice/cri-containerd-3f4b1c0e9d8a.scope\n";
        assert_eq!(machine(&[("proc/1/cgroup", cri)]).container, "containerd");
    }

    #[test]
    fn host_cgroups_are_not_containers() {
        let host = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/\
            app-gnome-docker\\x2ddesktop-4242.scope\n";
        let daemon = "0::/system.slice/docker.service\n";
        let files = [("proc/self/cgroup", host), ("proc/1/cgroup", daemon)];
        assert_eq!(machine(&files).container, "none");
        assert_eq!(
            machine(&[("proc/1/cgroup", "0::/init.scope\n")]).container,
            "none"
        );
    }

    #[test]
    fn memory_buckets_at_their_boundaries() {
        const GIB: u64 = 1 << 20;
        let cases = [
            (1, "<1 GiB"),
            (GIB - 1, "<1 GiB"),
            (GIB, "1-2 GiB"),
            (2 * GIB - 1, "1-2 GiB"),
            (2 * GIB, "2-4 GiB"),
            (4 * GIB, "4-8 GiB"),
            (8 * GIB, "8-16 GiB"),
            (16 * GIB - 1, "8-16 GiB"),
            (16 * GIB, "16-32 GiB"),
            (32 * GIB, "32-64 GiB"),
            (64 * GIB, "64-128 GiB"),
            (128 * GIB, "128-256 GiB"),
            (256 * GIB - 1, "128-256 GiB"),
            (256 * GIB, ">=256 GiB"),
            (u64::MAX, ">=256 GiB"),
        ];
        for (kib, expected) in cases {
            assert_eq!(memory_bucket(kib), expected, "{kib} KiB");
        }
    }

    #[test]
    fn memory_from_meminfo() {
        let meminfo = "MemTotal:       16318412 kB\nMemFree:         1234567 kB\n";
        assert_eq!(machine(&[("proc/meminfo", meminfo)]).memory, "8-16 GiB");
        assert_eq!(mem_total_kib("MemFree: 5 kB\n"), None);
        assert_eq!(mem_total_kib("MemTotal: 0 kB\n"), None);
        assert_eq!(mem_total_kib("MemTotal: lots kB\n"), None);
        assert_eq!(mem_total_kib("MemTotal: 5 MB\n"), None);
        assert_eq!(mem_total_kib("MemTotal: 5\n"), Some(5));
    }

    #[test]
    fn fixture_machine_end_to_end() {
        let mut files = vec![
            ("etc/os-release", UBUNTU),
            ("proc/sys/kernel/ostype", "Linux\n"),
            ("proc/sys/kernel/osrelease", "6.8.0-45-generic\n"),
            ("proc/cpuinfo", CPUINFO_VM),
            ("proc/meminfo", "MemTotal: 4027456 kB\n"),
            ("proc/1/cgroup", "0::/\n"),
            (".dockerenv", ""),
        ];
        files.extend([
            ("sys/class/dmi/id/sys_vendor", "QEMU\n"),
            (
                "sys/class/dmi/id/product_name",
                "Standard PC (i440FX + PIIX, 1996)\n",
            ),
        ]);
        let info = machine(&files);
        assert_eq!(info.os_name, "Ubuntu");
        assert_eq!(info.kernel_name, "Linux");
        assert_eq!(info.kernel_release.as_deref(), Some("6.8.0-45-generic"));
        assert_eq!(info.virtualization, "qemu");
        assert_eq!(info.container, "docker");
        assert_eq!(info.memory, "2-4 GiB");
    }

    fn properties(info: &SystemInfo) -> serde_json::Map<String, serde_json::Value> {
        let mut buf = JsonBuf::new();
        let mut object = buf.object();
        info.write_properties(&mut object);
        object.end();
        let bytes = buf.finish().unwrap();
        match serde_json::from_slice(&bytes).unwrap() {
            serde_json::Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn properties_are_valid_json_with_exactly_the_listed_keys() {
        let mut keys: Vec<String> = properties(&SystemInfo::collect()).keys().cloned().collect();
        keys.sort();
        let mut expected = vec![
            "os_name",
            "os_version",
            "os_id",
            "os_id_like",
            "kernel_name",
            "kernel_release",
            "arch",
            "virtualization",
            "container",
            "environment",
            "cpu_count",
            "memory",
            "rustc_version",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);

        let bare = properties(&machine(&[]));
        assert_eq!(bare["os_version"], serde_json::Value::Null);
        assert_eq!(bare["kernel_release"], serde_json::Value::Null);
        assert_eq!(bare["environment"], "local");
        assert!(bare["cpu_count"].is_u64());
        let tricky = properties(&machine(&[("etc/os-release", "NAME=\"a\\\"b\\\\c\"\n")]));
        assert_eq!(tricky["os_name"], "a\"b\\c");
    }

    #[test]
    fn this_machine_is_described_without_identifying_it() {
        let info = SystemInfo::collect();
        assert!(!info.os_name.is_empty());
        assert!(!info.kernel_name.is_empty());
        assert!(!info.rustc_version.is_empty());
        assert!(
            info.rustc_version == "unknown" || info.rustc_version.starts_with(char::is_numeric)
        );

        let hostname = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|path| fs::read_to_string(path).ok())
            .map(|text| text.trim().to_owned());
        // Text the machine itself names its software with may by chance equal the host name
        // (an image called `ubuntu`): only what the collection adds is checked.
        let os_release = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|path| fs::read_to_string(path).ok())
            .unwrap_or_default()
            .to_lowercase();
        let needles: Vec<String> = [
            hostname,
            std::env::var("USER").ok(),
            std::env::var("HOME").ok(),
        ]
        .into_iter()
        .flatten()
        .filter(|needle| !needle.is_empty() && !os_release.contains(&needle.to_lowercase()))
        .collect();
        for (key, value) in properties(&info) {
            let serde_json::Value::String(value) = value else {
                continue;
            };
            for needle in &needles {
                // Short names like `vm` are checked whole, longer ones anywhere in a value.
                let found = if needle.chars().count() < 3 {
                    value == *needle
                } else {
                    value.contains(needle.as_str())
                };
                assert!(!found, "{key} = {value:?} contains {needle:?}");
            }
        }
    }
}
