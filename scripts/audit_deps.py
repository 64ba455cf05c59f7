#!/usr/bin/env python3
"""Audit the locked dependency set against published advisories, offline.

pip-audit needs a vulnerability service these machines cannot reach (the package index
here serves no vulnerability data, osv.dev is blocked), so the advisories are data in the
repository: the PyPA advisory database (github.com/pypa/advisory-database, OSV format),
filtered to the packages in ``requirements.lock`` and committed with the date of the
database snapshot they came from.

    scripts/audit_deps.py check                 exit 1 if a locked pin is affected (test.sh)
    scripts/audit_deps.py update --from GITDIR  rebuild security/advisories.json from a clone
                                                (or bare mirror) of the advisory database

An advisory matches a pin when the pin's version is listed in ``affected[].versions`` or
falls inside an ``ECOSYSTEM`` range (introduced <= v < fixed, or <= last_affected).
Refresh the data whenever the lock changes, and at least monthly: an old snapshot cannot
know of newer advisories (``check`` prints its date).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
DATA = ROOT / "security" / "advisories.json"
SOURCE = "https://github.com/pypa/advisory-database"


def normalize(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """{normalized name: version} of every ``name==version`` line."""
    pins: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if m is None:
            raise SystemExit(f"{path}:{n}: not a 'name==version' pin: {raw!r}")
        pins[normalize(m.group(1))] = m.group(2)
    return pins


def _in_range(version: Version, events: list[dict[str, str]]) -> bool:
    affected = False
    for event in events:
        if "introduced" in event:
            start = event["introduced"]
            if start == "0" or version >= Version(start):
                affected = True
        elif "fixed" in event:
            if affected and version >= Version(event["fixed"]):
                affected = False
        elif "last_affected" in event and affected and version > Version(event["last_affected"]):
            affected = False
    return affected


def affects(advisory: dict[str, Any], name: str, version: str) -> bool:
    """Whether the OSV ``advisory`` applies to PyPI package ``name`` at ``version``."""
    try:
        v = Version(version)
    except InvalidVersion:
        return False
    for entry in advisory.get("affected", []):
        pkg = entry.get("package", {})
        if pkg.get("ecosystem") != "PyPI" or normalize(pkg.get("name", "")) != name:
            continue
        if version in entry.get("versions", []):
            return True
        for rng in entry.get("ranges", []):
            if rng.get("type") == "ECOSYSTEM" and _in_range(v, rng.get("events", [])):
                return True
    return False


@dataclass(frozen=True)
class Finding:
    """A locked pin with a published advisory."""

    package: str
    version: str
    advisory: str
    aliases: tuple[str, ...]
    fixed: tuple[str, ...]
    summary: str

    def __str__(self) -> str:
        alias = f" ({', '.join(self.aliases)})" if self.aliases else ""
        fix = f"; fixed in {', '.join(self.fixed)}" if self.fixed else "; no fixed version"
        return f"{self.package}=={self.version}: {self.advisory}{alias}{fix}: {self.summary}"


def audit(pins: dict[str, str], data: dict[str, Any]) -> list[Finding]:
    """Every (pin, advisory) match."""
    found = []
    for adv in data["advisories"]:
        for name, version in sorted(pins.items()):
            if affects(adv, name, version):
                fixed = sorted(
                    {
                        e["fixed"]
                        for a in adv.get("affected", [])
                        for r in a.get("ranges", [])
                        for e in r.get("events", [])
                        if "fixed" in e
                    }
                )
                text = adv.get("summary") or adv.get("details", "")
                found.append(
                    Finding(
                        name,
                        version,
                        adv["id"],
                        tuple(adv.get("aliases", [])),
                        tuple(fixed),
                        " ".join(text.split())[:160],
                    )
                )
    return found


def _git(gitdir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(gitdir), *args], check=True, capture_output=True, text=True
    ).stdout


def update(gitdir: Path, lock: Path, out: Path) -> int:
    """Rebuild the data file from the advisory database's HEAD, for the locked packages."""
    if (gitdir / ".git").is_dir():
        gitdir = gitdir / ".git"
    pins = read_lock(lock)
    commit, date = _git(gitdir, "log", "-1", "--format=%H %cI", "HEAD").split()
    dirs = {
        normalize(p.rsplit("/", 1)[-1]): p
        for p in _git(gitdir, "ls-tree", "--name-only", "HEAD", "vulns/").split()
    }
    advisories = []
    for name in sorted(pins):
        folder = dirs.get(name)
        if folder is None:
            continue
        for path in _git(gitdir, "ls-tree", "--name-only", "HEAD", f"{folder}/").split():
            doc = yaml.safe_load(_git(gitdir, "show", f"HEAD:{path}"))
            if doc.get("withdrawn"):
                continue
            advisories.append(
                {k: doc[k] for k in ("id", "aliases", "summary", "details", "affected") if k in doc}
            )
    payload = {
        "source": SOURCE,
        "commit": commit,
        "snapshot_date": date,
        "built": dt.date.today().isoformat(),
        "packages": sorted(pins),
        "advisories": advisories,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    print(f"{len(advisories)} advisories for {len(pins)} locked packages -> {out}")
    return 0


def check(lock: Path, data_path: Path) -> int:
    """Exit status 1 when a locked pin is affected, or when the data misses a locked package."""
    pins = read_lock(lock)
    data = json.loads(data_path.read_text())
    missing = sorted(set(pins) - set(data["packages"]))
    if missing:
        print(
            f"audit: {data_path} was built for another lock: no data for {', '.join(missing)}; "
            "run scripts/audit_deps.py update --from <advisory-database clone>",
            file=sys.stderr,
        )
        return 1
    found = audit(pins, data)
    print(
        f"audit: {len(pins)} locked packages against {len(data['advisories'])} advisories "
        f"of {data['source']} as of {data['snapshot_date']} (commit {data['commit'][:12]})",
        file=sys.stderr,
    )
    for f in found:
        print(f"audit: VULNERABLE {f}", file=sys.stderr)
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="audit requirements.lock (exit 1 on a known advisory)")
    c.add_argument("--lock", type=Path, default=LOCK)
    c.add_argument("--data", type=Path, default=DATA)
    u = sub.add_parser("update", help="rebuild the advisory data from a database clone")
    u.add_argument("--from", dest="gitdir", type=Path, required=True)
    u.add_argument("--lock", type=Path, default=LOCK)
    u.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.lock, args.data)
    return update(args.gitdir, args.lock, args.out)


if __name__ == "__main__":
    sys.exit(main())
