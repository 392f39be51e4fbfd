"""Installation: `make install` / `make uninstall` into a DESTDIR, and the Debian package
(`make deb`) installed, removed and purged by dpkg in a scratch root. Both use the release
build (the Swift runtime inside the binaries), built once for the session."""
import os
import re
import subprocess

import pytest

from support import ROOT


def make(*args):
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def deb():
    out = make("deb")
    return os.path.join(ROOT, re.search(r"building package 'telematicsd' in '([^']+)'", out).group(1))


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_install_and_uninstall_into_a_destdir(tmp_path, deb):  # deb: the release build is there
    dest = tmp_path / "dest"
    make("install", f"DESTDIR={dest}", "PREFIX=/usr/local")
    installed = files_under(dest)
    for f in ["usr/local/bin/telematicsd", "usr/local/bin/tcuctl", "usr/local/bin/tcu-backend", "usr/local/bin/tcu-psap",
              "usr/local/lib/systemd/system/telematicsd.service", "usr/local/lib/sysusers.d/telematicsd.conf",
              "usr/local/share/man/man8/telematicsd.8", "usr/local/share/man/man1/tcuctl.1",
              "usr/local/share/telematicsd/systemd-networkd/80-can0.network", "usr/local/share/doc/telematicsd/operations.md",
              "etc/telematicsd/telematicsd.conf", "etc/telematicsd/vehicle.dbc", "etc/telematicsd/vehicle-profile.conf"]:
        assert f in installed, f
    unit = (dest / "usr/local/lib/systemd/system/telematicsd.service").read_text()
    assert "ExecStart=/usr/local/bin/telematicsd --config /etc/telematicsd/telematicsd.conf" in unit and "@" not in unit.split("ExecStart")[1].split("\n")[0]
    # The installed daemon accepts the installed configuration (its DBC and profile beside it).
    r = subprocess.run([str(dest / "usr/local/bin/telematicsd"), "--check-config", "--config", str(dest / "etc/telematicsd/telematicsd.conf")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
    # Another install keeps a configuration the user changed.
    conf = dest / "etc/telematicsd/telematicsd.conf"
    conf.write_text(conf.read_text() + "# mine\n")
    make("install", f"DESTDIR={dest}", "PREFIX=/usr/local")
    assert conf.read_text().endswith("# mine\n")
    make("uninstall", f"DESTDIR={dest}", "PREFIX=/usr/local")
    assert files_under(dest) == ["etc/telematicsd/telematicsd.conf", "etc/telematicsd/vehicle-profile.conf", "etc/telematicsd/vehicle.dbc"]


def field(deb, name):
    return subprocess.run(["dpkg-deb", "-f", deb, name], capture_output=True, text=True, check=True).stdout.strip()


def test_the_package_depends_on_every_library_its_binaries_need(deb, tmp_path):
    depends = {d.strip().split()[0] for d in field(deb, "Depends").split(",")}
    subprocess.run(["dpkg-deb", "-x", deb, str(tmp_path)], check=True)
    for tool in ["telematicsd", "tcuctl", "tcu-backend", "tcu-psap"]:
        dynamic = subprocess.run(["readelf", "-d", str(tmp_path / "usr/bin" / tool)], capture_output=True, text=True, check=True).stdout
        assert "libswiftCore" not in dynamic, f"{tool} needs the Swift runtime installed"
        for lib in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic):
            owner = subprocess.run(["dpkg", "-S", f"*/{lib}"], capture_output=True, text=True).stdout.split(":")[0]
            assert owner in depends, f"{tool} needs {lib} from {owner}, not in Depends: {depends}"


def scratch_root(tmp_path, deb):
    """An empty root whose dpkg database knows the package's dependencies as installed (their
    stanzas copied from this machine's), so that dpkg can check them without their files."""
    root = tmp_path / "root"
    admin = root / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "updates").mkdir()
    (root / "etc").mkdir()
    wanted = {d.strip().split()[0] for d in field(deb, "Depends").split(",")}
    stanzas = open("/var/lib/dpkg/status").read().split("\n\n")
    kept = [s for s in stanzas if re.match(r"Package: (\S+)", s) and re.match(r"Package: (\S+)", s).group(1) in wanted
            and "Status: install ok installed" in s]
    assert {re.match(r"Package: (\S+)", s).group(1) for s in kept} == wanted
    (admin / "status").write_text("\n\n".join(kept) + "\n\n")
    (admin / "available").write_text("")
    for s in kept:
        name = re.match(r"Package: (\S+)", s).group(1)
        arch = re.search(r"Architecture: (\S+)", s).group(1)
        # dpkg qualifies the file lists of Multi-Arch: same packages with their architecture.
        (admin / "info" / (f"{name}:{arch}.list" if "Multi-Arch: same" in s else f"{name}.list")).write_text("")
    return root


def dpkg(root, *args):
    # Not as root: fakeroot lets dpkg "own" the files it writes into the scratch root.
    prefix = [] if os.geteuid() == 0 else ["fakeroot"]
    force = "--force-script-chrootless" if os.geteuid() == 0 else "--force-script-chrootless,not-root"
    r = subprocess.run([*prefix, "dpkg", f"--root={root}", force, "--log=/dev/null", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # A top-level directory (/etc) belongs to base-files on a real system; the scratch root has
    # none, so dpkg tries to remove it with the package: that warning is the root's, not ours.
    warnings = [l for l in r.stderr.splitlines() if "warning" in l
                and not re.search(r"directory '/[a-z]+' not empty so not removed", l)]
    assert warnings == [], r.stderr
    return r


def test_the_package_installs_removes_and_purges_cleanly_in_a_scratch_root(tmp_path, deb):
    root = scratch_root(tmp_path, deb)
    dpkg(root, "-i", deb)
    for f in ["usr/bin/telematicsd", "lib/systemd/system/telematicsd.service", "usr/lib/sysusers.d/telematicsd.conf",
              "etc/telematicsd/telematicsd.conf", "usr/share/man/man8/telematicsd.8"]:
        assert (root / f).exists(), f
    assert "ExecStart=/usr/bin/telematicsd" in (root / "lib/systemd/system/telematicsd.service").read_text()
    # postinst made the service's user in that root, not on this machine.
    assert re.search(r"^telematicsd:x:\d+:\d+:.*:/var/lib/telematicsd:/usr/sbin/nologin$", (root / "etc/passwd").read_text(), re.M)
    status = subprocess.run(["dpkg", f"--root={root}", "-s", "telematicsd"], capture_output=True, text=True).stdout
    assert "Status: install ok installed" in status
    # What the unit stored (as if it had run), then remove: the binaries go, the configuration stays.
    (root / "var/lib/telematicsd").mkdir(parents=True)
    (root / "var/lib/telematicsd/outbox.db").write_text("")
    dpkg(root, "-r", "telematicsd")
    assert not (root / "usr/bin/telematicsd").exists() and not (root / "lib/systemd/system/telematicsd.service").exists()
    assert (root / "etc/telematicsd/telematicsd.conf").exists() and (root / "var/lib/telematicsd/outbox.db").exists()
    # Purge: the configuration and the stored data go too.
    dpkg(root, "-P", "telematicsd")
    assert not (root / "etc/telematicsd").exists() and not (root / "var/lib/telematicsd").exists()
    left = [f for f in files_under(root) if not f.startswith("var/lib/dpkg/") and not f.startswith("etc/")]
    assert left == []
