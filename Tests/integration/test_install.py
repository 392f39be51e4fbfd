"""Installation: `make install` / `make uninstall` into a DESTDIR, and the Debian packages
(`make deb`: debian/, debhelper) as Debian checks them: split as users install them, lintian
with nothing to say, every library a binary needs in its package's Depends. Installing,
upgrading and purging them under a real systemd is hw/bench/systemd-guest's (make test runs it
after these tests, on the packages they built). Both use the release build (the Swift runtime
inside the binaries), built once for the session."""
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
def debs():
    """`make deb`: the packages debian/ describes, built by dpkg-buildpackage (and lintian run on
    them by test_lintian_finds_no_error_and_no_warning, not twice by make deb), by package name."""
    make("deb", "LINTIAN=true")
    folder = os.path.join(ROOT, ".build", "deb")
    return {f.split("_")[0]: os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".deb")}


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_install_and_uninstall_into_a_destdir(tmp_path, debs):  # debs: the release build is there
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


PACKAGES = {"telematicsd": ["telematicsd", "tcuctl"], "tcu-backend": ["tcu-backend"], "tcu-psap": ["tcu-psap"],
            "tcu-car": ["tcu-car"], "tcu-fleet": ["tcu-fleet"]}


def test_the_packages_are_split_as_users_install_them(debs, tmp_path):
    """The unit and tcuctl for the head unit; the backend, the PSAP, the simulated car and the
    fleet for benches: each package its own binaries, man pages, copyright and changelog."""
    assert set(debs) == set(PACKAGES)
    for package, tools in PACKAGES.items():
        root = tmp_path / package
        subprocess.run(["dpkg-deb", "-x", debs[package], str(root)], check=True)
        assert sorted(os.listdir(root / "usr/bin")) == sorted(tools)
        for tool in tools:
            section = "8" if tool == "telematicsd" else "1"
            assert (root / f"usr/share/man/man{section}/{tool}.{section}.gz").exists(), tool
        doc = root / "usr/share/doc" / package
        assert (doc / "changelog.gz").exists()
        assert (doc / "copyright").read_text().startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
    unit = tmp_path / "telematicsd"
    assert "ExecStart=/usr/bin/telematicsd --config /etc/telematicsd/telematicsd.conf" in (unit / "lib/systemd/system/telematicsd.service").read_text()
    assert (unit / "usr/lib/sysusers.d/telematicsd.conf").read_text() == open(os.path.join(ROOT, "systemd/telematicsd.sysusers")).read()
    # The configuration is dpkg's to keep (conffiles), every file under /etc.
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", debs["telematicsd"], str(control)], check=True)
    assert sorted((control / "conffiles").read_text().split()) == sorted(
        "/etc/telematicsd/" + f for f in os.listdir(unit / "etc/telematicsd"))
    # The service's user comes from sysusers and the unit from debhelper's snippets: no script
    # of ours calls systemctl.
    for script in ("postinst", "prerm", "postrm"):
        text = (control / script).read_text()
        assert "systemctl" not in text.replace("systemctl --system daemon-reload", ""), script
    assert "systemd-sysusers" in (control / "postinst").read_text()


def test_lintian_finds_no_error_and_no_warning(debs):
    """Debian's own checker, as a packager runs it; an override only with the comment that says why."""
    r = subprocess.run(["lintian", "--fail-on", "error,warning", *debs.values()], capture_output=True, text=True)
    assert r.returncode == 0 and not [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:")], r.stdout + r.stderr
    for overrides in (f for f in os.listdir(os.path.join(ROOT, "debian")) if f.endswith(".lintian-overrides")):
        lines = open(os.path.join(ROOT, "debian", overrides)).read().splitlines()
        for i, line in enumerate(lines):
            if line and not line.startswith("#"):
                assert i > 0 and lines[i - 1].startswith("#"), f"{overrides}: the override '{line}' says not why"


def test_the_tools_packages_take_over_from_the_one_package_that_held_them(debs):
    """Until 0.2.0 one package, telematicsd, held every tool: each tool's own package replaces
    its files and breaks that version, so apt upgrades the one into the split ones (the systemd
    guest does it from the real previous package)."""
    for package in PACKAGES:
        if package == "telematicsd":
            continue
        for relation in ("Breaks", "Replaces"):
            assert field(debs[package], relation) == "telematicsd (<< 0.2.0~)", (package, relation)
    version = field(debs["telematicsd"], "Version")
    assert subprocess.run(["dpkg", "--compare-versions", version, "ge", "0.2.0~"]).returncode == 0, version


def test_every_package_depends_on_every_library_its_binaries_need(debs, tmp_path):
    for package, tools in PACKAGES.items():
        depends = {d.strip().split()[0] for d in field(debs[package], "Depends").split(",")}
        subprocess.run(["dpkg-deb", "-x", debs[package], str(tmp_path / package)], check=True)
        for tool in tools:
            dynamic = subprocess.run(["readelf", "-d", str(tmp_path / package / "usr/bin" / tool)], capture_output=True, text=True,
                                     check=True).stdout
            assert "libswiftCore" not in dynamic, f"{tool} needs the Swift runtime installed"
            for lib in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic):
                owner = subprocess.run(["dpkg", "-S", f"*/{lib}"], capture_output=True, text=True).stdout.split(":")[0]
                assert owner in depends, f"{tool} needs {lib} from {owner}, not in {package}'s Depends: {depends}"
