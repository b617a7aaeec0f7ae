"""`make vendor`: fetch the vendored files from npm (`npm pack`, the registry's tarball),
write them here and record their versions and sha256 in manifest.json. Needs npm; the
tests and `make run` do not."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
# package: (version, file inside the package, file here)
PACKAGES = {"axe-core": ("4.14.1", "package/axe.min.js", "axe.min.js")}


def main() -> None:
    manifest = {}
    for package, (version, inner, name) in PACKAGES.items():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                ["npm", "pack", "--silent", f"{package}@{version}"],
                cwd=tmp,
                check=True,
                capture_output=True,
            )
            tarball = next(Path(tmp).glob("*.tgz"))
            with tarfile.open(tarball) as archive:
                member = archive.extractfile(inner)
                assert member is not None
                data = member.read()
        (HERE / name).write_bytes(data)
        manifest[name] = {
            "package": package,
            "version": version,
            "source": f"npm:{package}@{version}/{inner.removeprefix('package/')}",
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"vendored {', '.join(manifest)}", file=sys.stderr)


if __name__ == "__main__":
    main()
