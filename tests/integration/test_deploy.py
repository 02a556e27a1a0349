"""The shipped deployment files (deploy/), checked without a Docker engine or a running systemd:
the Prometheus config passes promtool, the Dockerfile's runtime image installs a package for
every shared library the built binary needs, copies files that exist and a config that passes
`--check`, and the systemd unit passes `systemd-analyze verify`."""
import json
import os
import posixpath
import re
import shlex
import subprocess
import tempfile

from conftest import ROOT, WSGATE, tool

DEPLOY = os.path.join(ROOT, "deploy")
# In every debian:N-slim image (Priority: required, or needed by apt itself). Debian 13's
# libcrypto links zlib and zstd, which dpkg and apt need too.
IN_BASE_IMAGE = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g", "libzstd1"}
# Runtimes of a sanitizer build (make test-sanitize); the Dockerfile builds Release without.
SANITIZER_RUNTIME = re.compile(r"^lib(asan|ubsan|tsan|lsan|hwasan)\.so")


def sh(*args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=30, **kwargs)


def debian_release():
    """This machine's Debian major version ("12", "13"): the image's DEBIAN build argument
    whose runtime packages match the binary built here."""
    with open("/etc/os-release") as f:
        fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    return fields["VERSION_ID"].strip('"')


class Dockerfile:
    """deploy/Dockerfile as stages: [{"name", "base", "instructions": [(KEYWORD, args)]}]."""

    def __init__(self, path):
        with open(path) as f:
            text = f.read()
        text = re.sub(r"\\\n(\s*#.*\n)*", " ", text)  # continuation lines (and comments in them)
        self.stages = []
        self.build_args = {}  # ARGs declared before the first FROM, with their defaults
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keyword, _, args = line.partition(" ")
            keyword = keyword.upper()
            if keyword == "ARG" and not self.stages:
                name, _, default = args.strip().partition("=")
                self.build_args[name] = default
            elif keyword == "FROM":
                words = args.split()
                name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
                self.stages.append({"base": words[0], "name": name, "instructions": []})
            else:
                self.stages[-1]["instructions"].append((keyword, args.strip()))
        self.runtime = self.stages[-1]

    @staticmethod
    def args(args):
        """JSON (exec) form or shell words."""
        return json.loads(args) if args.startswith("[") else shlex.split(args)

    def all(self, stage, keyword):
        return [self.args(a) if keyword != "RUN" else a
                for k, a in stage["instructions"] if k == keyword]

    def apt_installed(self, stage):
        """Package names every `apt-get install` of the stage's RUNs installs."""
        packages = set()
        for run in self.all(stage, "RUN"):
            for command in re.split(r"&&|\|\||;", run):
                words = shlex.split(command)
                if words[:1] in (["apt-get"], ["apt"]) and "install" in words:
                    after = words[words.index("install") + 1:]
                    packages |= {w.split("=")[0] for w in after if not w.startswith("-")}
        return packages

    def copies(self, stage):
        """(from_stage or None, [sources], destination) per COPY."""
        out = []
        for words in self.all(stage, "COPY"):
            source_stage = None
            while words[0].startswith("--"):
                if words[0].startswith("--from="):
                    source_stage = words[0].split("=", 1)[1]
                words = words[1:]
            out.append((source_stage, words[:-1], words[-1]))
        return out

    def config_source(self):
        """The repository file the runtime stage copies to where its CMD's --config points."""
        cmd = self.all(self.runtime, "CMD")[-1]
        config_in_image = cmd[cmd.index("--config") + 1]
        [source] = [sources[0] for stage, sources, dest in self.copies(self.runtime)
                    if stage is None and dest == config_in_image]
        return source

    def stage(self, name):
        return next(s for s in self.stages if s["name"] == name)

    def base_chain(self, stage, **build_args):
        """`stage` and the earlier stages it is built FROM, with build arguments substituted;
        then the image the last of them starts from."""
        values = {**self.build_args, **build_args}
        chain = [stage]
        while True:
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                          lambda m: values[m.group(1) or m.group(2)], chain[-1]["base"])
            parent = next((s for s in self.stages if s["name"] == base), None)
            if parent is None:
                return chain, base
            chain.append(parent)


def needed_libraries(binary):
    """Resolved paths of the shared libraries `ldd` lists for `binary` (the dynamic loader
    included; the vDSO, which no file backs, left out)."""
    result = sh(tool("ldd", "libc-bin"), binary)
    assert result.returncode == 0, result.stderr
    assert "not found" not in result.stdout, result.stdout
    paths = []
    for line in result.stdout.splitlines():
        m = re.match(r"^\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            paths.append(m.group(1))
        else:
            assert "vdso" in line, f"unexpected ldd line: {line!r}"
    assert paths, result.stdout
    return paths


def packages_of(paths):
    """{path: {Debian packages that ship it}}, each path looked up as given, across the
    merged-/usr symlinks and resolved (one `dpkg -S` for all of them)."""
    candidates = {}
    for path in paths:
        other = path[len("/usr"):] if path.startswith("/usr/") else "/usr" + path
        candidates[path] = [path, other, os.path.realpath(path)]
    result = sh(tool("dpkg", "dpkg"), "-S", *{c for cs in candidates.values() for c in cs})
    shipped_by = {}
    for line in result.stdout.splitlines():
        packages, _, shipped = line.rpartition(": ")
        if packages and not packages.startswith("diversion"):
            shipped_by[shipped] = {p.split(":")[0] for p in packages.split(", ")}
    out = {}
    for path, tried in candidates.items():
        found = [shipped_by[c] for c in tried if c in shipped_by]
        assert found, f"{path}: no Debian package ships it (tried {tried}):\n{result.stderr}"
        out[path] = found[0]
    return out


def test_prometheus_config_passes_promtool():
    result = sh(tool("promtool", "prometheus"), "check", "config",
                os.path.join(DEPLOY, "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_runtime_image_installs_a_package_for_every_library_the_binary_needs():
    docker = Dockerfile(os.path.join(DEPLOY, "Dockerfile"))
    release = debian_release()
    chain, image = docker.base_chain(docker.runtime, DEBIAN=release)
    assert image == f"debian:{release}-slim", f"DEBIAN={release}: the runtime stage runs on {image}"
    _, build_image = docker.base_chain(docker.stage("build"), DEBIAN=release)
    assert build_image == f"debian:{release}", f"DEBIAN={release}: the binary is built on {build_image}"
    installed = set().union(*(docker.apt_installed(stage) for stage in chain))
    assert installed, f"DEBIAN={release}: the runtime stage installs no package"
    libraries = [p for p in needed_libraries(WSGATE)
                 if not SANITIZER_RUNTIME.match(os.path.basename(p))]
    needed = {}
    for path, packages in packages_of(libraries).items():
        for package in packages:
            needed.setdefault(package, []).append(path)
    assert IN_BASE_IMAGE & set(needed), f"ldd/dpkg mapping found no libc: {needed}"
    missing = {p: paths for p, paths in needed.items()
               if p not in installed and p not in IN_BASE_IMAGE}
    assert not missing, f"DEBIAN={release}: the runtime stage does not install {sorted(missing)} " \
                        f"(libraries {missing}); it installs {sorted(installed)}"


def test_dockerfile_copies_files_that_exist_and_the_binary_the_build_stage_makes():
    docker = Dockerfile(os.path.join(DEPLOY, "Dockerfile"))
    copies = [c for stage in docker.stages for c in docker.copies(stage)]
    assert copies
    for source_stage, sources, _ in copies:
        if source_stage is None:  # from the build context: the repository root
            for source in sources:
                assert os.path.exists(os.path.join(ROOT, source)), f"COPY {source}: no such file"
    # The binary copied out of the build stage is the one its build command produces
    # (scripts/build.sh BUILD_DIR TARGET).
    [(build_name, [binary], installed_at)] = [c for c in docker.copies(docker.runtime) if c[0]]
    build = docker.stage(build_name)
    workdir = docker.all(build, "WORKDIR")[-1][0]
    build_cmds = " ".join(docker.all(build, "RUN"))
    build_dir, target = re.search(r"scripts/build\.sh (\S+) (\S+)", build_cmds).groups()
    assert binary == posixpath.join(workdir, build_dir, target)
    entrypoint = docker.all(docker.runtime, "ENTRYPOINT")[-1]
    assert entrypoint[0] == installed_at


def test_dockerfile_config_passes_check():
    docker = Dockerfile(os.path.join(DEPLOY, "Dockerfile"))
    source = docker.config_source()
    result = sh(WSGATE, "--config", os.path.join(ROOT, source), "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_config_listens_where_the_exposed_ports_can_be_published():
    # A listener on the container's loopback cannot be reached through a published port.
    docker = Dockerfile(os.path.join(DEPLOY, "Dockerfile"))
    source = docker.config_source()
    with open(os.path.join(ROOT, source)) as f:
        addresses = re.findall(r"address:\s*([^\s,}]+)", f.read())
    assert len(addresses) >= 2, addresses  # the admin endpoint and a listener
    ports = set()
    for address in addresses:
        host, _, port = address.rpartition(":")
        assert host.strip("[]") not in ("127.0.0.1", "::1", "localhost"), \
            f"{source}: {address} is the container's own loopback"
        ports.add(port)
    exposed = {p.split("/")[0] for words in docker.all(docker.runtime, "EXPOSE") for p in words}
    assert ports == exposed, f"{source} listens on {sorted(ports)}, EXPOSE {sorted(exposed)}"


def test_systemd_unit_passes_systemd_analyze_verify():
    with open(os.path.join(DEPLOY, "wsgate.service")) as f:
        unit = f.read()
    # verify needs the Exec binaries to exist: a copy of the unit pointing at the built one.
    assert "/usr/local/bin/wsgate " in unit
    with tempfile.TemporaryDirectory(prefix="wsgate-unit-") as d:
        path = os.path.join(d, "wsgate.service")
        with open(path, "w") as f:
            f.write(unit.replace("/usr/local/bin/wsgate ", f"{os.path.abspath(WSGATE)} "))
        result = sh(tool("systemd-analyze", "systemd"), "verify", "--man=no", path)
    # Unknown keys and unparsable values are only warnings: any output is a failure.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr
